module github.com/scr-go/scr

go 1.26

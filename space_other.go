//go:build !linux

package scr

func spaceHint(string) string { return "" }

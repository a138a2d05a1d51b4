// Command scr_jsrun runs a parallel job under scr-go's recovery loop with jsrun (SCR's scr_jsrun). See scr_jsrun --help.
package main

import (
	"os"

	"github.com/scr-go/scr/internal/jobrun/runcmd"
)

func main() {
	os.Exit(runcmd.Main("scr_jsrun", "jsrun", os.Args[1:], os.Stdout, os.Stderr))
}

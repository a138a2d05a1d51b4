// Command scr_lrun runs a parallel job under scr-go's recovery loop with lrun (SCR's scr_lrun). See scr_lrun --help.
package main

import (
	"os"

	"github.com/scr-go/scr/internal/jobrun/runcmd"
)

func main() {
	os.Exit(runcmd.Main("scr_lrun", "lrun", os.Args[1:], os.Stdout, os.Stderr))
}

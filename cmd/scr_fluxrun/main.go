// Command scr_fluxrun runs a parallel job under scr-go's recovery loop with flux (SCR's scr_fluxrun). See scr_fluxrun --help.
package main

import (
	"os"

	"github.com/scr-go/scr/internal/jobrun/runcmd"
)

func main() {
	os.Exit(runcmd.Main("scr_fluxrun", "flux", os.Args[1:], os.Stdout, os.Stderr))
}

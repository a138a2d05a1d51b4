// Command scr_flux_run runs a parallel job under scr-go's recovery loop. See scr_flux_run --help.
package main

import (
	"os"

	"github.com/scr-go/scr/internal/jobrun/runcmd"
)

func main() {
	os.Exit(runcmd.Main("scr_flux_run", "flux", os.Args[1:], os.Stdout, os.Stderr))
}

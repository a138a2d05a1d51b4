// Command scr_mpirun runs a parallel job under scr-go's recovery loop with mpirun (SCR's scr_mpirun). See scr_mpirun --help.
package main

import (
	"os"

	"github.com/scr-go/scr/internal/jobrun/runcmd"
)

func main() {
	os.Exit(runcmd.Main("scr_mpirun", "mpirun", os.Args[1:], os.Stdout, os.Stderr))
}

// Command scr_srun runs a parallel job under scr-go's recovery loop. See scr_srun --help.
package main

import (
	"os"

	"github.com/scr-go/scr/internal/jobrun/runcmd"
)

func main() {
	os.Exit(runcmd.Main("scr_srun", "srun", os.Args[1:], os.Stdout, os.Stderr))
}

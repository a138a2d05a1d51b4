// Command scr_prerun prepares the prefix directory before the first run of
// an allocation. See scr_prerun --help.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/scr-go/scr/internal/jobrun"
)

const usage = `Usage: scr_prerun [-p PREFIX] [-v]

Prepare the prefix for a new allocation: create PREFIX/.scr and remove the
previous allocation's flush state, node count and hostfile (their caches are
gone). PREFIX must exist; PREFIX/.scr, if there, must be yours and writable
by you only. The halt file is kept. Nothing runs on the compute nodes, so a dead
node cannot make scr_prerun hang. With SCR_ENABLE=0 it does nothing.

  -p, --prefix DIR   prefix directory (default: SCR_PREFIX, else the working directory)
  -v, --verbose      say what was done

EXIT STATUS
  0  the prefix is ready (or SCR_ENABLE=0)
  1  the prefix could not be prepared (the message says which file and why)
  2  usage error
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scr_prerun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var dir string
	var verbose bool
	fs.StringVar(&dir, "p", "", "")
	fs.StringVar(&dir, "prefix", "", "")
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "scr_prerun: bad arguments %q (see --help)\n", args)
		return 2
	}
	p, done, err := jobrun.PrerunCmd(dir, nil)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "scr_prerun: %v\n", err)
		return 1
	case verbose && done:
		fmt.Fprintf(stderr, "scr_prerun: prefix %s ready\n", p)
	case verbose:
		fmt.Fprintln(stderr, "scr_prerun: SCR_ENABLE=0: nothing to do")
	}
	return 0
}

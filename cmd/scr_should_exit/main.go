// Command scr_should_exit tells a job script whether to stop relaunching.
// See scr_should_exit --help.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/scr-go/scr/internal/jobrun"
)

const usage = `Usage: scr_should_exit [-p PREFIX] [--down NODES] [--min-nodes N] [--runs N] [--json] [-v]

Decide whether a job script should stop launching runs: a halt condition in
the halt file (scr_halt, time limit, the application finished), no runs left
(--runs 0), or too few healthy nodes (the allocation minus --down, compared
with --min-nodes, else SCR_MIN_NODES, else the node count of the last run,
else the whole allocation; only checked inside an allocation).

  -p, --prefix DIR    prefix directory (default: SCR_PREFIX, else the working directory)
  --down NODES        host list of nodes known down (from scr_list_down_nodes)
  --min-nodes N       nodes needed for another run
  --runs N            runs left; 0 means stop
  --json              print {"stop":..,"reason":..,"healthy_nodes":..,"need_nodes":..}
  -v, --verbose       print the reason on stderr

Loop example:
  while true; do srun ... ; runs=$((runs-1))
    down=$(scr_list_down_nodes --down "$down")
    scr_should_exit --runs $runs --down "$down" && break
  done

EXIT STATUS
  0  stop: do not launch again
  1  continue: another run may be launched
  2  usage error
  3  error: the decision could not be made (the message says why)
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scr_should_exit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := jobrun.ShouldExitCmdOptions{Runs: -1}
	var asJSON, verbose bool
	fs.StringVar(&o.Prefix, "p", "", "")
	fs.StringVar(&o.Prefix, "prefix", "", "")
	fs.StringVar(&o.Down, "down", "", "")
	fs.StringVar(&o.Down, "d", "", "")
	fs.IntVar(&o.MinNodes, "min-nodes", 0, "")
	fs.IntVar(&o.Runs, "runs", -1, "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "scr_should_exit: bad arguments %q (see --help)\n", args)
		return 2
	}
	if o.MinNodes < 0 {
		fmt.Fprintln(stderr, "scr_should_exit: --min-nodes must be >= 0")
		return 2
	}
	v, err := jobrun.ShouldExitCmd(context.Background(), o)
	var ue *jobrun.UsageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "scr_should_exit: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "scr_should_exit: %v\n", err)
		return 3
	}
	if asJSON {
		b, _ := json.Marshal(v)
		fmt.Fprintln(stdout, string(b))
	}
	if verbose {
		fmt.Fprintf(stderr, "scr_should_exit: %s\n", v.Reason)
	}
	if v.Stop {
		return 0
	}
	return 1
}

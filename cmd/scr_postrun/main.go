// Command scr_postrun scavenges, after the last run of an allocation, the
// datasets that are only in the nodes' caches. See scr_postrun --help.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/scr-go/scr/internal/jobrun"
)

const usage = `Usage: scr_postrun [-p PREFIX] [-j LAUNCHER] [--json] [-v]

After the last run of an allocation, copy to the prefix what is only in the
node caches: output datasets that need a flush (oldest first), then the
newest checkpoint that can be completed, which becomes current. Each healthy
node copies its own files (sizes and CRCs checked) and their redundancy data
in parallel, through the resource manager's remote execution (srun, flux
exec, ssh, local). The files of ranks no node could give (node gone, file
damaged) are rebuilt in the prefix from that redundancy data when each
redundancy set lost no more than its scheme tolerates (XOR: one member);
otherwise the dataset is recorded incomplete with those ranks lost.
Down nodes are found as scr_list_down_nodes does. With SCR_ENABLE=0 it does
nothing.

  -p, --prefix DIR       prefix directory (default: SCR_PREFIX, else the working directory)
  -j, --joblauncher L    accepted for SCR compatibility; the resource manager decides
  --json                 print what was scavenged as JSON on stdout
  -v, --verbose          print each step on stderr

EXIT STATUS
  0  nothing needed scavenging, or every needed dataset reached the prefix
  1  a dataset could not be completed, nor rebuilt (the message names it, the
     missing ranks and the redundancy sets that lost too much)
  2  usage error
  3  cannot run: not in an allocation, no healthy node, no remote execution
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("scr_postrun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		o                      jobrun.PostrunCmdOptions
		launcher               string
		asJSON, verbose        bool
		scavengeNode, listNode bool
		id                     int64
		jobID                  string
	)
	fs.StringVar(&o.Prefix, "p", "", "")
	fs.StringVar(&o.Prefix, "prefix", "", "")
	fs.StringVar(&launcher, "j", "", "")
	fs.StringVar(&launcher, "joblauncher", "", "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&verbose, "verbose", false, "")
	// Hidden: the per-node side, run on each node by scr_postrun itself.
	fs.BoolVar(&scavengeNode, "scavenge-node", false, "")
	fs.BoolVar(&listNode, "list-node", false, "")
	fs.Int64Var(&id, "id", 0, "")
	fs.StringVar(&jobID, "job-id", "", "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "scr_postrun: bad arguments %q (see --help)\n", args)
		return 2
	}
	// The per-node side reads the caches of the job the driver names
	// (--job-id; the environment may not have crossed the transport).
	env := os.LookupEnv
	if jobID != "" {
		env = func(k string) (string, bool) {
			if k == "SCR_JOB_ID" {
				return jobID, true
			}
			return os.LookupEnv(k)
		}
	}
	switch {
	case listNode:
		ds, err := jobrun.ListNode(env)
		return nodeAnswer(stdout, stderr, ds, err)
	case scavengeNode:
		if id <= 0 || o.Prefix == "" {
			fmt.Fprintln(stderr, "scr_postrun: --scavenge-node needs --id N and --prefix DIR")
			return 2
		}
		res, err := jobrun.ScavengeNode(ctx, env, id, o.Prefix)
		return nodeAnswer(stdout, stderr, res, err)
	}
	if verbose {
		o.Log = stderr
	}
	res, err := jobrun.PostrunCmd(ctx, o)
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	}
	for _, id := range sortedIDs(res.Failed) {
		fmt.Fprintf(stderr, "scr_postrun: dataset %d not scavenged: %s\n", id, res.Failed[id])
	}
	var ue *jobrun.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "scr_postrun: %v\n", err)
		return 2
	case errors.Is(err, jobrun.ErrNotInAllocation), errors.Is(err, jobrun.ErrNoHealthyNode), errors.Is(err, jobrun.ErrNoCopier):
		fmt.Fprintf(stderr, "scr_postrun: %v\n", err)
		return 3
	default:
		fmt.Fprintf(stderr, "scr_postrun: %v\n", err)
		return 1
	}
}

// nodeAnswer prints the per-node result as JSON (exit 0) or the error (exit 1).
func nodeAnswer(stdout, stderr io.Writer, v any, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "scr_postrun: %v\n", err)
		return 1
	}
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(stderr, "scr_postrun: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(b))
	return 0
}

func sortedIDs(m map[int64]string) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

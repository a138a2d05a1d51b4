// Command scr_launch starts N ranks of a program on this machine, each on a
// simulated node, and serves them PMI-1 like srun: the local launcher for
// development, tests and demos.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/locallaunch"
)

const usage = `usage: scr_launch [-n N] [--nodes LIST] [--ranks-per-node K] [--cache-root DIR]
                  [--keep-going] PROG [ARGS...]

Start N ranks of PROG on this machine, placed in blocks of K on the nodes of
LIST (a host list: n1,n2 or node[1-4]; default node1..nodeM). Each rank gets
PMI-1 on PMI_FD (as from srun --mpi=pmi2), PMI_RANK, PMI_SIZE, its node's
identity SCR_NODE_NAME, and its node's storage SCR_CACHE_BASE = SCR_CNTL_BASE
= DIR/<node>/shm. When a rank fails the others are killed (like srun -K)
unless --keep-going. SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are
forwarded to every rank. A file DIR/<node>/poweroff freezes the node's ranks
(SIGSTOP): the node vanishes silently, as if powered off.

  -n N                   number of ranks (default: nodes x ranks per node)
      --nodes LIST       simulated nodes
      --ranks-per-node K ranks per node (alias --ppn; default ceil(N/nodes), or 1)
      --cache-root DIR   root of the nodes' storage (alias --dir; default
                         $SCR_LOCAL_ROOT, else /dev/shm/scr_launch.<uid>)
      --keep-going       do not kill the other ranks when one fails
  -h, --help             this text

EXIT STATUS
  0      every rank exited with 0
  N      the exit code of the first rank that failed (128+S if signal S
         killed it; 75 if it ended because it lost a peer)
  2      usage error
  1      a rank could not be started
`

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	os.Exit(run(context.Background(), os.Args[1:], sigs, os.Stdout, os.Stderr))
}

func parse(args []string) (locallaunch.Options, error) {
	var o locallaunch.Options
	var nodes string
	fs := flag.NewFlagSet("scr_launch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.N, "n", 0, "")
	fs.StringVar(&nodes, "nodes", "", "")
	fs.IntVar(&o.PerNode, "ranks-per-node", 0, "")
	fs.IntVar(&o.PerNode, "ppn", 0, "")
	fs.StringVar(&o.CacheRoot, "cache-root", "", "")
	fs.StringVar(&o.CacheRoot, "dir", "", "")
	fs.BoolVar(&o.KeepGoing, "keep-going", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, &locallaunch.UsageError{Msg: err.Error()}
	}
	if nodes != "" {
		list, err := hostlist.Expand(nodes)
		if err != nil {
			return o, &locallaunch.UsageError{Msg: fmt.Sprintf("--nodes %q: %v", nodes, err)}
		}
		o.Nodes = list
	}
	o.Argv = fs.Args()
	_, err := locallaunch.Placement(&o)
	return o, err
}

func run(ctx context.Context, args []string, sigs <-chan os.Signal, stdout, stderr io.Writer) int {
	opts, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	var res *locallaunch.Result
	if err == nil {
		opts.Signals, opts.Stdout, opts.Stderr = sigs, stdout, stderr
		res, err = locallaunch.Run(ctx, opts)
	}
	var ue *locallaunch.UsageError
	switch {
	case err == nil:
		if code := res.ExitCode(); code != 0 {
			r := res.Ranks[res.FirstFail]
			fmt.Fprintf(stderr, "scr_launch: rank %d on %s exited with %d\n", res.FirstFail, r.Node, code)
			return code
		}
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%v\n(see scr_launch --help)\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "scr_launch: %v\n", err)
		return 1
	}
}

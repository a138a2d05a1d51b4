// Command scr_have_restart prints the name of the checkpoint an application
// would restart from, as SCR's scr_have_restart does: launched under the
// job's launcher, it starts SCR on every rank (which rebuilds what the
// caches lost and, if the caches hold nothing, fetches from the prefix) and
// rank 0 prints the name. scr_run --restart-cmd runs it before each launch.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
)

const usage = `usage: <launcher> [launcher args] scr_have_restart

Starts SCR on every rank of the launch (Init: the caches are rebuilt, and
HaveRestart: a checkpoint is fetched from the prefix if the caches hold none)
and prints, on rank 0, the name of the checkpoint the application will
restart from; nothing when there is none. It does not call Finalize, so the
job script goes on with the application's launch, which finds the checkpoint
ready in the caches.

EXIT STATUS
  0   done (a name printed, or none: no checkpoint)
  1   SCR could not start or the search failed (message on stderr; SCR's
      exits 0 here)
  2   usage error
  75  a peer rank was lost (comm.ExitPeerLost)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "scr_have_restart: unexpected argument %q\n%s", args[0], usage)
		return 2
	}
	c, err := comm.FromEnv(ctx, comm.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "scr_have_restart: %v\n", err)
		return 1
	}
	defer c.Close()
	name, ok, err := haveRestart(ctx, c, stderr)
	switch {
	case errors.Is(err, comm.ErrPeerLost):
		fmt.Fprintf(stderr, "scr_have_restart: %v\n", err)
		return comm.ExitPeerLost
	case err != nil:
		fmt.Fprintf(stderr, "scr_have_restart: %v\n", err)
		return 1
	}
	if ok && c.Rank() == 0 {
		fmt.Fprintln(stdout, name)
	}
	return 0
}

// haveRestart is SCR Init then HaveRestart on this rank.
func haveRestart(ctx context.Context, c comm.Comm, stderr io.Writer) (string, bool, error) {
	h, err := scr.Init(ctx, scr.Options{Comm: c, Stderr: stderr})
	if err != nil {
		return "", false, err
	}
	if !h.Enabled() {
		return "", false, nil
	}
	return h.HaveRestart(ctx)
}

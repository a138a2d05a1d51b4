// Command vcluster runs a virtual cluster (network-namespace nodes with
// real Slurm) on this machine, for tests of node failures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/scr-go/scr/internal/vcluster"
	"github.com/scr-go/scr/internal/vcluster/cli"
)

const usage = `usage: vcluster [--state DIR | --name NAME] COMMAND [args]

Commands:
  up [-n 3] [--rm slurm|flux] [--timeouts fast|production] [--ssh] [--bin DIR] [--json]
        bring N nodes up (node1..nodeN), each with its own network, UTS, mount,
        PID and IPC namespaces and a private /dev/shm. slurm: slurmctld in a
        head namespace, one slurmd per node. flux: a Flux system instance, one
        broker per node (node1 is broker 0; flux-core from make deps-flux).
        Removes a stale cluster of the same state directory first.
        fast: Slurm marks a dead node DOWN in ~10 s, Flux loses it after
        tcp_user_timeout=2s; production: SlurmdTimeout=300, Flux's 20 s.
        (--slurm-timeouts is the old name of --timeouts.)
  exec NODE -- CMD...   run CMD on NODE ("head" = the slurmctld namespace), in
        the current directory, with SLURM_CONF (Flux: FLUX_URI of the node's
        broker) and PATH (bin dir first) set and the caller's SCR_* variables
        passed on
  poweroff NODE [--json]  cut NODE's link, SIGKILL its processes (slurmd or
                        the flux broker among them), drop its tmpfs
  poweron NODE          boot NODE again (empty /dev/shm, slurmd or broker),
                        until Slurm sees it responding / its broker rejoined
  status [--json]       nodes, power, Slurm states (Flux: online/offline)
  env                   SLURM_CONF (Flux: FLUX_URI of node1's broker) and the
                        state and shared directories
  down                  remove every namespace, process, mount and file of the
                        cluster (safe to run twice)

Global flags:
  --state DIR   state directory (default /tmp/vcluster-NAME)
  --name NAME   cluster name (default "default")

Needs root and the Debian packages of ` + "`make deps`" + `.

EXIT STATUS
  0    success
  1    the operation failed (message on stderr)
  2    usage error
  3    required programs missing (run make deps)
  4    no cluster in the state directory
  N    exec: the exit status of CMD (128+signal if it was killed)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	o, err := parse(os.Args[1:])
	if err == nil {
		err = cli.Run(ctx, o)
	}
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	var ee *cli.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, cli.ErrUsage):
		fmt.Fprintf(os.Stderr, "vcluster: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, vcluster.ErrMissing):
		fmt.Fprintln(os.Stderr, err)
		return 3
	case errors.Is(err, vcluster.ErrNoCluster):
		fmt.Fprintln(os.Stderr, err)
		return 4
	default:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
}

func parse(args []string) (cli.Options, error) {
	o := cli.Options{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	g := flag.NewFlagSet("vcluster", flag.ContinueOnError)
	g.Usage = func() { fmt.Fprint(os.Stdout, usage) }
	g.StringVar(&o.StateDir, "state", "", "state directory")
	g.StringVar(&o.Name, "name", "", "cluster name")
	if err := g.Parse(args); err != nil {
		return o, err
	}
	rest := g.Args()
	if len(rest) == 0 {
		return o, fmt.Errorf("%w: no command", cli.ErrUsage)
	}
	o.Command, rest = rest[0], rest[1:]
	f := flag.NewFlagSet("vcluster "+o.Command, flag.ContinueOnError)
	f.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	f.StringVar(&o.StateDir, "state", o.StateDir, "state directory")
	f.StringVar(&o.Name, "name", o.Name, "cluster name")
	switch o.Command {
	case "up":
		f.IntVar(&o.Nodes, "n", 3, "number of nodes")
		f.StringVar(&o.Timeouts, "timeouts", "fast", "fast or production")
		f.StringVar(&o.Timeouts, "slurm-timeouts", "fast", "fast or production (old name of --timeouts)")
		f.StringVar(&o.RM, "rm", "slurm", "resource manager: slurm or flux")
		f.BoolVar(&o.SSH, "ssh", false, "start sshd on every node")
		f.StringVar(&o.BinDir, "bin", defaultBin(), "directory put first on PATH on the nodes")
		f.BoolVar(&o.JSON, "json", false, "print JSON")
	case "status", "poweroff":
		f.BoolVar(&o.JSON, "json", false, "print JSON")
	case "exec", "poweron", "down", "env":
	case "help", "-h", "--help":
		fmt.Print(usage)
		return o, flag.ErrHelp
	default:
		return o, fmt.Errorf("%w: unknown command %q", cli.ErrUsage, o.Command)
	}
	switch o.Command {
	case "exec", "poweroff", "poweron":
		if len(rest) == 0 || rest[0] == "--" {
			return o, fmt.Errorf("%w: %s needs a NODE", cli.ErrUsage, o.Command)
		}
		o.Node, rest = rest[0], rest[1:]
	}
	if err := f.Parse(rest); err != nil {
		return o, err
	}
	rest = f.Args()
	if o.Command == "exec" {
		if len(rest) == 0 {
			return o, fmt.Errorf("%w: exec NODE -- CMD...", cli.ErrUsage)
		}
		o.Argv = rest
		return o, nil
	}
	if len(rest) > 0 {
		return o, fmt.Errorf("%w: unexpected arguments %q", cli.ErrUsage, rest)
	}
	return o, nil
}

// defaultBin is $SCR_BIN, else the directory of this executable (the
// project's bin directory when built by make build).
func defaultBin() string {
	if b := os.Getenv("SCR_BIN"); b != "" {
		return b
	}
	if exe, err := os.Executable(); err == nil {
		return filepath.Dir(exe)
	}
	return ""
}

// Command scr_bench measures what scr-go costs on this machine: checkpoint
// time with SINGLE and with XOR, and the rebuild of one lost node, each as a
// ratio to a plain write of the same bytes by the same ranks to the same
// tmpfs with the same fsync policy, measured in the same run.
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
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/scr-go/scr"
)

const usage = `usage: scr_bench [options]

Simulates NODES nodes (one rank each, goroutines over an in-process
communicator, one directory per node in tmpfs) and reports median times of:
  plain     every rank writes SIZE bytes to its node's directory
  SINGLE    StartOutput, Route, the same write, Complete with SINGLE
  XOR       the same with XOR (one set over all nodes)
  node      one rank writes SIZE bytes (one node's data)
  rebuild   Init after one node's cache was wiped (XOR rebuild onto it)
and, in steady state (the timed write replaces one written just before:
plain overwrite vs a checkpoint that evicts the previous one), the same
for SINGLE and XOR without a target; and the ratios SINGLE/plain (target <= 1.2), XOR/plain (target <= 3),
rebuild/node (target <= 4).

  --nodes N      simulated nodes (default 4)
  --size SIZE    bytes per rank, units k/m/g (default 64MB)
  --reps N       repetitions, median reported (default 3)
  --dir DIR      scratch directory (default /dev/shm/scr_bench.<pid>)
  --nofsync      do not fsync written files
  --json         print the result as JSON
  --cpuprofile F write a CPU profile of the whole run to F (go tool pprof)
  -h, --help     this text

EXIT STATUS
  0  measured; every ratio within its target
  1  the benchmark failed (I/O, SCR error, rebuilt data did not verify)
  2  usage error
  4  measured; a ratio missed its target
`

var errUsage = errors.New("usage error")
var errTarget = errors.New("a ratio missed its target")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type sizeFlag struct{ p *int64 }

func (f sizeFlag) String() string { return "" }
func (f sizeFlag) Set(s string) error {
	n, err := scr.ParseSize(s)
	if err != nil {
		return err
	}
	*f.p = n
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, asJSON, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err == nil && o.CPUProfile != "" {
		var stopProf func() error
		if stopProf, err = startProfile(o.CPUProfile); err == nil {
			defer func() {
				if perr := stopProf(); perr != nil {
					fmt.Fprintf(stderr, "scr_bench: %v\n", perr)
				}
			}()
		}
	}
	if err == nil {
		if o.Dir == "" {
			o.Dir = filepath.Join("/dev/shm", "scr_bench."+strconv.Itoa(os.Getpid()))
			defer os.RemoveAll(o.Dir)
		}
		var r Result
		if r, err = Run(ctx, o); err == nil {
			report(stdout, r, o, asJSON)
			err = checkTargets(r)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "scr_bench: %v\n", err)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errTarget):
		return 4
	default:
		return 1
	}
}

func parse(args []string) (Options, bool, error) {
	o := Options{Nodes: 4, Size: 64 << 20, Reps: 3, Fsync: true}
	var nofsync, asJSON bool
	fs := flag.NewFlagSet("scr_bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.Nodes, "nodes", o.Nodes, "")
	fs.Var(sizeFlag{&o.Size}, "size", "")
	fs.IntVar(&o.Reps, "reps", o.Reps, "")
	fs.StringVar(&o.Dir, "dir", "", "")
	fs.BoolVar(&nofsync, "nofsync", false, "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, false, err
		}
		return o, false, fmt.Errorf("%v: %w", err, errUsage)
	}
	if o.Nodes < 2 || o.Reps < 1 || o.Size < 1 || fs.NArg() > 0 {
		return o, false, fmt.Errorf("want --nodes >= 2, --reps >= 1, --size >= 1 and no arguments (see --help): %w", errUsage)
	}
	o.Fsync = !nofsync
	return o, asJSON, nil
}

// startProfile starts a CPU profile into path; the returned func stops it.
func startProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

func checkTargets(r Result) error {
	if r.SingleRatio > TargetSingle || r.XORRatio > TargetXOR || r.RebuildRatio > TargetRebuild {
		return fmt.Errorf("%w (SINGLE %.2f, XOR %.2f, rebuild %.2f)", errTarget, r.SingleRatio, r.XORRatio, r.RebuildRatio)
	}
	return nil
}

func report(w io.Writer, r Result, o Options, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "%d nodes x %d bytes, fsync=%v, median of %d\n", r.Nodes, r.BytesPerRank, o.Fsync, r.Reps)
	fmt.Fprintf(w, "plain write      %8.4f s\n", r.PlainSecs)
	fmt.Fprintf(w, "SINGLE ckpt      %8.4f s   ratio %.2f (target <= %.1f)\n", r.SingleSecs, r.SingleRatio, TargetSingle)
	fmt.Fprintf(w, "XOR ckpt         %8.4f s   ratio %.2f (target <= %.1f)\n", r.XORSecs, r.XORRatio, TargetXOR)
	fmt.Fprintf(w, "plain node write %8.4f s\n", r.NodeSecs)
	fmt.Fprintf(w, "XOR rebuild      %8.4f s   ratio %.2f (target <= %.1f)\n", r.RebuildSecs, r.RebuildRatio, TargetRebuild)
	fmt.Fprintf(w, "steady state, replacing the previous checkpoint (no target):\n")
	fmt.Fprintf(w, "plain overwrite  %8.4f s\n", r.PlainSteadySecs)
	fmt.Fprintf(w, "SINGLE replace   %8.4f s   ratio %.2f\n", r.SingleSteadySecs, r.SingleSteadyRatio)
	fmt.Fprintf(w, "XOR replace      %8.4f s   ratio %.2f\n", r.XORSteadySecs, r.XORSteadyRatio)
}

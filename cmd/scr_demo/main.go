// Command scr_demo runs scr-go's reference scenario on a local virtual
// cluster with real Slurm (root, Debian's Slurm packages: `make demo`), or
// with a real Flux system instance (`--rm flux`, `make demo RM=flux`;
// flux-core from `make deps-flux`).
//
// It prints the recovery timeline and saves it as scr-demo/timeline.json
// under the current directory.
//
// EXIT STATUS: 0 the scenario passed; 1 it failed (the reason is printed);
// 2 usage error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/scr-go/scr/internal/scenario"
	"github.com/scr-go/scr/internal/vcluster"
)

func main() {
	var o scenario.Options
	fs := flag.NewFlagSet("scr_demo", flag.ContinueOnError)
	fs.StringVar(&o.BinDir, "bin", os.Getenv("SCR_BIN"), "directory of the scr-go commands")
	fs.StringVar(&o.OutDir, "out", "scr-demo", "directory for timeline.json")
	fs.StringVar(&o.Size, "size", "64MB", "test_api --size per rank")
	fs.IntVar(&o.Seconds, "seconds", 2, "test_api --seconds between checkpoints")
	rm := fs.String("rm", "slurm", "resource manager: slurm or flux")
	quiet := fs.Bool("q", false, "print only the result")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	o.RM = vcluster.RM(*rm)
	if o.RM != vcluster.RMSlurm && o.RM != vcluster.RMFlux {
		fmt.Fprintf(os.Stderr, "scr_demo: --rm %q: want slurm or flux\n", *rm)
		os.Exit(2)
	}
	if !*quiet {
		o.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := scenario.Run(ctx, o)
	if res != nil {
		fmt.Print(res.Table())
		fmt.Printf("timeline saved to %s/timeline.json\n", o.OutDir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "scr_demo: the scenario failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("scr_demo: the reference scenario passed")
}

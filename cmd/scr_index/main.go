// Command scr_index lists and edits the dataset index of a prefix directory.
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

	"github.com/scr-go/scr/internal/flush"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/prefix/indexcmd"
)

const usage = `usage: scr_index [options]

List or edit the dataset index of a prefix directory (<prefix>/.scr/index.json).

Actions (at most one; default --list):
  -l, --list               list datasets, newest first
  -c, --current NAME       restart from checkpoint NAME next time
      --drop NAME          remove NAME from the index (files stay)
      --drop-after NAME    remove every entry newer than NAME
  -a, --add NAME           add the dataset called NAME from its summary
  -b, --build ID           check dataset ID's files against its summary and
                           rank2file, rebuild missing or damaged ranks from
                           the redundancy data scr_postrun scavenged (when
                           each set lost no more than its scheme tolerates),
                           and (re)create its index entry; the entry is
                           valid only if every file is there
Options:
  -p, --prefix DIR         prefix directory (default $SCR_PREFIX, else .)
      --json               machine-readable output
  -h, --help               this text

EXIT STATUS
  0  success
  1  the action failed (unknown dataset, damaged metadata file, I/O error)
  2  usage error
  3  --build: the dataset is incomplete (files missing or of the wrong size,
     and not rebuildable from redundancy data)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err == nil {
		err = indexcmd.Run(ctx, opts, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "scr_index: %v\n", err)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, indexcmd.ErrUsage):
		return 2
	case errors.Is(err, prefix.ErrIncomplete):
		return 3
	default:
		return 1
	}
}

func parse(args []string, stderr io.Writer) (indexcmd.Options, error) {
	var o indexcmd.Options
	fs := flag.NewFlagSet("scr_index", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var listF bool
	var current, drop, dropAfter, add, build string
	for _, n := range []string{"l", "list"} {
		fs.BoolVar(&listF, n, false, "")
	}
	for _, n := range []string{"c", "current"} {
		fs.StringVar(&current, n, "", "")
	}
	fs.StringVar(&drop, "drop", "", "")
	fs.StringVar(&dropAfter, "drop-after", "", "")
	for _, n := range []string{"a", "add"} {
		fs.StringVar(&add, n, "", "")
	}
	for _, n := range []string{"b", "build"} {
		fs.StringVar(&build, n, "", "")
	}
	for _, n := range []string{"p", "prefix"} {
		fs.StringVar(&o.Prefix, n, "", "")
	}
	fs.BoolVar(&o.JSON, "json", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %v (see --help)", indexcmd.ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("%w: unexpected argument %q (see --help)", indexcmd.ErrUsage, fs.Arg(0))
	}
	n := 0
	set := func(a indexcmd.Action, name string) {
		if name != "" {
			n++
			o.Action, o.Name = a, name
		}
	}
	if listF {
		n++
		o.Action = indexcmd.List
	}
	set(indexcmd.Current, current)
	set(indexcmd.Drop, drop)
	set(indexcmd.DropAfter, dropAfter)
	set(indexcmd.Add, add)
	if build != "" {
		n++
		id, err := indexcmd.ParseID(build)
		if err != nil {
			return o, err
		}
		o.Action, o.ID = indexcmd.Build, id
	}
	if n > 1 {
		return o, fmt.Errorf("%w: give at most one action (see --help)", indexcmd.ErrUsage)
	}
	// --build regenerates missing ranks from the redundancy data a
	// scavenge copied to the prefix.
	o.Rebuild = flush.ScavengeRebuilder{}
	return o, nil
}

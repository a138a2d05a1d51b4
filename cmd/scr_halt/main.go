// Command scr_halt tells a running or future scr-go job to stop: it sets,
// unsets, lists or removes the halt conditions in <prefix>/.scr/halt.json.
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
	"time"

	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/prefix/haltcmd"
)

const usage = `usage: scr_halt [options] [prefix dir ...]

Set the conditions under which the job in each prefix directory (default
$SCR_PREFIX, else .) stops. With no condition, the job halts after its next
checkpoint (reason JOB_HALTED); scr_run does not relaunch it.

  -c, --checkpoints N      halt after N more checkpoints
  -b, --before TIME        halt before TIME (less --seconds, if set)
  -a, --after TIME         halt after TIME
  -s, --seconds N          halt when N seconds or fewer remain in the allocation
      --reason TEXT        reason to record (default JOB_HALTED)
      --unset-checkpoints, --unset-before, --unset-after, --unset-seconds
      --unset-reason       clear that condition (--unset-reason also clears
                           --immediate)
  -r, --remove             delete the halt file (the job continues normally)
  -i, --immediate          halt now: scr_run kills the running step at once
                           instead of waiting for the next checkpoint
  -l, --list               show the halt conditions
  -v, --verbose            show the halt conditions after a change
      --json               machine-readable output (a list, one per prefix)
  -h, --help               this text

TIME is YYYY-MM-DDTHH:MM[:SS] (local time), RFC 3339, HH:MM (today),
@UNIXSECONDS or +DURATION from now (+2h, +90m, +3600).

EXIT STATUS
  0  success
  1  a halt file could not be read or written (damaged file, I/O error)
  2  usage error
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parse(args, time.Now())
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err == nil {
		err = haltcmd.Run(ctx, opts, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "scr_halt: %v\n", err)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, haltcmd.ErrUsage):
		return 2
	default:
		return 1
	}
}

// optInt64 is a flag that records whether it was given.
type optInt64 struct{ p **int64 }

func (f optInt64) String() string { return "" }
func (f optInt64) Set(s string) error {
	v, err := config.ParseInt(s)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	*f.p = &v
	return nil
}

type optTime struct {
	p   **int64
	now time.Time
}

func (f optTime) String() string { return "" }
func (f optTime) Set(s string) error {
	v, err := haltcmd.ParseTime(s, f.now)
	if err != nil {
		return err
	}
	*f.p = &v
	return nil
}

func parse(args []string, now time.Time) (haltcmd.Options, error) {
	var o haltcmd.Options
	fs := flag.NewFlagSet("scr_halt", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	both := func(short, long string, f func(name string)) { f(short); f(long) }
	both("c", "checkpoints", func(n string) { fs.Var(optInt64{&o.Checkpoints}, n, "") })
	both("b", "before", func(n string) { fs.Var(optTime{&o.Before, now}, n, "") })
	both("a", "after", func(n string) { fs.Var(optTime{&o.After, now}, n, "") })
	both("s", "seconds", func(n string) { fs.Var(optInt64{&o.Seconds}, n, "") })
	fs.StringVar(&o.Reason, "reason", "", "")
	fs.BoolVar(&o.UnsetCheckpoints, "unset-checkpoints", false, "")
	fs.BoolVar(&o.UnsetBefore, "unset-before", false, "")
	fs.BoolVar(&o.UnsetAfter, "unset-after", false, "")
	fs.BoolVar(&o.UnsetSeconds, "unset-seconds", false, "")
	fs.BoolVar(&o.UnsetReason, "unset-reason", false, "")
	both("r", "remove", func(n string) { fs.BoolVar(&o.Remove, n, false, "") })
	both("i", "immediate", func(n string) { fs.BoolVar(&o.Immediate, n, false, "") })
	both("l", "list", func(n string) { fs.BoolVar(&o.List, n, false, "") })
	both("v", "verbose", func(n string) { fs.BoolVar(&o.Verbose, n, false, "") })
	fs.BoolVar(&o.JSON, "json", false, "")
	// Flags and prefix directories may be mixed; "--" ends the flags.
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return o, err
			}
			return o, fmt.Errorf("%w: %v (see --help)", haltcmd.ErrUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return o, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			o.Dirs = append(o.Dirs, rest...)
			return o, nil
		}
		o.Dirs = append(o.Dirs, rest[0])
		args = rest[1:]
	}
}

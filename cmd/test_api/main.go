// Command test_api emulates an application that checkpoints periodically
// through scr-go, the way SCR's examples/test_api does: each rank writes
// rank_<r>.ckpt (a header with the timestep, then a byte pattern), and on
// restart verifies every byte of the checkpoint SCR offers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
)

const usage = `usage: test_api [options]

Writes a checkpoint per rank (one priming write, then --times timed ones)
through SCR, and first restarts from the checkpoint SCR offers, verifying
every byte. Run it under scr_run / a launcher; ranks find each other through
the launcher's PMI (or run alone as a single rank).

  -s, --size SIZE       pattern bytes per rank, units k/m/g/t/p/e[b] (default 512k)
  -t, --times N         timed writes after the priming write (default 5)
  -z, --seconds N       sleep N seconds between writes (default 0)
  -w, --reduce N        iterations of a compute kernel after each write (default 0)
  -k, --kernel K        the kernel: 0 CPU loop, 1 memcpy of 1 GiB, 2 allreduce,
                        3 allreduce with each iteration's time (default 0)
  -p, --path DIR        write under DIR inside the prefix
  -f, --flush N         mark every Nth write OUTPUT too (flushed to the prefix)
  -o, --output N        make every Nth write a pure OUTPUT dataset
  -a, --config-api BOOL set SCR's test configuration through the API (SCR_Config):
                        STORE=/dev/shm GROUP=NODE COUNT=1, SCR_COPY_TYPE=FILE,
                        CKPT=0 INTERVAL=1 GROUP=NODE STORE=/dev/shm TYPE=XOR
                        SET_SIZE=16, SCR_DEBUG=1 (default no)
  -c, --conf-file BOOL  read the file SCR_CONF_FILE names (default yes; no = as
                        if SCR_CONF_FILE were unset)
      --current NAME    restart from the checkpoint NAME (SCR Current)
      --noscr           plain file I/O to the prefix, no SCR
      --noscrrestart    do not restart through SCR (with --current: read
                        <prefix>/NAME directly)
      --nofsync         do not fsync written files
      --shared-file     all ranks write one file, rank_shared.ckpt, each its
                        part at its offset (needs SCR_CACHE_BYPASS=1)
      --global-store DIR  add the cache store STORE=DIR GROUP=WORLD
  -h, --help            this text

BOOL is yes/no, true/false, y/n or 1/0 (SCR's test_api reads these inverted,
a bug; here yes means yes).

Lines printed by rank 0: "Restarting from checkpoint named X", one
"Completed checkpoint N: S secs, B bytes, BW bytes/sec" per write, and
min/max/avg of the Init time and of the file I/O bandwidth. After each
write it asks SCR whether to stop (scr_halt, time limit) and, if so,
prints "Halting after checkpoint N: REASON" and finishes normally.

EXIT STATUS
  0   success
  1   an SCR call or the file I/O failed
  2   usage error
  3   restart check failed: a checkpoint was offered but its data did not
      verify on some rank (SCR's test_api exits 0 here; we do not)
  75  a peer rank was lost (comm.ExitPeerLost)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err == nil {
		var c comm.Comm
		c, err = bootstrap(ctx)
		if err == nil {
			err = Run(ctx, c, o, stdout)
			c.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "test_api: %v\n", err)
	}
	return exitCode(err)
}

func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.Is(err, ErrRestartCheck):
		return 3
	case errors.Is(err, comm.ErrPeerLost):
		return comm.ExitPeerLost
	default:
		return 1
	}
}

// maxSeconds is the longest --seconds a time.Duration holds.
const maxSeconds = int64(math.MaxInt64 / int64(time.Second))

// memoryBytes is the machine's memory (0 when unknown).
func memoryBytes() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
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

func parse(args []string) (Options, error) {
	o := Options{Size: 512 << 10, Times: 5}
	fs := flag.NewFlagSet("test_api", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var secs int
	both := func(short, long string, f func(name string)) { f(short); f(long) }
	boolArg := func(dst *bool) func(string) error {
		return func(s string) error {
			switch strings.ToLower(s) {
			case "yes", "true", "y", "1":
				*dst = true
			case "no", "false", "n", "0":
				*dst = false
			default:
				return fmt.Errorf("want yes or no, got %q", s)
			}
			return nil
		}
	}
	both("s", "size", func(n string) { fs.Var(sizeFlag{&o.Size}, n, "") })
	both("w", "reduce", func(n string) { fs.IntVar(&o.Reduce, n, 0, "") })
	both("k", "kernel", func(n string) { fs.IntVar(&o.Kernel, n, 0, "") })
	both("a", "config-api", func(n string) { fs.Func(n, "", boolArg(&o.ConfigAPI)) })
	confFile := true
	both("c", "conf-file", func(n string) { fs.Func(n, "", boolArg(&confFile)) })
	fs.BoolVar(&o.SharedFile, "shared-file", false, "")
	fs.StringVar(&o.GlobalStore, "global-store", "", "")
	both("t", "times", func(n string) { fs.IntVar(&o.Times, n, 5, "") })
	both("z", "seconds", func(n string) { fs.IntVar(&secs, n, 0, "") })
	both("p", "path", func(n string) { fs.StringVar(&o.Path, n, "", "") })
	both("f", "flush", func(n string) { fs.IntVar(&o.Flush, n, 0, "") })
	both("o", "output", func(n string) { fs.IntVar(&o.Output, n, 0, "") })
	fs.StringVar(&o.Current, "current", "", "")
	fs.BoolVar(&o.NoSCR, "noscr", false, "")
	fs.BoolVar(&o.NoSCRRestart, "noscrrestart", false, "")
	fs.BoolVar(&o.NoFsync, "nofsync", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%v: %w", err, ErrUsage)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), ErrUsage)
	}
	if o.Times < 0 || secs < 0 || o.Flush < 0 || o.Output < 0 || o.Size < 0 || o.Reduce < 0 {
		return o, fmt.Errorf("--times, --seconds, --reduce, --flush, --output and --size must not be negative: %w", ErrUsage)
	}
	if o.Kernel < 0 || o.Kernel > 3 {
		return o, fmt.Errorf("--kernel %d: want 0 (CPU), 1 (memcpy), 2 (allreduce) or 3 (allreduce times): %w", o.Kernel, ErrUsage)
	}
	if int64(secs) > maxSeconds {
		return o, fmt.Errorf("--seconds %d: at most %d (a Go duration): %w", secs, maxSeconds, ErrUsage)
	}
	if m := memoryBytes(); m > 0 && o.Size > m {
		// Each rank holds its checkpoint in memory: 1EB made the
		// allocation panic.
		return o, fmt.Errorf("--size %d: more than this machine's memory (%d bytes); each rank holds its checkpoint in memory: %w", o.Size, m, ErrUsage)
	}
	o.Seconds = time.Duration(secs) * time.Second
	o.NoConfFile = !confFile
	return o, nil
}

// Command scr_bench measures what scr-go's checkpoints cost on this
// machine, as ratios to a plain write of the same bytes measured in the
// same run: by default with real processes (ranks launched through
// scr_launch, talking TCP), or with --mpi a C program over MPI and libscr,
// every checkpoint of a run counted, the first included.
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
	"strings"
	"syscall"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/internal/bench"
)

const usage = `usage: scr_bench [options]

Launches jobs of NODES ranks (one per simulated node, real processes
started by scr_launch, bootstrapped over PMI, talking TCP) and times, with
every checkpoint of every run counted, the first of a run included:
  plain     every rank writes SIZE bytes to a new file in its node's tmpfs
  SINGLE    StartOutput, Route, the same write, Complete (SCR_COPY_TYPE=SINGLE)
  XOR       the same with XOR (one set over all nodes)
  RS        the same with Reed-Solomon, two failures per set
  REBUILD   a job writes an XOR checkpoint; the next job's ranks on the last
            node wipe their cache first; timed: its Init, which rebuilds
            them, against the plain write of one node's bytes
Each scheme runs RUNS times (schemes interleaved), TIMES checkpoints per run,
each checkpoint right after a plain write of the same bytes. Reported per
scheme: median and worst checkpoint, as ratios to the median plain write;
targets on the worst: SINGLE <= 1.2, XOR <= 3, RS <= 4, REBUILD <= 4. Also
the same ratios in CPU time of all ranks (cpu med, cpu wst: what the wall
ratios tend to on a loaded machine), a lower bound of what the scheme's
data movements alone cost in plain writes on this machine (cpu floor: from
the write, read, loopback TCP and XOR costs scr_bench measures before the
runs, writes valued at the ranks' own plain write), the phases of the
worst checkpoint (the library's timeline) and each rank's peak resident
set during the timed sections.

  --nodes N         simulated nodes, one rank each (default 4)
  --size SIZE       bytes per rank, units k/m/g (default 64MB)
  --runs N          launches per scheme (default 3)
  --times N         checkpoints per launch (default 3)
  --schemes LIST    comma-separated, of SINGLE,XOR,RS,REBUILD (default all)
  --launcher CMD    command that starts the ranks, split into words; {n},
                    {nodes} and {root} are replaced by the number of ranks,
                    the node list and the nodes' storage root (default:
                    scr_launch -n {n} --nodes {nodes} --cache-root {root})
  --rank-cmd CMD    the rank program, split into words ({self}: this
                    executable; default "{self} rank"); see doc/performance.md
                    for its arguments and report format
  --mpi MPI         the ranks are the C rank program (scr_bench_rank.c of the
                    examples) over libscr and MPI: mpich or openmpi. Each job
                    is one MPMD launch of that MPI's mpiexec, a rank per
                    simulated node (its SCR_NODE_NAME, its SCR_CACHE_BASE);
                    the program is compiled against --scr-prefix
  --scr-prefix DIR  with --mpi: an scr-go installation built for that MPI
                    (make install PREFIX=DIR MPICC=mpicc.mpich or
                    mpicc.openmpi). Default: the installation this scr_bench
                    belongs to, else the source tree it was built in, whose
                    libscr is then built for the MPI into --dir (~20 s)
  --timeout D       time limit of each launch (default 2m + 2m per GiB a
                    rank writes); a launcher that runs on 10 s after every
                    rank wrote its report (MPI_Finalize hang) is killed, and
                    a note says so
  --dir DIR         scratch directory (default /dev/shm/scr_bench.<pid>)
  --nofsync         do not fsync written files
  --json            print the result as JSON
  --cpuprofile F    CPU profiles: each rank writes F.<scheme>.<run>.<mode>.rank<r>.pprof
                    (with --inprocess: one profile of the whole run in F)
  -v                print every section as it is measured (to stderr)
  --inprocess       the ranks are goroutines of this process over an in-process
                    communicator (no sockets); then --reps N (default 3)
                    repetitions, median reported, and no RS
  -h, --help        this text

EXIT STATUS
  0  measured; every worst checkpoint within its target
  1  the benchmark failed (launch, I/O, SCR error, rebuilt data did not verify)
  2  usage error
  4  measured; a worst checkpoint missed its target
`

var errUsage = errors.New("usage error")
var errTarget = errors.New("a ratio missed its target")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "rank" {
		os.Exit(bench.RankMain(ctx, os.Args[2:], os.Stderr))
	}
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

type options struct {
	procs     bench.Options
	mpi       string
	in        bench.InProcessOptions
	inprocess bool
	asJSON    bool
	profile   string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if err == nil {
		if o.procs.Dir == "" {
			o.procs.Dir = filepath.Join("/dev/shm", "scr_bench."+strconv.Itoa(os.Getpid()))
			defer os.RemoveAll(o.procs.Dir)
		}
		o.in.Dir = o.procs.Dir
		if o.inprocess {
			err = runInProcess(ctx, o, stdout)
		} else {
			var r bench.Result
			if r, err = bench.RunProcesses(ctx, o.procs); err == nil {
				report(stdout, r, o.asJSON)
				if !r.Met() {
					err = errTarget
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "scr_bench: %v\n", err)
	}
	return exitCode(err)
}

func runInProcess(ctx context.Context, o options, stdout io.Writer) error {
	if o.profile != "" {
		stopProf, err := startProfile(o.profile)
		if err != nil {
			return err
		}
		defer stopProf()
	}
	r, err := bench.RunInProcess(ctx, o.in)
	if err != nil {
		return err
	}
	reportInProcess(stdout, r, o.in, o.asJSON)
	if r.SingleRatio > bench.Targets[bench.Single] || r.XORRatio > bench.Targets[bench.XOR] || r.RebuildRatio > bench.Targets[bench.Rebuild] {
		return fmt.Errorf("%w (SINGLE %.2f, XOR %.2f, rebuild %.2f)", errTarget, r.SingleRatio, r.XORRatio, r.RebuildRatio)
	}
	return nil
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

func parse(args []string, stderr io.Writer) (options, error) {
	o := options{
		procs: bench.Options{Nodes: 4, Size: 64 << 20, Runs: 3, Times: 3, Fsync: true,
			Schemes: []string{bench.Single, bench.XOR, bench.RS, bench.Rebuild}},
		in: bench.InProcessOptions{Reps: 3},
	}
	var nofsync, verbose bool
	var schemes, launcher, rankCmd, mpi string
	fs := flag.NewFlagSet("scr_bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.procs.Nodes, "nodes", o.procs.Nodes, "")
	fs.Var(sizeFlag{&o.procs.Size}, "size", "")
	fs.IntVar(&o.procs.Runs, "runs", o.procs.Runs, "")
	fs.IntVar(&o.procs.Times, "times", o.procs.Times, "")
	fs.StringVar(&schemes, "schemes", "", "")
	fs.StringVar(&launcher, "launcher", "", "")
	fs.StringVar(&rankCmd, "rank-cmd", "", "")
	fs.StringVar(&mpi, "mpi", "", "")
	fs.StringVar(&o.procs.SCRPrefix, "scr-prefix", "", "")
	fs.DurationVar(&o.procs.LaunchTimeout, "timeout", 0, "")
	fs.IntVar(&o.in.Reps, "reps", o.in.Reps, "")
	fs.StringVar(&o.procs.Dir, "dir", "", "")
	fs.BoolVar(&nofsync, "nofsync", false, "")
	fs.BoolVar(&o.asJSON, "json", false, "")
	fs.StringVar(&o.profile, "cpuprofile", "", "")
	fs.BoolVar(&verbose, "v", false, "")
	fs.BoolVar(&o.inprocess, "inprocess", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%v: %w", err, errUsage)
	}
	p := &o.procs
	if p.Nodes < 2 || p.Runs < 1 || p.Times < 1 || o.in.Reps < 1 || p.Size < 1 || fs.NArg() > 0 {
		return o, fmt.Errorf("want --nodes >= 2, --runs, --times, --reps >= 1, --size >= 1 and no arguments (see --help): %w", errUsage)
	}
	if schemes != "" {
		p.Schemes = nil
		for _, s := range strings.Split(schemes, ",") {
			s = strings.ToUpper(strings.TrimSpace(s))
			if _, ok := bench.Targets[s]; !ok {
				return o, fmt.Errorf("--schemes: %q is none of SINGLE, XOR, RS, REBUILD: %w", s, errUsage)
			}
			p.Schemes = append(p.Schemes, s)
		}
	}
	p.Launcher, p.RankCmd = strings.Fields(launcher), strings.Fields(rankCmd)
	if err := parseMPI(p, mpi, o.inprocess, o.profile != "", stderr); err != nil {
		return o, err
	}
	p.Fsync = !nofsync
	if o.profile != "" && !o.inprocess {
		abs, err := filepath.Abs(o.profile)
		if err != nil {
			return o, fmt.Errorf("--cpuprofile: %v: %w", err, errUsage)
		}
		p.CPUProfile = abs
	}
	if verbose {
		p.Log = stderr
	}
	o.in.Nodes, o.in.Size, o.in.Fsync = p.Nodes, p.Size, p.Fsync
	return o, nil
}

// parseMPI sets up --mpi and --scr-prefix.
func parseMPI(p *bench.Options, name string, inprocess, profile bool, stderr io.Writer) error {
	if name == "" {
		if p.SCRPrefix != "" {
			return fmt.Errorf("--scr-prefix goes with --mpi: %w", errUsage)
		}
		return nil
	}
	m, err := bench.LookupMPI(strings.ToLower(name))
	switch {
	case err != nil:
		return fmt.Errorf("--mpi: %v: %w", err, errUsage)
	case len(p.Launcher) > 0 || inprocess:
		return fmt.Errorf("--mpi launches the ranks itself: no --launcher or --inprocess with it: %w", errUsage)
	}
	p.MPI = &m
	if p.SCRPrefix != "" {
		if p.SCRPrefix, err = filepath.Abs(p.SCRPrefix); err != nil {
			return fmt.Errorf("--scr-prefix: %v: %w", err, errUsage)
		}
	}
	if profile && len(p.RankCmd) == 0 {
		fmt.Fprintln(stderr, "scr_bench: --cpuprofile: the C rank program writes no profiles (profile its ranks with perf record)")
	}
	return nil
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

func report(w io.Writer, r bench.Result, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "%d processes (one per node) x %d bytes, fsync=%v, %d runs x %d checkpoints per scheme\n",
		r.Nodes, r.BytesPerRank, r.Fsync, r.Runs, r.Times)
	if r.MPI != "" {
		fmt.Fprintf(w, "launcher: %s, MPMD, one rank per simulated node (SCR_NODE_NAME, SCR_CACHE_BASE); rank: %s (C, libscr over %s)\n",
			strings.Join(r.Launcher, " "), strings.Join(r.RankCmd, " "), r.MPI)
	} else {
		fmt.Fprintf(w, "launcher: %s; rank: %s\n", strings.Join(r.Launcher, " "), strings.Join(r.RankCmd, " "))
	}
	fmt.Fprintf(w, "load average before: %s; after: %s\n", r.LoadBefore, r.LoadAfter)
	if m := r.Movements; m != nil {
		fmt.Fprintf(w, "movements, CPU ms per 64 MiB (best of 3): write %.1f, pread %.1f, loopback TCP %.1f, XOR %.1f\n", m.Write, m.Pread, m.TCP, m.XOR)
	}
	fmt.Fprintf(w, "%-8s %5s %10s %10s %10s %10s %8s %8s %7s %-6s %8s %8s %9s\n", "scheme", "count", "plain med", "first med", "median", "worst", "med/pl", "worst/pl", "target", "", "cpu med", "cpu wst", "cpu floor")
	for _, s := range r.Schemes {
		verdict := "met"
		if !s.Met() {
			verdict = "MISSED"
		}
		fmt.Fprintf(w, "%-8s %5d %10.4f %10.4f %10.4f %10.4f %8.2f %8.2f %7.1f %-6s %8.2f %8.2f %9.2f\n", s.Scheme, s.Count, s.PlainMedian, s.First, s.Median, s.Worst, s.MedianRatio, s.WorstRatio, s.Target, verdict, s.CPUMedianRatio, s.CPUWorstRatio, s.CPUFloor)
	}
	for _, s := range r.Schemes {
		var ph []string
		for _, p := range s.Worst1.Phases {
			ph = append(ph, fmt.Sprintf("%s %.4f", p.Name, p.Secs))
		}
		rss := make([]string, len(s.PeakRSSKB))
		for i, kb := range s.PeakRSSKB {
			rss[i] = fmt.Sprintf("%.1f", float64(kb)/1024)
		}
		fmt.Fprintf(w, "%-8s worst: run %d #%d, cpu %.3f s, %d faults, %d waits; rank 0 phases: %s; peak RSS MB by rank: %s\n",
			s.Scheme, s.Worst1.Run, s.Worst1.I, s.Worst1.CPU, s.Worst1.Faults, s.Worst1.Waits, strings.Join(ph, ", "), strings.Join(rss, " "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func reportInProcess(w io.Writer, r bench.InProcessResult, o bench.InProcessOptions, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintln(w, string(b))
		return
	}
	t := bench.Targets
	fmt.Fprintf(w, "in-process: %d nodes x %d bytes, fsync=%v, median of %d\n", r.Nodes, r.BytesPerRank, o.Fsync, r.Reps)
	fmt.Fprintf(w, "plain write      %8.4f s\n", r.PlainSecs)
	fmt.Fprintf(w, "SINGLE ckpt      %8.4f s   ratio %.2f (target <= %.1f)\n", r.SingleSecs, r.SingleRatio, t[bench.Single])
	fmt.Fprintf(w, "XOR ckpt         %8.4f s   ratio %.2f (target <= %.1f)\n", r.XORSecs, r.XORRatio, t[bench.XOR])
	fmt.Fprintf(w, "plain node write %8.4f s\n", r.NodeSecs)
	fmt.Fprintf(w, "XOR rebuild      %8.4f s   ratio %.2f (target <= %.1f)\n", r.RebuildSecs, r.RebuildRatio, t[bench.Rebuild])
	fmt.Fprintf(w, "steady state, replacing the previous checkpoint (no target):\n")
	fmt.Fprintf(w, "plain overwrite  %8.4f s\n", r.PlainSteadySecs)
	fmt.Fprintf(w, "SINGLE replace   %8.4f s   ratio %.2f\n", r.SingleSteadySecs, r.SingleSteadyRatio)
	fmt.Fprintf(w, "XOR replace      %8.4f s   ratio %.2f\n", r.XORSteadySecs, r.XORSteadyRatio)
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// Measured schemes (Options.Schemes).
const (
	Single  = "SINGLE"
	XOR     = "XOR"
	RS      = "RS" // two failures per set (SCR_SET_FAILURES=2)
	Rebuild = "REBUILD"
)

// Targets on the worst checkpoint of a run, as a ratio to the plain write
// of the same bytes (rebuild: to the plain write of one node's bytes).
var Targets = map[string]float64{Single: 1.2, XOR: 3, RS: 4, Rebuild: 4}

// Options of a benchmark of real processes.
type Options struct {
	Dir     string   // scratch directory in tmpfs
	Nodes   int      // simulated nodes, one rank each
	Size    int64    // bytes per rank
	Runs    int      // launches per scheme
	Times   int      // checkpoints per launch (every one counts)
	Fsync   bool     // fsync written files (plain and SCR alike)
	Schemes []string // SINGLE, XOR, RS, REBUILD, in this order

	// Launcher is the command that starts the ranks; its words may hold
	// {n} (ranks), {nodes} (comma-separated node names) and {root} (root
	// of the nodes' storage). RankCmd is the rank program and its first
	// arguments ({self}: this executable); the rank arguments follow.
	Launcher []string
	RankCmd  []string

	// MPI, when set, runs the C rank program over that MPI and libscr
	// instead (Launcher must be empty): one MPMD launch of its mpiexec
	// per job, each rank a simulated node with its own SCR_NODE_NAME and
	// storage under {root}. Without RankCmd the program is compiled
	// against the installation SCRPrefix (MPI.RankProgram).
	MPI       *MPI
	SCRPrefix string

	// LaunchTimeout bounds each launch (0: 2 minutes + 2 per GiB a rank
	// writes). FinalizeGrace is how long the launcher may run on once
	// every rank has written its report (0: 10 s); then it is killed and
	// the run goes on, with a note in the result.
	LaunchTimeout time.Duration
	FinalizeGrace time.Duration

	CPUProfile string    // ranks write <CPUProfile>.<scheme>.<run>[.<mode>].rank<r>.pprof
	Log        io.Writer // launch output and progress (nil: discarded)
}

// DefaultLauncher starts the ranks with scr_launch (next to this
// executable, else on PATH) on simulated nodes under {root}.
func DefaultLauncher() []string {
	return []string{sibling("scr_launch"), "-n", "{n}", "--nodes", "{nodes}", "--cache-root", "{root}"}
}

// DefaultRankCmd is this executable's hidden rank command.
func DefaultRankCmd() []string { return []string{"{self}", "rank"} }

func sibling(name string) string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return name
}

// SchemeResult is the summary of one scheme over every run.
type SchemeResult struct {
	Scheme      string  `json:"scheme"`
	Count       int     `json:"checkpoints"`       // timed sections (rebuild: one per run)
	PlainMedian float64 `json:"plain_median_secs"` // plain write of the same bytes, same runs
	PlainMin    float64 `json:"plain_min_secs"`    //
	PlainMax    float64 `json:"plain_max_secs"`    //
	Median      float64 `json:"median_secs"`       // median checkpoint (rebuild)
	Worst       float64 `json:"worst_secs"`        // worst checkpoint (rebuild)
	First       float64 `json:"first_median_secs"` // median of the runs' first checkpoints
	MedianRatio float64 `json:"median_ratio"`      // Median / PlainMedian
	WorstRatio  float64 `json:"worst_ratio"`       // Worst / PlainMedian: the target applies here
	Target      float64 `json:"target"`            //
	// CPU time of all ranks over the plain write's (medians; the worst
	// checkpoint's own): what the ratios tend to when the machine is
	// loaded, robust against other users' load.
	CPUMedianRatio float64 `json:"cpu_median_ratio"`
	CPUWorstRatio  float64 `json:"cpu_worst_ratio"`
	// CPUFloor is a lower bound of what the data movements alone cost,
	// in plain writes (Movements.Floor, writes valued at the ranks' own
	// plain write): the CPU ratios cannot go below it, nor the wall ratios
	// where the ranks share the cores.
	CPUFloor  float64   `json:"cpu_floor,omitempty"`
	Worst1    Section   `json:"worst_checkpoint"`    // the worst, with its phases
	Sections  []Section `json:"sections"`            // every checkpoint (rebuild), run by run
	PeakRSSKB []int64   `json:"peak_rss_kb_by_rank"` // per rank, max over the timed sections
}

// Section is one timed checkpoint (or rebuild) and what it cost: wall
// time from the first rank's start to the last rank's end, and the CPU
// time, minor page faults and voluntary context switches of all ranks'
// processes; Plain is the plain write measured just before it.
type Section struct {
	Run      int     `json:"run"`
	I        int     `json:"i"`
	Secs     float64 `json:"secs"`
	Plain    float64 `json:"plain_secs"`
	PlainCPU float64 `json:"plain_cpu_secs"`
	CPU      float64 `json:"cpu_secs"`
	Faults   int64   `json:"minflt"`
	Waits    int64   `json:"nvcsw"`
	Phases   []Phase `json:"phases,omitempty"` // rank 0's phases (library timeline)
	From     int64   `json:"start_unix_ns"`    // the first rank's start
	To       int64   `json:"end_unix_ns"`      // the last rank's end
}

// Phase is one phase of a checkpoint as the library's timeline reports it.
type Phase struct {
	Name string  `json:"name"`
	Secs float64 `json:"secs"`
}

// plainCPUPerRank is the CPU of one rank's plain write in the runs, in
// milliseconds per 64 MiB (the median section; REBUILD's is one node's
// rank alone, the others' every rank's).
func (s SchemeResult) plainCPUPerRank(size int64, nodes int) float64 {
	var cpu []float64
	for _, sec := range s.Sections {
		cpu = append(cpu, sec.PlainCPU)
	}
	if len(cpu) == 0 || size <= 0 {
		return 0
	}
	ranks := float64(nodes)
	if s.Scheme == Rebuild {
		ranks = 1
	}
	return median(cpu) / ranks * 1e3 * float64(64<<20) / float64(size)
}

// Met says whether the worst checkpoint is within the target.
func (s SchemeResult) Met() bool { return s.Target <= 0 || s.WorstRatio <= s.Target }

// Result is a whole benchmark.
type Result struct {
	Mode         string         `json:"mode"`          // processes or in-process
	MPI          string         `json:"mpi,omitempty"` // the MPI of the C rank program
	Launcher     []string       `json:"launcher,omitempty"`
	RankCmd      []string       `json:"rank_cmd,omitempty"`
	Nodes        int            `json:"nodes"`
	BytesPerRank int64          `json:"bytes_per_rank"`
	Runs         int            `json:"runs"`
	Times        int            `json:"times"`
	Fsync        bool           `json:"fsync"`
	LoadBefore   string         `json:"load_before"` // /proc/loadavg
	LoadAfter    string         `json:"load_after"`
	Movements    *Movements     `json:"movements,omitempty"` // measured before the runs, by scr_bench itself
	Schemes      []SchemeResult `json:"schemes"`
	Notes        []string       `json:"notes,omitempty"` // launches that needed a hand (killed after the reports)
}

// Met says whether every scheme is within its target.
func (r Result) Met() bool {
	for _, s := range r.Schemes {
		if !s.Met() {
			return false
		}
	}
	return true
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// RunProcesses measures checkpoints of real processes: per scheme, Runs
// launches of Nodes ranks through the launcher, each writing Times
// checkpoints (each after a plain write of the same bytes); REBUILD
// launches a job that writes an XOR checkpoint, then one whose ranks on
// the last node first wipe their cache, and times the Init that rebuilds.
func RunProcesses(ctx context.Context, o Options) (Result, error) {
	if o.Nodes < 2 || o.Size < 1 || o.Runs < 1 || o.Times < 1 {
		return Result{}, fmt.Errorf("want nodes >= 2, size >= 1, runs >= 1, times >= 1")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return Result{}, err
	}
	if o.LaunchTimeout <= 0 {
		gib := float64(o.Size) * float64(o.Times+1) / (1 << 30)
		o.LaunchTimeout = 2*time.Minute + time.Duration(gib*float64(2*time.Minute))
	}
	if o.FinalizeGrace <= 0 {
		o.FinalizeGrace = 10 * time.Second
	}
	res := Result{Mode: "processes", Nodes: o.Nodes, BytesPerRank: o.Size, Runs: o.Runs, Times: o.Times, Fsync: o.Fsync}
	switch {
	case o.MPI != nil && len(o.Launcher) > 0:
		return res, errors.New("an MPI launch builds its own launcher: give no launcher with it")
	case o.MPI != nil:
		res.MPI, o.Launcher = o.MPI.Name, append([]string{o.MPI.Launcher}, o.MPI.Args...)
		if len(o.RankCmd) == 0 {
			rank, err := o.MPI.RankProgram(ctx, o.SCRPrefix, filepath.Join(o.Dir, "mpi."+o.MPI.Name), o.Log)
			if err != nil {
				return res, err
			}
			o.RankCmd = []string{rank}
		}
	case len(o.Launcher) == 0:
		o.Launcher = DefaultLauncher()
	}
	if len(o.RankCmd) == 0 {
		o.RankCmd = DefaultRankCmd()
	}
	res.Launcher, res.RankCmd, res.LoadBefore = o.Launcher, o.RankCmd, loadavg()
	// The floor of each scheme on this machine, from the movements a
	// checkpoint is made of (best of 3 rounds of up to 64 MiB). Pieces
	// move over TCP between the ranks of scr_launch; an MPI moves them its
	// own way (shared memory on one machine), which this does not measure.
	if o.MPI == nil {
		if m, err := MeasureMovements(o.Dir, o.Size, 3); err != nil {
			fmt.Fprintf(o.Log, "movements not measured: %v\n", err)
		} else {
			res.Movements = &m
		}
	}
	all := map[string]*collected{}
	for _, s := range o.Schemes {
		all[s] = &collected{}
	}
	// Runs interleave the schemes, so drift of the machine hits all alike.
	for run := 1; run <= o.Runs; run++ {
		for _, s := range o.Schemes {
			if err := o.measure(ctx, s, run, all[s]); err != nil {
				return res, fmt.Errorf("%s, run %d: %w", s, run, err)
			}
		}
	}
	for _, s := range o.Schemes {
		sr := all[s].summary(s)
		if res.Movements != nil {
			sr.CPUFloor, _ = res.Movements.Floor(s, o.Nodes, 2, sr.plainCPUPerRank(o.Size, o.Nodes)) // RS: SCR_SET_FAILURES=2
		}
		res.Schemes = append(res.Schemes, sr)
		res.Notes = append(res.Notes, all[s].notes...)
	}
	res.LoadAfter = loadavg()
	return res, nil
}

// collected holds one scheme's sections over its runs.
type collected struct {
	secs  []Section
	peak  []int64 // by rank
	notes []string
}

func (c *collected) summary(scheme string) SchemeResult {
	r := SchemeResult{Scheme: scheme, Count: len(c.secs), Sections: c.secs, Target: Targets[scheme], PeakRSSKB: c.peak}
	if len(c.secs) == 0 {
		return r
	}
	var secs, plain, first, cpu, plainCPU []float64
	w := 0
	for i, s := range c.secs {
		secs, plain = append(secs, s.Secs), append(plain, s.Plain)
		cpu, plainCPU = append(cpu, s.CPU), append(plainCPU, s.PlainCPU)
		if s.I == 1 {
			first = append(first, s.Secs)
		}
		if s.Secs > c.secs[w].Secs {
			w = i
		}
	}
	r.PlainMedian, r.PlainMin, r.PlainMax = median(plain), slices.Min(plain), slices.Max(plain)
	r.Median, r.First, r.Worst, r.Worst1 = median(secs), median(first), c.secs[w].Secs, c.secs[w]
	r.MedianRatio, r.WorstRatio = r.Median/r.PlainMedian, r.Worst/r.PlainMedian
	r.CPUMedianRatio, r.CPUWorstRatio = median(cpu)/median(plainCPU), r.Worst1.CPU/median(plainCPU)
	return r
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// measure does one run of one scheme in a fresh prefix and storage root.
func (o Options) measure(ctx context.Context, scheme string, run int, c *collected) error {
	base := filepath.Join(o.Dir, fmt.Sprintf("%s.%d", strings.ToLower(scheme), run))
	defer os.RemoveAll(base)
	env := map[string]string{"SCR_COPY_TYPE": scheme, "SCR_FLUSH": "0", "SCR_CACHE_SIZE": "1", "SCR_JOB_ID": "bench"}
	switch scheme {
	case RS:
		env["SCR_SET_FAILURES"] = "2"
	case Rebuild:
		env["SCR_COPY_TYPE"] = XOR
	}
	add := func(reps []RankReport, plain, what string, i int, phases []Phase) error {
		p, err := section(reps, plain, i)
		if err != nil {
			return err
		}
		s, err := section(reps, what, i)
		if err != nil {
			return err
		}
		s.Run, s.Plain, s.PlainCPU, s.Phases = run, p.Secs, p.CPU, phases
		c.secs = append(c.secs, s)
		c.peaks(reps, what)
		fmt.Fprintf(o.Log, "%s run %d %s %d: %.4f s (plain %.4f s, ratio %.2f), cpu %.4f s (plain %.4f s), %d faults, %d waits\n",
			scheme, run, what, i, s.Secs, s.Plain, s.Secs/s.Plain, s.CPU, s.PlainCPU, s.Faults, s.Waits)
		return nil
	}
	if scheme != Rebuild {
		reps, err := o.launch(ctx, c, base, env, scheme, run, ModeCkpt, "--times", strconv.Itoa(o.Times))
		if err != nil {
			return err
		}
		phases := checkpointPhases(filepath.Join(base, "prefix"))
		for i := 1; i <= o.Times; i++ {
			if err := add(reps, SecPlain, SecCkpt, i, phases[i]); err != nil {
				return err
			}
		}
		return nil
	}
	// Rebuild: one job writes an XOR checkpoint; the next one, on the same
	// nodes, loses the last node's cache and rebuilds it in Init.
	if _, err := o.launch(ctx, c, base, env, scheme, run, ModePrepare); err != nil {
		return err
	}
	reps, err := o.launch(ctx, c, base, env, scheme, run, ModeRebuild, "--lose", nodeName(o.Nodes-1))
	if err != nil {
		return err
	}
	var phases []Phase
	if evs, err := prefix.ReadTimeline(filepath.Join(base, "prefix")); err == nil {
		for _, ev := range evs {
			if secs, ok := ev.Fields["seconds"].(float64); ok && ev.Event == "rebuilt" {
				phases = append(phases, Phase{Name: "restore (rebuilt event)", Secs: secs})
			}
		}
	}
	return add(reps, SecNode, SecRebuild, 1, phases)
}

func (c *collected) peaks(reps []RankReport, what string) {
	for _, rep := range reps {
		for len(c.peak) <= rep.Rank {
			c.peak = append(c.peak, 0)
		}
		for _, r := range rep.Records {
			if r.What == what && r.PeakKB > c.peak[rep.Rank] {
				c.peak[rep.Rank] = r.PeakKB
			}
		}
	}
}

func nodeName(i int) string { return "node" + strconv.Itoa(i+1) }

// launch starts one job of the rank program and returns every rank's
// report; a note on the launch goes to c. The job's prefix is
// <dir>/prefix, its nodes' storage <dir>/nodes (kept between a rebuild's
// two jobs).
func (o Options) launch(ctx context.Context, c *collected, dir string, env map[string]string, scheme string, run int, mode string, extra ...string) ([]RankReport, error) {
	pfx, root, out := filepath.Join(dir, "prefix"), filepath.Join(dir, "nodes"), filepath.Join(dir, "out."+mode)
	for _, d := range []string{pfx, root, out} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	nodes := make([]string, o.Nodes)
	for i := range nodes {
		nodes[i] = nodeName(i)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	subst := strings.NewReplacer("{n}", strconv.Itoa(o.Nodes), "{nodes}", strings.Join(nodes, ","), "{root}", root, "{self}", self)
	var rank []string
	for _, w := range o.RankCmd {
		rank = append(rank, subst.Replace(w))
	}
	rank = append(rank, "--mode", mode, "--size", strconv.FormatInt(o.Size, 10), "--out", out)
	rank = append(rank, extra...)
	if !o.Fsync {
		rank = append(rank, "--nofsync")
	}
	if o.CPUProfile != "" {
		rank = append(rank, "--cpuprofile", fmt.Sprintf("%s.%s.%d.%s", o.CPUProfile, strings.ToLower(scheme), run, mode))
	}
	l := launchRun{env: os.Environ(), out: out, n: o.Nodes, timeout: o.LaunchTimeout, grace: o.FinalizeGrace}
	for k, v := range env {
		l.env = append(l.env, k+"="+v)
	}
	l.env = append(l.env, "SCR_PREFIX="+pfx, "SCR_LOCAL_ROOT="+root)
	if o.MPI != nil {
		// The storage scr_launch gives its simulated nodes; the heartbeat
		// ring beside MPI on loopback.
		storage := func(node string) string { return filepath.Join(root, node, "shm") }
		for _, n := range nodes {
			if err := os.MkdirAll(storage(n), 0o700); err != nil {
				return nil, err
			}
		}
		l.argv = o.MPI.SimNodes(nodes, storage, rank)
		l.env = append(append(l.env, o.MPI.Env...), "SCR_COMM_ADDR=127.0.0.1")
	} else {
		for _, w := range o.Launcher {
			l.argv = append(l.argv, subst.Replace(w))
		}
		l.argv = append(l.argv, rank...)
	}
	outb, note, err := l.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(l.argv, " "), err, outb)
	}
	o.Log.Write(outb)
	if note != "" {
		note = fmt.Sprintf("%s run %d, %s job: %s", scheme, run, mode, note)
		c.notes = append(c.notes, note)
		fmt.Fprintln(o.Log, note)
	}
	reps := make([]RankReport, o.Nodes)
	for r := range reps {
		b, err := os.ReadFile(filepath.Join(out, "rank."+strconv.Itoa(r)+".json"))
		if err != nil {
			return nil, fmt.Errorf("rank %d left no report: %w", r, err)
		}
		if err := json.Unmarshal(b, &reps[r]); err != nil {
			return nil, fmt.Errorf("rank %d's report: %w", r, err)
		}
	}
	return reps, nil
}

// section sums up one timed section of every rank: wall time from the
// first rank's start to the last rank's end, CPU time, faults, waits.
func section(reps []RankReport, what string, i int) (Section, error) {
	s := Section{I: i}
	var first, last, cpu int64
	n := 0
	for _, rep := range reps {
		for _, r := range rep.Records {
			if r.What != what || r.I != i {
				continue
			}
			if n == 0 || r.Start < first {
				first = r.Start
			}
			if n == 0 || r.End > last {
				last = r.End
			}
			cpu += r.CPU
			s.Faults += r.Faults
			s.Waits += r.Waits
			n++
		}
	}
	if n != len(reps) {
		return s, fmt.Errorf("section %s %d: %d of %d ranks reported it", what, i, n, len(reps))
	}
	s.Secs, s.CPU, s.From, s.To = time.Duration(last-first).Seconds(), time.Duration(cpu).Seconds(), first, last
	return s, nil
}

// checkpointPhases reads the phases of each checkpoint (by dataset id)
// from the timeline of a prefix; missing ones are left out.
func checkpointPhases(pfx string) map[int][]Phase {
	evs, err := prefix.ReadTimeline(pfx)
	out := map[int][]Phase{}
	if err != nil {
		return out
	}
	for _, ev := range evs {
		if ev.Event != "checkpoint" {
			continue
		}
		id, _ := ev.Fields["dataset"].(float64)
		ph, _ := ev.Fields["phases"].(map[string]any)
		var list []Phase
		for name, v := range ph {
			if f, ok := v.(float64); ok {
				list = append(list, Phase{Name: name, Secs: f})
			}
		}
		sort.Slice(list, func(i, j int) bool { return phaseOrder(list[i].Name) < phaseOrder(list[j].Name) })
		out[int(id)] = list
	}
	return out
}

// phaseOrder sorts the library's phases in the order they happen.
func phaseOrder(name string) int {
	for i, n := range []string{"start", "write", "check", "encode", "commit"} {
		if n == name {
			return i
		}
	}
	return 100
}

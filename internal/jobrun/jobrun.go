// Package jobrun is the job-script side of scr-go: the scr_run loop
// (prerun, relaunch on healthy nodes, launch confirmation, fast step kill,
// watchdog, postrun), the scr_should_exit verdict and the scavenge driver of
// scr_postrun.
//
// The loop, one attempt per turn:
//
//	prerun
//	loop {
//	    list down nodes (sticky: a node once down stays out for the allocation)
//	    Decide: halt file? last run succeeded? runs left? enough nodes?
//	    launch on the healthy nodes (SCR_RUN_ID=<attempt>, SCR_PREFIX set)
//	    confirm: a `started` event of this run within SCR_LAUNCH_TIMEOUT,
//	             else kill the step and try again (not counted as a run)
//	    watch:   `peer_lost` in the timeline, the step's nodes every
//	             SCR_WATCH_INTERVAL, scr_halt --immediate, the watchdog:
//	             any of them kills the step at once
//	    step ends -> next turn, no settling sleep
//	}
//	postrun (scavenge)
//
// Every phase prints one timestamped line to Options.Log and appends the same
// event to the prefix's timeline (doc/seams.md, sections 5 and 6). The
// decisions are the pure function Decide; the I/O sits behind small
// interfaces (DownLister, Halter, Starter) that tests replace.
package jobrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scr-go/scr/internal/launch"
	"github.com/scr-go/scr/internal/prefix"
)

// DownLister says which nodes are down. sticky holds the nodes already known
// down (with their reasons); implementations return them again together with
// any newly failed node. A node missing from the result is healthy.
type DownLister interface {
	DownNodes(ctx context.Context, nodes []string, sticky map[string]string) (map[string]string, error)
}

// Halter reads the halt condition (the halt file under the prefix).
type Halter interface {
	Check(ctx context.Context) (HaltState, error)
}

// Step is a running launch (launch.Process implements it).
type Step interface {
	Done() <-chan struct{}
	ExitCode() int
	Kill(ctx context.Context) error
}

// Starter starts a built command (launch.Start, or a fake in tests).
type Starter func(ctx context.Context, a launch.Adapter, c launch.Command, o launch.StartOptions) (Step, error)

// StartReal is the Starter that runs real processes.
func StartReal(ctx context.Context, a launch.Adapter, c launch.Command, o launch.StartOptions) (Step, error) {
	p, err := launch.Start(ctx, a, c, o)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Watchdog kills a step that makes no checkpoint progress (SCR_WATCHDOG).
type Watchdog struct {
	// Timeout is the longest time expected between two progress events
	// (started, checkpoint, flush) of a run: SCR_WATCHDOG_TIMEOUT.
	Timeout time.Duration
	// TimeoutPFS replaces Timeout while a flush to the prefix is in
	// progress (SCR_WATCHDOG_TIMEOUT_PFS); 0 = same as Timeout.
	TimeoutPFS time.Duration
	// Flushing reports whether a flush to the prefix is in progress (the
	// flush state); nil = never.
	Flushing func() bool
}

// Options configure Run. Zero values take the documented defaults.
type Options struct {
	Prefix   string         // SCR_PREFIX: the timeline, halt file and hostfile live below it
	JobID    string         // the allocation's id
	Nodes    []string       // the allocation's nodes, resource-manager order
	Adapter  launch.Adapter // the user's launcher
	Args     []string       // the user's launcher arguments (without the launcher)
	Launcher string         // the launcher binary as the user named it (default Adapter.Name())
	// RunCmd and RestartCmd are SCR's --run-cmd / --restart-cmd. With
	// either, Args are the launcher's options and each launch runs Args
	// plus the run command, or, when HaveRestart names a checkpoint, plus
	// the restart command with SCR_CKPT_NAME replaced by its name. Both are
	// split at white space. HaveRestart is the argv (scr_have_restart)
	// launched with Args before each launch when RestartCmd is set; its
	// last line on stdout is the checkpoint's name ("" = none).
	RunCmd, RestartCmd string
	HaveRestart        []string
	// TextLog, when set, receives SCR's text log events of the loop
	// (RUN_START, RUN_END, NODE_FAIL): SCR_LOG_ENABLE=1.
	TextLog func(prefix.LogRecord)
	Env     []string // base environment of the step (default os.Environ())

	Stdout, Stderr io.Writer // the step's output (default: discard)
	Log            io.Writer // phase lines (default: discard); the command passes os.Stderr

	Down DownLister // required: the full check before each launch
	// WatchDown checks the step's nodes while it runs, every
	// WatchInterval; it should be light (ping and the resource manager).
	// Default: Down.
	WatchDown DownLister
	Halt      Halter  // nil = never halt
	Start     Starter // default StartReal
	Run       launch.Runner

	// Runs is SCR_RUNS: how many runs to make; < 0 = unlimited; 0 = 1.
	Runs int
	// MinNodes is SCR_MIN_NODES (0: the launcher's node count, else the
	// last run's, else the whole allocation).
	MinNodes int
	// LastNodes returns the node count of the last run (the nodes file);
	// nil or 0 = unknown.
	LastNodes func() int
	// LaunchTimeout bounds the wait for the `started` event
	// (SCR_LAUNCH_TIMEOUT, default 60 s); < 0 disables confirmation, for
	// programs that do not use scr-go.
	LaunchTimeout time.Duration
	// FinalizeTimeout is how long a step may go on after its ranks all
	// finished SCR_Finalize (the library's `finalized` event) before it is
	// killed and taken as a run that ended well: Debian 12's MPICH can hang
	// in MPI_Finalize (doc/capi.md). SCR_FINALIZE_TIMEOUT, default 60 s;
	// < 0: no limit.
	FinalizeTimeout time.Duration
	// MaxUnconfirmed stops the loop after this many launches in a row
	// that never started (default 3).
	MaxUnconfirmed int
	// WatchInterval is how often the step's nodes are checked while it
	// runs (SCR_WATCH_INTERVAL, default 2 s); the halt file and the
	// timeline are polled every Poll.
	WatchInterval time.Duration
	// Poll is the timeline/halt polling period (default 100 ms).
	Poll time.Duration
	// KillTimeout bounds a step kill, resource-manager cancel included
	// (default 30 s).
	KillTimeout time.Duration
	// Watchdog, when non-nil, kills steps without checkpoint progress.
	Watchdog *Watchdog

	// Prerun runs before the first launch; Postrun after the loop, with
	// the healthy nodes and the down ones. Either may be nil.
	Prerun  func(ctx context.Context) error
	Postrun func(ctx context.Context, healthy []string, down map[string]string) error

	Now func() time.Time // default time.Now
}

func (o *Options) defaults() error {
	if o.Adapter == nil {
		return errors.New("jobrun: no launcher adapter")
	}
	if o.Down == nil {
		return errors.New("jobrun: no down-node lister")
	}
	if o.Prefix == "" {
		return errors.New("jobrun: no prefix directory: set SCR_PREFIX or run from the job's directory")
	}
	if len(o.Nodes) == 0 {
		return errors.New("jobrun: the allocation has no nodes: are we inside an allocation? (set SCR_NODELIST to name them)")
	}
	if o.Launcher == "" {
		o.Launcher = o.Adapter.Name()
	}
	if o.WatchDown == nil {
		o.WatchDown = o.Down
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Start == nil {
		o.Start = StartReal
	}
	if o.Run == nil {
		o.Run = launch.ExecRunner
	}
	if o.Runs == 0 {
		o.Runs = 1
	}
	if o.LaunchTimeout == 0 {
		o.LaunchTimeout = 60 * time.Second
	}
	if o.FinalizeTimeout == 0 {
		o.FinalizeTimeout = 60 * time.Second
	}
	if o.MaxUnconfirmed == 0 {
		o.MaxUnconfirmed = 3
	}
	if o.WatchInterval <= 0 {
		o.WatchInterval = 2 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.KillTimeout <= 0 {
		o.KillTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Result is what the loop did.
type Result struct {
	Attempts int               // launches made
	Runs     int               // launches that counted as runs (confirmed or ended on their own)
	LastExit int               // exit code of the last step; -1 if none ran
	Reason   string            // why the loop stopped
	Down     map[string]string // down nodes at the end, with reasons
	Halted   bool              // stopped by the halt file
}

// Success reports whether the job can be called done: the last run exited 0
// or the halt file stopped the loop (the application asked for it).
func (r Result) Success() bool { return r.LastExit == 0 || r.Halted }

// HaltFileError says that the loop stopped because the halt file could
// not be read: scr_run launches nothing more (SCR's rule) and exits
// non-zero, since nobody asked the job to stop.
type HaltFileError struct {
	Prefix string
	Err    error
}

func (e *HaltFileError) Error() string {
	return fmt.Sprintf("stopped: the halt file of %s cannot be read: %v (fix or remove it with scr_halt --remove, then rerun)", e.Prefix, e.Err)
}
func (e *HaltFileError) Unwrap() error { return e.Err }

// PostrunError wraps a failure of the postrun phase (scavenge).
type PostrunError struct{ Err error }

func (e *PostrunError) Error() string { return "postrun: " + e.Err.Error() }
func (e *PostrunError) Unwrap() error { return e.Err }

// runner holds one Run's state.
type runner struct {
	o      Options
	mu     sync.Mutex // serialises log lines and timeline appends
	sticky map[string]string
	// suspects are nodes taken out on a peer's word (markDown) since the
	// last check: re-checked with the fresh failures before giving up.
	suspects map[string]string
	// bg counts step kills still running (the resource manager's cancel
	// may be slow); Run waits for them before it returns.
	bg sync.WaitGroup
}

// Run is the scr_run loop. It returns an error only when the loop itself
// could not work (bad launcher arguments, launcher missing, prerun or
// postrun failure, context ended); a failed application is a Result with a
// non-zero LastExit.
func Run(ctx context.Context, o Options) (Result, error) {
	if err := o.defaults(); err != nil {
		return Result{LastExit: -1}, err
	}
	r := &runner{o: o, sticky: map[string]string{}, suspects: map[string]string{}}
	defer r.bg.Wait()
	res := Result{LastExit: -1}
	if o.Prerun != nil {
		r.logf(0, "prerun", nil, "prerun")
		if err := o.Prerun(ctx); err != nil {
			return res, fmt.Errorf("prerun: %w", err)
		}
	}
	runsLeft := o.Runs
	unconfirmed := 0
	var loopErr error
	for {
		if err := ctx.Err(); err != nil {
			res.Reason = "interrupted: " + err.Error()
			loopErr = err
			break
		}
		fresh := r.checkNodes(ctx, o.Down, o.Nodes, res.Attempts)
		r.mu.Lock()
		for n, why := range r.suspects {
			if fresh == nil {
				fresh = map[string]string{}
			}
			fresh[n] = why
		}
		clear(r.suspects)
		r.mu.Unlock()
		halt := r.checkHalt(ctx)
		last := 0
		if o.LastNodes != nil {
			last = o.LastNodes()
		}
		decide := func() Decision {
			return Decide(Input{
				Nodes: o.Nodes, Down: r.stickyCopy(), Halt: halt, RunsLeft: runsLeft,
				MinNodes: o.MinNodes, WantedNodes: o.Adapter.WantedNodes(o.Args), LastNodes: last,
				LastExit: res.LastExit, Unconfirmed: unconfirmed, MaxUnconfirmed: o.MaxUnconfirmed,
			})
		}
		d := decide()
		if d.Stop && d.TooFew && len(fresh) > 0 && ctx.Err() == nil {
			// Giving up is final: nodes that failed only this check
			// (an overloaded node can miss a timeout) get one more.
			if r.recheck(ctx, fresh, res.Attempts) {
				d = decide()
			}
		}
		if d.Stop {
			res.Reason, res.Halted = d.Reason, halt.Halt && halt.Err == nil
			if halt.Err != nil {
				// Stopped because the halt file cannot be read: that is
				// not a job that finished (exit non-zero, say why).
				loopErr = &HaltFileError{Prefix: o.Prefix, Err: halt.Err}
			}
			break
		}
		res.Attempts++
		out, err := r.attempt(ctx, res.Attempts, d)
		if err != nil {
			res.Reason = err.Error()
			loopErr = err
			break
		}
		if out.unconfirmed {
			unconfirmed++
			continue
		}
		unconfirmed = 0
		res.Runs++
		res.LastExit = out.exit
		if runsLeft > 0 {
			runsLeft--
		}
	}
	res.Down = r.stickyCopy()
	r.logf(res.Attempts, "halt", map[string]any{"reason": res.Reason}, "stop: %s", res.Reason)
	if o.Postrun != nil {
		healthy := launch.Request{Nodes: o.Nodes, Down: keys(res.Down)}.Healthy()
		r.logf(res.Attempts, "postrun", nil, "postrun on %d healthy nodes", len(healthy))
		// Postrun also runs after an interrupt: the caches hold the
		// newest checkpoint. It gets its own deadline-free context only
		// if the loop's was cancelled.
		pctx := ctx
		if ctx.Err() != nil {
			pctx = context.WithoutCancel(ctx)
		}
		if err := o.Postrun(pctx, healthy, res.Down); err != nil {
			return res, errors.Join(loopErr, &PostrunError{Err: err})
		}
	}
	return res, loopErr
}

type attemptOutcome struct {
	exit        int
	unconfirmed bool // killed because it never reported `started`
	killed      bool // scr_run killed it (node failure, lost peer, halt, watchdog)
}

// attempt launches, confirms and watches one step.
func (r *runner) attempt(ctx context.Context, n int, d Decision) (attemptOutcome, error) {
	o := r.o
	args := o.Args
	if o.RunCmd != "" || o.RestartCmd != "" {
		var out attemptOutcome
		var err error
		if args, out, err = r.commandFor(ctx, n, d); err != nil || args == nil {
			return out, err
		}
	}
	req := launch.Request{
		Args: args, Nodes: o.Nodes, Down: d.Exclude, MetaDir: prefix.MetaDir(o.Prefix),
		JobID: o.JobID, RunID: n,
	}
	cmd, err := o.Adapter.Build(req)
	if err != nil {
		return attemptOutcome{}, err
	}
	// Events of this run start after the current end of the timeline.
	off := timelineSize(o.Prefix)
	argv := cmd.Argv
	if len(cmd.Submit) > 0 {
		argv = cmd.Submit
	}
	r.logf(n, "launch", map[string]any{
		"attempt": n, "nodes": len(d.Healthy), "exclude": d.Exclude, "argv": argv,
	}, "launch attempt %d on %d of %d nodes%s: %s", n, len(d.Healthy), len(o.Nodes),
		excludeText(d.Exclude), strings.Join(argv, " "))
	env := append(append([]string(nil), o.Env...), "SCR_RUN_ID="+strconv.Itoa(n), "SCR_PREFIX="+o.Prefix)
	path := ""
	if o.Launcher != o.Adapter.Name() {
		path = o.Launcher
	}
	step, err := o.Start(ctx, o.Adapter, cmd, launch.StartOptions{
		Env: env, Stdout: o.Stdout, Stderr: o.Stderr, Path: path, Run: o.Run, JobID: o.JobID,
	})
	if err != nil {
		return attemptOutcome{}, err
	}
	start := o.Now()
	r.textLog(prefix.LogRecord{Time: start, Event: "RUN_START", Note: "run=" + strconv.Itoa(n)})
	w := &watch{r: r, run: n, step: step, off: off, cmd: cmd, healthy: d.Healthy}
	out := w.loop(ctx)
	r.textLog(prefix.LogRecord{Event: "RUN_END", Note: "run=" + strconv.Itoa(n), Secs: prefix.Float(o.Now().Sub(start).Seconds())})
	return out, nil
}

// commandFor is SCR's --run-cmd / --restart-cmd: the launcher arguments of
// attempt n. With a restart command, it first launches HaveRestart
// (scr_have_restart) the same way on the same nodes, watched like a run;
// the checkpoint name it prints picks the restart command. A check killed
// by scr_run (a node failed during it) or never started returns nil
// arguments and an unconfirmed outcome: the loop checks the nodes and tries
// again (bounded, as any launch that never started).
func (r *runner) commandFor(ctx context.Context, n int, d Decision) ([]string, attemptOutcome, error) {
	o := r.o
	runArgs := append(slices.Clone(o.Args), strings.Fields(o.RunCmd)...)
	if o.RestartCmd == "" || len(o.HaveRestart) == 0 {
		return runArgs, attemptOutcome{}, nil
	}
	cmd, err := o.Adapter.Build(launch.Request{
		Args: append(slices.Clone(o.Args), o.HaveRestart...), Nodes: o.Nodes, Down: d.Exclude,
		MetaDir: prefix.MetaDir(o.Prefix), JobID: o.JobID, RunID: n,
	})
	if err != nil {
		return nil, attemptOutcome{}, err
	}
	off := timelineSize(o.Prefix)
	argv := cmd.Argv
	if len(cmd.Submit) > 0 {
		argv = cmd.Submit
	}
	r.logf(n, "", nil, "restart check for attempt %d: %s", n, strings.Join(argv, " "))
	env := append(append([]string(nil), o.Env...), "SCR_RUN_ID="+strconv.Itoa(n), "SCR_PREFIX="+o.Prefix)
	path := ""
	if o.Launcher != o.Adapter.Name() {
		path = o.Launcher
	}
	// Read only once the step ended on its own (after Done, the copy of
	// its output is complete).
	var stdout bytes.Buffer
	step, err := o.Start(ctx, o.Adapter, cmd, launch.StartOptions{
		Env: env, Stdout: &stdout, Stderr: o.Stderr, Path: path, Run: o.Run, JobID: o.JobID,
	})
	if err != nil {
		return nil, attemptOutcome{}, err
	}
	w := &watch{r: r, run: n, step: step, off: off, cmd: cmd, healthy: d.Healthy, check: true}
	out := w.loop(ctx)
	if out.unconfirmed || out.killed {
		out.unconfirmed = true
		return nil, out, nil
	}
	name := ""
	if lines := strings.Split(strings.TrimSpace(stdout.String()), "\n"); out.exit == 0 {
		name = strings.TrimSpace(lines[len(lines)-1])
	}
	switch {
	case out.exit != 0:
		r.logf(n, "", nil, "restart check exited with code %d: no checkpoint assumed", out.exit)
	case name == "":
		r.logf(n, "", nil, "restart check: no checkpoint to restart from")
	}
	if name == "" {
		return runArgs, attemptOutcome{}, nil
	}
	r.logf(n, "", nil, "restart check: checkpoint %s", name)
	return append(slices.Clone(o.Args), strings.Fields(strings.ReplaceAll(o.RestartCmd, "SCR_CKPT_NAME", name))...), attemptOutcome{}, nil
}

// textLog writes to SCR's text log when it is on (SCR_LOG_ENABLE=1).
func (r *runner) textLog(rec prefix.LogRecord) {
	if r.o.TextLog == nil {
		return
	}
	if rec.Time.IsZero() {
		rec.Time = r.o.Now()
	}
	r.o.TextLog(rec)
}

func excludeText(ex []string) string {
	if len(ex) == 0 {
		return ""
	}
	return " (excluding " + strings.Join(ex, ",") + ")"
}

// recheck checks nodes found down by the last check once more, with the
// light check (WatchDown: resource manager and ping), and takes those that
// pass out of the sticky list. It reports whether any passed. Right after a
// power-off, slurmctld can be too busy for the remote echo and storage
// checks (they run through srun) to answer in time, so every node looked
// dead in the virtual cluster; a node that answers pings and that the
// resource manager does not call down is given the next run.
func (r *runner) recheck(ctx context.Context, fresh map[string]string, run int) bool {
	nodes := sortedKeys(fresh)
	r.logf(run, "", nil, "re-checking %d node(s) that failed just now before giving up: %s", len(nodes), strings.Join(nodes, ","))
	others := r.stickyCopy()
	for _, n := range nodes {
		delete(others, n)
	}
	down, err := r.o.WatchDown.DownNodes(ctx, nodes, others)
	if err != nil && ctx.Err() == nil {
		r.logf(run, "", nil, "warning: node re-check incomplete: %v", err)
	}
	if down == nil || ctx.Err() != nil {
		return false
	}
	cleared := false
	r.mu.Lock()
	var passed []string
	for _, n := range nodes {
		if _, still := down[n]; !still {
			delete(r.sticky, n)
			passed = append(passed, n)
			cleared = true
		}
	}
	r.mu.Unlock()
	for _, n := range passed {
		r.logf(run, "", nil, "node %s passed the re-check: kept in the allocation", n)
	}
	return cleared
}

// markDown makes node sticky-down with reason (if it is an allocation node
// not already down) and logs it.
func (r *runner) markDown(node, reason string, run int) {
	if !slices.Contains(r.o.Nodes, node) {
		return
	}
	r.mu.Lock()
	_, known := r.sticky[node]
	if !known {
		r.sticky[node] = reason
		r.suspects[node] = reason
	}
	r.mu.Unlock()
	if !known {
		r.logf(run, "node_down", map[string]any{"node": node, "reason": reason}, "node failure detected: %s: %s", node, reason)
		r.textLog(prefix.LogRecord{Event: "NODE_FAIL", Note: node + ": " + reason})
	}
}

// checkNodes asks the lister about nodes and makes new failures sticky,
// logging each. It returns the newly down nodes among nodes.
func (r *runner) checkNodes(ctx context.Context, lister DownLister, nodes []string, run int) map[string]string {
	down, err := lister.DownNodes(ctx, nodes, r.stickyCopy())
	if err != nil && ctx.Err() == nil {
		r.logf(run, "", nil, "warning: node check incomplete: %v", err)
	}
	if down == nil {
		return nil
	}
	fresh := map[string]string{}
	r.mu.Lock()
	for _, n := range sortedKeys(down) {
		if _, known := r.sticky[n]; !known {
			r.sticky[n] = down[n]
			fresh[n] = down[n]
		}
	}
	r.mu.Unlock()
	for _, n := range sortedKeys(fresh) {
		r.logf(run, "node_down", map[string]any{"node": n, "reason": fresh[n]}, "node failure detected: %s: %s", n, fresh[n])
		r.textLog(prefix.LogRecord{Event: "NODE_FAIL", Note: n + ": " + fresh[n]})
	}
	return fresh
}

func (r *runner) checkHalt(ctx context.Context) HaltState {
	if r.o.Halt == nil {
		return HaltState{}
	}
	h, err := r.o.Halt.Check(ctx)
	if err != nil {
		// SCR's rule: an unreadable halt file stops the job, loudly.
		return HaltState{Halt: true, Reason: "halt file unreadable: " + err.Error() + " (fix or remove it with scr_halt --remove)", Err: err}
	}
	return h
}

func (r *runner) stickyCopy() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]string, len(r.sticky))
	for k, v := range r.sticky {
		m[k] = v
	}
	return m
}

// logf prints one timestamped phase line and, when event is set, appends the
// same event to the timeline. A timeline write failure is reported on the
// log, never fatal: the job matters more than its diary.
func (r *runner) logf(run int, event string, fields map[string]any, format string, a ...any) {
	now := r.o.Now()
	msg := fmt.Sprintf(format, a...)
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.o.Log, "scr_run: %s: %s\n", now.UTC().Format(logTime), msg)
	if event == "" {
		return
	}
	if err := prefix.AppendTimeline(r.o.Prefix, prefix.Event{Time: now, Source: "scr_run", Event: event, Run: run, Fields: fields}); err != nil {
		fmt.Fprintf(r.o.Log, "scr_run: %s: warning: %v\n", now.UTC().Format(logTime), err)
	}
}

// logTime stamps phase lines to the millisecond: recovery takes seconds.
const logTime = "2006-01-02T15:04:05.000Z07:00"

func timelineSize(prefixDir string) int64 {
	st, err := os.Stat(prefix.TimelinePath(prefixDir))
	if err != nil {
		return 0
	}
	return st.Size()
}

func keys(m map[string]string) []string { return sortedKeys(m) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

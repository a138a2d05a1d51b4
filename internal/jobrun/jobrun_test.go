package jobrun

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/launch"
	"github.com/scr-go/scr/internal/prefix"
)

// scripted is how one fake step behaves.
type scripted struct {
	started  bool     // the "ranks" report in (a started event of this run)
	nodes    []string // nodes field of the started event
	peerLost bool     // after starting, a rank reports a lost peer
	ckpts    int      // checkpoint events after starting
	hang     bool     // never ends on its own
	final    bool     // the ranks report they finished SCR_Finalize
	selfExit bool     // with peerLost: the ranks exit by themselves (75), no kill needed
	exit     int      // exit code when it ends on its own
	stdout   string   // printed before it ends
}

type fakeStep struct {
	done     chan struct{}
	once     sync.Once
	code     int
	killed   chan struct{}
	killOnce sync.Once
}

func (s *fakeStep) Done() <-chan struct{} { return s.done }
func (s *fakeStep) ExitCode() int         { <-s.done; return s.code }
func (s *fakeStep) Kill(context.Context) error {
	s.killOnce.Do(func() { close(s.killed) })
	return nil
}
func (s *fakeStep) end(code int) {
	s.once.Do(func() { s.code = code; close(s.done) })
}

// fakeLauncher starts scripted steps and records the commands.
type fakeLauncher struct {
	t       *testing.T
	prefix  string
	scripts []scripted
	mu      sync.Mutex
	cmds    []launch.Command
	wg      sync.WaitGroup
}

func (f *fakeLauncher) start(ctx context.Context, a launch.Adapter, c launch.Command, o launch.StartOptions) (Step, error) {
	f.mu.Lock()
	i := len(f.cmds)
	f.cmds = append(f.cmds, c)
	f.mu.Unlock()
	if i >= len(f.scripts) {
		f.t.Fatalf("attempt %d not scripted", i+1)
	}
	sc := f.scripts[i]
	run := 0
	for _, kv := range o.Env {
		if v, ok := strings.CutPrefix(kv, "SCR_RUN_ID="); ok {
			run, _ = strconv.Atoi(v)
		}
	}
	st := &fakeStep{done: make(chan struct{}), killed: make(chan struct{})}
	f.wg.Add(1)
	go func() { // the "ranks"; ends with the step
		defer f.wg.Done()
		app := func(ev string, fields map[string]any) {
			if err := prefix.AppendTimeline(f.prefix, prefix.Event{Source: "library", Event: ev, Run: run, Fields: fields}); err != nil {
				f.t.Error(err)
			}
		}
		if sc.started {
			fields := map[string]any{"ranks": 4}
			if sc.nodes != nil {
				fields["nodes"] = sc.nodes
			}
			app("started", fields)
		}
		for k := 0; k < sc.ckpts; k++ {
			app("checkpoint", map[string]any{"dataset": k + 1})
		}
		if sc.final {
			app("finalized", nil)
		}
		if sc.peerLost {
			app("peer_lost", map[string]any{"rank": 0, "host": "n1", "lost_rank": 1, "lost_host": "n2", "reason": "heartbeat timeout"})
		}
		if sc.stdout != "" && o.Stdout != nil {
			o.Stdout.Write([]byte(sc.stdout))
		}
		if sc.hang || (sc.peerLost && !sc.selfExit) {
			<-st.killed
			st.end(137)
			return
		}
		select {
		case <-st.killed:
			st.end(137)
		default:
			st.end(sc.exit)
		}
	}()
	return st, nil
}

// downScript reports nodes down from the given call on.
type downScript struct {
	mu    sync.Mutex
	calls int
	after map[string]int // node -> first call (1-based) that reports it down
	only  map[string]int // node -> the one call that reports it down (a transient failure)
}

func (d *downScript) DownNodes(ctx context.Context, nodes []string, sticky map[string]string) (map[string]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	out := map[string]string{}
	for k, v := range sticky {
		out[k] = v
	}
	for _, n := range nodes {
		if c, ok := d.after[n]; ok && d.calls >= c {
			out[n] = "Failed to ping"
		}
		if c, ok := d.only[n]; ok && d.calls == c {
			out[n] = "Failed to echo UP (timed out after 3s)"
		}
	}
	return out, nil
}

type haltFunc func() HaltState

func (h haltFunc) Check(context.Context) (HaltState, error) { return h(), nil }

func baseOptions(t *testing.T, f *fakeLauncher) (Options, *bytes.Buffer) {
	var log bytes.Buffer
	return Options{
		Prefix: f.prefix, JobID: "77", Nodes: []string{"n1", "n2", "n3", "n4"},
		Adapter: launch.Srun{}, Args: []string{"-N", "3", "./app"},
		Log: &syncWriter{w: &log}, Down: &downScript{}, Start: f.start,
		LaunchTimeout: 5 * time.Second, WatchInterval: 10 * time.Millisecond, Poll: 5 * time.Millisecond,
		KillTimeout: 5 * time.Second, Env: []string{},
	}, &log
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func newFake(t *testing.T, scripts ...scripted) *fakeLauncher {
	f := &fakeLauncher{t: t, prefix: t.TempDir(), scripts: scripts}
	t.Cleanup(f.wg.Wait)
	return f
}

func events(t *testing.T, dir string, source string) []string {
	t.Helper()
	evs, err := prefix.ReadTimeline(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Source == source {
			out = append(out, e.Event)
		}
	}
	return out
}

func run(t *testing.T, o Options) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func TestRunOnceSucceeds(t *testing.T) {
	f := newFake(t, scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	var post []string
	o.Postrun = func(_ context.Context, healthy []string, _ map[string]string) error { post = healthy; return nil }
	res := run(t, o)
	if res.Attempts != 1 || res.Runs != 1 || res.LastExit != 0 || !res.Success() {
		t.Fatalf("result %+v", res)
	}
	if got := strings.Join(events(t, f.prefix, "scr_run"), ","); got != "launch,step_exit,halt,postrun" {
		t.Fatalf("timeline %s", got)
	}
	if len(post) != 4 {
		t.Fatalf("postrun nodes %v", post)
	}
	if !strings.Contains(log.String(), "scr_run: ") || !strings.Contains(log.String(), "launch attempt 1 on 4 of 4 nodes") {
		t.Fatalf("log:\n%s", log.String())
	}
}

func TestNodeFailureMidRunKillsAndRelaunchesOnSpare(t *testing.T) {
	f := newFake(t,
		scripted{started: true, nodes: []string{"n1", "n2", "n3"}, hang: true},
		scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	o.Runs = 3
	// Call 1 is the pre-launch check; n2 fails from the first watch check on.
	o.Down = &downScript{after: map[string]int{"n2": 2}}
	res := run(t, o)
	if res.Attempts != 2 || res.Runs != 2 || res.LastExit != 0 {
		t.Fatalf("result %+v\n%s", res, log)
	}
	if res.Down["n2"] != "Failed to ping" {
		t.Fatalf("down %v", res.Down)
	}
	if a := strings.Join(f.cmds[1].Argv, " "); !strings.Contains(a, "--exclude=n2") || !strings.Contains(a, "--job-name=scr.77.2") {
		t.Fatalf("relaunch argv %s", a)
	}
	if strings.Contains(strings.Join(f.cmds[0].Argv, " "), "--exclude") {
		t.Fatalf("first launch excluded something: %q", f.cmds[0].Argv)
	}
	got := strings.Join(events(t, f.prefix, "scr_run"), ",")
	if got != "launch,node_down,step_kill,step_exit,launch,step_exit,halt" {
		t.Fatalf("timeline %s", got)
	}
	if !strings.Contains(log.String(), "node failure detected: n2: Failed to ping") {
		t.Fatalf("log:\n%s", log)
	}
}

func TestFailureOfASpareDoesNotKillTheStep(t *testing.T) {
	f := newFake(t, scripted{started: true, nodes: []string{"n1", "n2", "n3"}, ckpts: 1, exit: 0})
	o, _ := baseOptions(t, f)
	o.Down = &downScript{after: map[string]int{"n4": 2}}
	res := run(t, o)
	if res.LastExit != 0 {
		t.Fatalf("result %+v", res)
	}
	for _, e := range events(t, f.prefix, "scr_run") {
		if e == "step_kill" {
			t.Fatal("step killed for a spare node")
		}
	}
}

func TestPeerLostKillsAtOnce(t *testing.T) {
	f := newFake(t, scripted{started: true, peerLost: true}, scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	o.Runs = 2
	o.WatchInterval = time.Hour // only the timeline can trigger the kill
	res := run(t, o)
	if res.Attempts != 2 || res.LastExit != 0 {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(log.String(), "killing the step: peer lost: rank 0 on n1 lost rank 1 on n2: heartbeat timeout") {
		t.Fatalf("log:\n%s", log)
	}
	// Silence from a peer takes its node out at once (no ping wait).
	if !strings.Contains(res.Down["n2"], "lost peer") || !strings.Contains(strings.Join(f.cmds[1].Argv, " "), "--exclude=n2") {
		t.Fatalf("down %v, relaunch %q", res.Down, f.cmds[1].Argv)
	}
}

func TestPeerLostWithoutSpareIsRecheckedBeforeGivingUp(t *testing.T) {
	// Two nodes, both needed: the peer's word alone must not end the job
	// when the node still answers the re-check.
	f := newFake(t, scripted{started: true, peerLost: true}, scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	o.Nodes = []string{"n1", "n2"}
	o.Args = []string{"-N", "2", "./app"}
	o.Runs = 2
	o.WatchInterval = time.Hour
	res := run(t, o)
	if res.Attempts != 2 || res.LastExit != 0 || len(res.Down) != 0 {
		t.Fatalf("result %+v\n%s", res, log)
	}
	if !strings.Contains(log.String(), "node n2 passed the re-check") {
		t.Fatalf("log:\n%s", log)
	}
}

// A step whose ranks all finished SCR_Finalize but which does not end
// (MPICH 4.0's MPI_Finalize hang) is killed after SCR_FINALIZE_TIMEOUT and
// taken as a run that ended well: no relaunch. Without the limit the same
// step runs until the loop's context ends.
func TestStepHungAfterFinalizeIsEndedAsFinished(t *testing.T) {
	f := newFake(t, scripted{started: true, ckpts: 1, final: true, hang: true})
	o, log := baseOptions(t, f)
	o.Runs = 3
	o.FinalizeTimeout = 200 * time.Millisecond
	res := run(t, o)
	if res.Attempts != 1 || res.LastExit != 0 || !res.Success() {
		t.Fatalf("result %+v\n%s", res, log)
	}
	for _, want := range []string{"every rank finished SCR_Finalize", "exit code 137 of the killed step taken as 0"} {
		if !strings.Contains(log.String(), want) {
			t.Fatalf("log has no %q:\n%s", want, log)
		}
	}

	f = newFake(t, scripted{started: true, final: true, hang: true})
	o, log = baseOptions(t, f)
	o.FinalizeTimeout = -1
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, _ = Run(ctx, o)
	if strings.Contains(log.String(), "every rank finished SCR_Finalize") || res.LastExit == 0 {
		t.Fatalf("no limit, yet the step was ended as finished: %+v\n%s", res, log)
	}
}

func TestUnconfirmedLaunchIsKilledAndRetriedWithoutUsingARun(t *testing.T) {
	f := newFake(t, scripted{hang: true}, scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	o.Runs = 1
	o.LaunchTimeout = 50 * time.Millisecond
	res := run(t, o)
	if res.Attempts != 2 || res.Runs != 1 || res.LastExit != 0 {
		t.Fatalf("result %+v\n%s", res, log)
	}
	if !strings.Contains(log.String(), "launch not confirmed: no `started` event from run 1") {
		t.Fatalf("log:\n%s", log)
	}
}

func TestLaunchesThatNeverStartGiveUp(t *testing.T) {
	f := newFake(t, scripted{hang: true}, scripted{exit: 1}, scripted{hang: true})
	o, _ := baseOptions(t, f)
	o.Runs = -1
	o.LaunchTimeout = 30 * time.Millisecond
	res := run(t, o)
	if res.Attempts != 3 || res.Runs != 0 || !strings.Contains(res.Reason, "3 launches in a row") || res.Success() {
		t.Fatalf("result %+v", res)
	}
}

func TestRunsRunOut(t *testing.T) {
	f := newFake(t, scripted{started: true, exit: 75}, scripted{started: true, exit: 75})
	o, _ := baseOptions(t, f)
	o.Runs = 2
	res := run(t, o)
	if res.Attempts != 2 || res.LastExit != 75 || !strings.Contains(res.Reason, "no runs left") || res.Success() {
		t.Fatalf("result %+v", res)
	}
}

func TestTooFewNodesStopsBeforeLaunch(t *testing.T) {
	f := newFake(t)
	o, _ := baseOptions(t, f)
	o.Down = &downScript{after: map[string]int{"n1": 1, "n3": 1}}
	res := run(t, o)
	if res.Attempts != 0 || !strings.Contains(res.Reason, "too few healthy nodes: 2 of 4, need 3") {
		t.Fatalf("result %+v", res)
	}
	if got := strings.Join(events(t, f.prefix, "scr_run"), ","); got != "node_down,node_down,halt" {
		t.Fatalf("timeline %s", got)
	}
}

func TestHaltFileStopsAndImmediateKills(t *testing.T) {
	f := newFake(t, scripted{started: true, hang: true})
	o, log := baseOptions(t, f)
	o.Runs = 5
	var mu sync.Mutex
	calls := 0
	o.Halt = haltFunc(func() HaltState {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return HaltState{}
		}
		return HaltState{Halt: true, Reason: "JOB_HALTED", Immediate: true}
	})
	res := run(t, o)
	if res.Attempts != 1 || !res.Halted || !strings.Contains(res.Reason, "JOB_HALTED") {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(log.String(), "killing the step: scr_halt --immediate") {
		t.Fatalf("log:\n%s", log)
	}
}

func TestWatchdogKillsAStepWithoutProgress(t *testing.T) {
	f := newFake(t, scripted{started: true, ckpts: 2, hang: true})
	o, log := baseOptions(t, f)
	o.Watchdog = &Watchdog{Timeout: 100 * time.Millisecond}
	res := run(t, o)
	if res.LastExit != 137 {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(log.String(), "watchdog: no checkpoint progress") {
		t.Fatalf("log:\n%s", log)
	}
}

func TestInterruptKillsTheStepAndStillRunsPostrun(t *testing.T) {
	f := newFake(t, scripted{started: true, hang: true})
	o, _ := baseOptions(t, f)
	post := false
	o.Postrun = func(ctx context.Context, _ []string, _ map[string]string) error {
		post = ctx.Err() == nil
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the run has started.
		prefix.WaitTimeline(context.Background(), f.prefix, 0, time.Millisecond, func(e prefix.Event) bool { return e.Event == "started" })
		cancel()
	}()
	res, err := Run(ctx, o)
	if err == nil || res.LastExit != 137 || !post {
		t.Fatalf("res %+v err %v post %v", res, err, post)
	}
}

func TestStepsOfOtherRunsAreIgnored(t *testing.T) {
	// A leftover rank of run 7 reports peer_lost; run 1 must not be killed.
	f := newFake(t, scripted{started: true, ckpts: 3, exit: 0})
	o, _ := baseOptions(t, f)
	if err := prefix.AppendTimeline(f.prefix, prefix.Event{Source: "comm", Event: "peer_lost", Run: 7}); err != nil {
		t.Fatal(err)
	}
	res := run(t, o)
	if res.LastExit != 0 {
		t.Fatalf("result %+v", res)
	}
}

func TestOptionsErrors(t *testing.T) {
	_, err := Run(context.Background(), Options{Adapter: launch.Srun{}, Down: &downScript{}, Prefix: "/x"})
	if err == nil || !strings.Contains(err.Error(), "SCR_NODELIST") {
		t.Fatalf("err = %v", err)
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

func TestTransientFailuresAreRecheckedBeforeGivingUp(t *testing.T) {
	f := newFake(t, scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	// The full check fails n1 and n3 once; the light re-check passes them.
	o.Down = &downScript{only: map[string]int{"n1": 1, "n3": 1}, after: map[string]int{"n4": 1}}
	o.WatchDown = &downScript{after: map[string]int{"n4": 1}}
	res := run(t, o)
	if res.Attempts != 1 || res.LastExit != 0 {
		t.Fatalf("result %+v\n%s", res, log)
	}
	if _, ok := res.Down["n1"]; ok || res.Down["n4"] == "" {
		t.Fatalf("down %v: n1 passed its re-check, n4 did not", res.Down)
	}
	if !strings.Contains(log.String(), "node n1 passed the re-check") {
		t.Fatalf("log:\n%s", log)
	}
}

// slowKillStep ends at once when killed but its resource-manager cancel
// hangs until released.
type slowKillStep struct {
	*fakeStep
	release chan struct{}
}

func (s slowKillStep) Kill(ctx context.Context) error {
	s.fakeStep.Kill(ctx)
	s.end(137)
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return nil
}

func TestSlowCancelDoesNotDelayTheRelaunch(t *testing.T) {
	f := newFake(t)
	o, log := baseOptions(t, f)
	o.Runs = 2
	release := make(chan struct{})
	attempts := 0
	o.Start = func(ctx context.Context, a launch.Adapter, c launch.Command, so launch.StartOptions) (Step, error) {
		attempts++
		st := &fakeStep{done: make(chan struct{}), killed: make(chan struct{})}
		if attempts == 1 {
			// Reports a lost peer right away; scr_run kills it.
			prefix.AppendTimeline(f.prefix, prefix.Event{Source: "comm", Event: "started", Run: 1})
			prefix.AppendTimeline(f.prefix, prefix.Event{Source: "comm", Event: "peer_lost", Run: 1})
			return slowKillStep{st, release}, nil
		}
		// The relaunch happens while the first cancel still hangs.
		select {
		case <-release:
			t.Error("relaunch waited for the slow cancel")
		default:
		}
		close(release)
		prefix.AppendTimeline(f.prefix, prefix.Event{Source: "library", Event: "started", Run: 2})
		st.end(0)
		return st, nil
	}
	res := run(t, o)
	if res.Attempts != 2 || res.LastExit != 0 {
		t.Fatalf("result %+v\n%s", res, log)
	}
}

func TestWatchdogWaitsLongerWhileFlushing(t *testing.T) {
	f := newFake(t, scripted{started: true, hang: true})
	o, log := baseOptions(t, f)
	var mu sync.Mutex
	flushing := true
	o.Watchdog = &Watchdog{Timeout: 20 * time.Millisecond, TimeoutPFS: 300 * time.Millisecond, Flushing: func() bool {
		mu.Lock()
		defer mu.Unlock()
		return flushing
	}}
	res := run(t, o)
	if res.LastExit != 137 || !strings.Contains(log.String(), "SCR_WATCHDOG_TIMEOUT_PFS") {
		t.Fatalf("result %+v\n%s", res, log)
	}
}

func TestPeerLostSeenOnlyAfterTheStepEndedStillTakesTheNodeOut(t *testing.T) {
	f := newFake(t, scripted{started: true, peerLost: true, selfExit: true, exit: 75}, scripted{started: true, exit: 0})
	o, log := baseOptions(t, f)
	o.Runs = 2
	o.WatchInterval = time.Hour
	o.Poll = time.Hour // the events are read only when the step ends
	res := run(t, o)
	if res.Attempts != 2 || res.LastExit != 0 || !strings.Contains(res.Down["n2"], "lost peer") {
		t.Fatalf("result %+v\n%s", res, log)
	}
	if strings.Contains(log.String(), "killing the step") {
		t.Fatalf("killed a step that had ended:\n%s", log)
	}
}

// SCR's --run-cmd / --restart-cmd: before each launch the restart check
// runs under the launcher; its answer picks the command, with SCR_CKPT_NAME
// replaced. The check is not a run (no step_exit event, not counted).
func TestRunAndRestartCommands(t *testing.T) {
	f := newFake(t,
		scripted{started: true, exit: 0},                     // check: no checkpoint
		scripted{started: true, exit: 75},                    // the run command fails
		scripted{started: true, exit: 0, stdout: "ckpt.7\n"}, // check: ckpt.7
		scripted{started: true, exit: 0})                     // the restart command
	o, log := baseOptions(t, f)
	o.Args = []string{"-N", "3"}
	o.RunCmd, o.RestartCmd, o.HaveRestart = "./app --fresh", "./app --from SCR_CKPT_NAME/data  -v", []string{"/x/scr_have_restart"}
	o.Runs = 2
	var mu sync.Mutex
	var text []string
	o.TextLog = func(r prefix.LogRecord) {
		mu.Lock()
		defer mu.Unlock()
		text = append(text, r.Event+" "+r.Note)
	}
	res := run(t, o)
	if res.Attempts != 2 || res.Runs != 2 || res.LastExit != 0 {
		t.Fatalf("result %+v\n%s", res, log)
	}
	tail := func(i, n int) string {
		a := f.cmds[i].Argv
		return strings.Join(a[len(a)-n:], " ")
	}
	if got := tail(0, 3); got != "-N 3 /x/scr_have_restart" {
		t.Errorf("check argv ends %q", got)
	}
	if got := tail(1, 4); got != "-N 3 ./app --fresh" {
		t.Errorf("run argv ends %q", got)
	}
	if got := tail(3, 6); got != "-N 3 ./app --from ckpt.7/data -v" {
		t.Errorf("restart argv ends %q", got)
	}
	if got := strings.Join(events(t, f.prefix, "scr_run"), ","); got != "launch,step_exit,launch,step_exit,halt" {
		t.Errorf("timeline %s", got)
	}
	if got := strings.Join(text, ","); got != "RUN_START run=1,RUN_END run=1,RUN_START run=2,RUN_END run=2" {
		t.Errorf("text log %s", got)
	}
	if !strings.Contains(log.String(), "restart check: checkpoint ckpt.7") {
		t.Errorf("log:\n%s", log)
	}
}

// Package scenario runs scr-go's reference scenario on a virtual cluster with
// real Slurm or a real Flux system instance: a job under scr_run checkpoints
// into /dev/shm with XOR, a node that runs ranks is powered off, and the job
// must die fast, name the node, relaunch on the healthy nodes (the spare
// included), rebuild the lost node's files from redundancy and restart from
// the newest checkpoint.
//
// On Slurm the job is `sbatch --no-kill --no-requeue -N<nodes>` running
// `scr_run srun -N<n> -n<n> test_api ...`; on Flux it is `flux batch
// -N<nodes> -o exit-timeout=none --conf=tbon.topo=kary:0` running `scr_run
// flux run -N<n> -n<n> test_api ...` (README, "Job scripts").
//
// Run drives one scenario and measures each recovery phase from the
// power-off, using the timeline that scr_run and the library write under the
// prefix (doc/seams.md, section 5). The e2e tests and the `scr_demo` command
// both call it.
package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/vcluster"
)

// Options describe one scenario. The zero value is the reference scenario:
// 3 nodes, a 2-node run of test_api with 64 MB per rank every 2 s, XOR,
// production-like Slurm timeouts, the run's second node powered off once a
// checkpoint is complete.
type Options struct {
	// Name labels the cluster and the output; default "demo".
	Name string
	// Nodes is the allocation size; JobNodes the nodes of each run (one
	// rank per node). Defaults 3 and 2.
	Nodes, JobNodes int
	// RM is the resource manager: vcluster.RMSlurm (default) or RMFlux.
	RM vcluster.RM
	// Timeouts is the resource manager's node-failure detection speed;
	// default production (Slurm: SlurmdTimeout=300; Flux: its default
	// tcp_user_timeout, 20 s), so that scr-go's own detection must act.
	Timeouts vcluster.Timeouts
	// SetSize is SCR_SET_SIZE (default 8: one XOR set over the whole run).
	SetSize int
	// Flush is SCR_FLUSH (default 0: nothing reaches the prefix before the
	// postrun scavenge, which proves a restart came from the cache).
	Flush int
	// Size is test_api's --size (default 64MB), Seconds its --seconds
	// (default 2).
	Size    string
	Seconds int
	// VictimRanks are the ranks whose nodes are powered off (default: the
	// last rank). The batch host (the allocation's first node) is never a
	// victim: under --no-kill the job would lose its script.
	VictimRanks []int
	// SrunArgs are extra arguments for the user's srun (e.g. -w node2,node3
	// to keep rank 0 off the batch host, --mpi=pmi2 for an MPI App);
	// FluxArgs the same for flux run (e.g. --requires=host:node[2-3]).
	SrunArgs, FluxArgs []string
	// App is the test_api program the job runs (default: the Go test_api
	// of BinDir). The C test_api of examples/, built against libscr and an
	// MPI, runs the same scenario over MPI.
	App string
	// AfterRMNotices, once the relaunched run checkpointed, waits until
	// the resource manager itself reports the victim down (Flux: offline
	// in the allocation; Slurm: DOWN), and runs scr_list_down_nodes again
	// (Result.RMNoticed, DownListAfterRM).
	AfterRMNotices bool
	// CaptureDir, if set, receives what the resource manager's status
	// commands print at each stage (Flux: flux resource status / list in
	// the allocation and in the system instance), one file per command
	// and stage, named like internal/rm/flux/testdata.
	CaptureDir string
	// DuringWrite powers off while a checkpoint is being written, instead
	// of between checkpoints.
	DuringWrite bool
	// WantSource is the restart source the scenario must end with:
	// "cache-rebuild" (default) or "prefix".
	WantSource string
	// MoreCheckpoints is how many checkpoints the relaunched run writes
	// before scr_halt stops it (default 2).
	MoreCheckpoints int
	// BinDir holds the project's binaries (default $SCR_BIN).
	BinDir string
	// StateDir is the cluster's state directory (default: a new temporary
	// directory). OutDir receives timeline.json (default: none).
	StateDir, OutDir string
	// Logf receives progress lines.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = "demo"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.JobNodes == 0 {
		o.JobNodes = 2
	}
	if o.Timeouts == "" {
		o.Timeouts = vcluster.TimeoutsProduction
	}
	if o.RM == "" {
		o.RM = vcluster.RMSlurm
	}
	if o.SetSize == 0 {
		o.SetSize = 8
	}
	if o.Size == "" {
		o.Size = "64MB"
	}
	if o.Seconds == 0 {
		o.Seconds = 2
	}
	if len(o.VictimRanks) == 0 {
		o.VictimRanks = []int{o.JobNodes - 1}
	}
	if o.WantSource == "" {
		o.WantSource = "cache-rebuild"
	}
	if o.MoreCheckpoints == 0 {
		o.MoreCheckpoints = 2
	}
	if o.BinDir == "" {
		o.BinDir = os.Getenv("SCR_BIN")
	}
	if o.BinDir == "" {
		return o, errors.New("scenario: no binaries: set SCR_BIN to the directory of the built commands (make build)")
	}
	for _, b := range []string{"scr_run", "test_api", "scr_halt", "scr_list_down_nodes", "scr_index"} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return o, fmt.Errorf("scenario: %s missing in %s: run `make build`", b, o.BinDir)
		}
	}
	if o.App == "" {
		o.App = "test_api"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.JobNodes >= o.Nodes {
		return o, fmt.Errorf("scenario: %d job nodes in a %d-node allocation leave no spare", o.JobNodes, o.Nodes)
	}
	return o, nil
}

// Result is what a scenario measured. Times are seconds after the power-off
// (of the first victim); a phase that did not happen is -1.
type Result struct {
	Scenario                     string   `json:"scenario"`
	ResourceManager              string   `json:"resource_manager"`
	PowerOff                     string   `json:"poweroff_time"`
	Victims                      []string `json:"victims"`
	StepExit                     float64  `json:"step_exit_s"`
	Detected                     float64  `json:"detected_s"`
	DetectedReason               string   `json:"detected_reason"`
	Relaunch                     float64  `json:"relaunch_s"`
	Started                      float64  `json:"started_s"`
	Rebuilt                      float64  `json:"rebuilt_s"`
	FirstCheckpoint              float64  `json:"first_checkpoint_s"`
	LastCheckpointBeforePowerOff string   `json:"last_checkpoint_before_poweroff"`
	RestartedFrom                string   `json:"restarted_from"`
	RestartSource                string   `json:"restart_source"`
	Verified                     bool     `json:"verified"`
	RelaunchNodes                []string `json:"relaunch_nodes"`
	DownList                     string   `json:"scr_list_down_nodes"`
	DownListSeconds              float64  `json:"scr_list_down_nodes_s"`
	LastCheckpoint               string   `json:"last_checkpoint"`
	Scavenged                    string   `json:"scavenged"`
	JobState                     string   `json:"job_state"`
	// With Options.AfterRMNotices: when the resource manager reported the
	// victim down, and what scr_list_down_nodes said then.
	RMNoticed              float64 `json:"rm_noticed_s,omitempty"`
	DownListAfterRM        string  `json:"scr_list_down_nodes_after_rm,omitempty"`
	DownListAfterRMSeconds float64 `json:"scr_list_down_nodes_after_rm_s,omitempty"`
}

// Table renders the recovery timeline for people.
func (r *Result) Table() string {
	var b strings.Builder
	row := func(what string, s float64, note string) {
		v := "      -"
		if s >= 0 {
			v = fmt.Sprintf("%7.2f", s)
		}
		fmt.Fprintf(&b, "  %-34s %s s  %s\n", what, v, note)
	}
	fmt.Fprintf(&b, "Recovery timeline (%s), seconds after power-off of %s:\n", r.Scenario, strings.Join(r.Victims, ","))
	row("power-off", 0, r.PowerOff)
	row("step exit (scr_run regains control)", r.StepExit, "")
	row("node failure detected", r.Detected, r.DetectedReason)
	row("relaunch", r.Relaunch, strings.Join(r.RelaunchNodes, ","))
	row("ranks started", r.Started, "")
	row("rebuild done", r.Rebuilt, "")
	row("first new checkpoint", r.FirstCheckpoint, "")
	fmt.Fprintf(&b, "  last checkpoint before power-off: %s\n", r.LastCheckpointBeforePowerOff)
	fmt.Fprintf(&b, "  restarted from: %s (source %s, every byte verified: %v)\n", r.RestartedFrom, r.RestartSource, r.Verified)
	fmt.Fprintf(&b, "  scr_list_down_nodes: %q in %.2f s\n", r.DownList, r.DownListSeconds)
	if r.RMNoticed > 0 {
		fmt.Fprintf(&b, "  %s reported the node down at %.2f s; scr_list_down_nodes then: %q in %.2f s\n", r.ResourceManager, r.RMNoticed, r.DownListAfterRM, r.DownListAfterRMSeconds)
	}
	fmt.Fprintf(&b, "  last checkpoint %s; scavenged to the prefix by postrun: %q; %s's job state after the script ended: %s\n", r.LastCheckpoint, r.Scavenged, r.ResourceManager, r.JobState)
	return b.String()
}

// Run brings up a cluster, runs the scenario, takes the cluster down and
// returns the measurements. The error says which expectation failed; the
// Result is filled as far as the scenario got.
func Run(ctx context.Context, o Options) (*Result, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	state := o.StateDir
	if state == "" {
		if state, err = os.MkdirTemp("", "scr-scenario-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(state)
	}
	c, err := vcluster.Up(ctx, vcluster.Options{
		Name: o.Name, StateDir: filepath.Join(state, "vc"), Nodes: o.Nodes,
		Timeouts: o.Timeouts, RM: o.RM, BinDir: o.BinDir, Logf: o.Logf,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if derr := c.Down(dctx); derr != nil {
			o.Logf("scenario: taking the cluster down: %v", derr)
		}
	}()
	s := &run{o: o, c: c, res: &Result{Scenario: o.Name, ResourceManager: string(o.RM)}}
	err = s.drive(ctx)
	if err != nil {
		o.Logf("scenario: %v\n--- job output ---\n%s\n--- cluster logs ---\n%s", err, s.jobOutput(), c.Logs())
	}
	if o.OutDir != "" {
		if werr := s.res.Save(filepath.Join(o.OutDir, "timeline.json")); werr != nil && err == nil {
			err = werr
		}
	}
	return s.res, err
}

// Save writes the result as indented JSON, creating the directory.
func (r *Result) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

type run struct {
	o      Options
	c      *vcluster.Cluster
	res    *Result
	jobID  string
	prefix string
	out    string
	// Flux: the allocation's instance (FLUX_URI inside it).
	allocURI string
}

func (s *run) flux() bool { return s.o.RM == vcluster.RMFlux }

func (s *run) jobOutput() string {
	b, _ := os.ReadFile(s.out)
	return string(b)
}

// script is the job script: the reference scenario's scr_run line.
func (s *run) script() string {
	env := map[string]string{
		"SCR_PREFIX":       s.prefix,
		"SCR_CACHE_BYPASS": "0",
		"SCR_COPY_TYPE":    "XOR",
		"SCR_SET_SIZE":     strconv.Itoa(s.o.SetSize),
		"SCR_FLUSH":        strconv.Itoa(s.o.Flush),
		"SCR_CACHE_SIZE":   "2",
		"SCR_RUNS":         "4",
		"SCR_DEBUG":        "1",
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("#!/bin/bash\n# scr-go reference scenario (written by internal/scenario)\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, env[k])
	}
	fmt.Fprintf(&b, "cd %s\n", s.prefix)
	n := strconv.Itoa(s.o.JobNodes)
	launcher := append([]string{"srun", "-N" + n, "-n" + n}, s.o.SrunArgs...)
	if s.flux() {
		launcher = append([]string{"flux", "run", "-N" + n, "-n" + n}, s.o.FluxArgs...)
	}
	fmt.Fprintf(&b, "scr_run %s %s --size %s --times 1000 --seconds %d\n", shellJoin(launcher), s.o.App, s.o.Size, s.o.Seconds)
	b.WriteString("rc=$?\necho \"scr_run exited with $rc\"\nexit $rc\n")
	return b.String()
}

func (s *run) drive(ctx context.Context) error {
	o, c := s.o, s.c
	s.prefix = filepath.Join(c.SharedDir(), "prefix")
	if err := os.MkdirAll(s.prefix, 0o755); err != nil {
		return err
	}
	s.out = filepath.Join(c.SharedDir(), "job.out")
	if err := s.submit(ctx); err != nil {
		return err
	}
	o.Logf("scenario: job %s submitted", s.jobID)

	// The first checkpoint of run 1.
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	ck, off, err := prefix.WaitTimeline(wctx, s.prefix, 0, 20*time.Millisecond, func(e prefix.Event) bool {
		return e.Event == "checkpoint" && e.Run == 1
	})
	if err != nil {
		return fmt.Errorf("no checkpoint of the first run within 90 s: %w", err)
	}
	o.Logf("scenario: first checkpoint %v complete", ck.Fields["name"])
	if o.Flush > 0 {
		// The library reports a checkpoint before it flushes it; a variant
		// that must restart from the prefix needs it there first.
		if _, off, err = prefix.WaitTimeline(wctx, s.prefix, off, 20*time.Millisecond, func(e prefix.Event) bool {
			return e.Event == "flush" && e.Run == 1
		}); err != nil {
			return fmt.Errorf("no flush of the first run within 90 s (SCR_FLUSH=%d): %w", o.Flush, err)
		}
		o.Logf("scenario: a checkpoint reached the prefix")
	}

	if s.flux() {
		if s.allocURI, err = c.FluxJobURI(ctx, s.jobID); err != nil {
			return fmt.Errorf("the allocation's instance: %w", err)
		}
	}
	victims, err := s.victims(ctx)
	if err != nil {
		return err
	}
	s.res.Victims = victims
	s.capture(ctx, "healthy")
	if o.DuringWrite {
		if err := s.waitWriteStart(ctx, victims[0], off); err != nil {
			return err
		}
	}
	var at time.Time
	for i, v := range victims {
		t, err := c.PowerOff(ctx, v)
		if err != nil {
			return err
		}
		if i == 0 {
			at = t
		}
		_ = prefix.AppendTimeline(s.prefix, prefix.Event{Time: t, Source: "test", Event: "poweroff", Fields: map[string]any{"node": v}})
	}
	s.res.PowerOff = at.UTC().Format(time.RFC3339Nano)
	o.Logf("scenario: powered off %v at %s", victims, at.Format("15:04:05.000"))

	// scr_list_down_nodes on the batch host, as a user would run it.
	s.res.DownList, s.res.DownListSeconds = s.listDown(ctx, at)
	s.capture(ctx, "after-poweroff")

	// The relaunched run's first checkpoint, then a halt after a few more.
	wctx2, cancel2 := context.WithTimeout(ctx, 120*time.Second)
	defer cancel2()
	_, _, err = prefix.WaitTimeline(wctx2, s.prefix, 0, 50*time.Millisecond, func(e prefix.Event) bool {
		return e.Event == "checkpoint" && e.Run > 1 && e.Time.After(at)
	})
	if err != nil {
		s.measure(at)
		return fmt.Errorf("no checkpoint after the power-off within 120 s: %w", err)
	}
	if nodes, err := s.stepNodes(ctx); err == nil {
		s.res.RelaunchNodes = nodes
	} else {
		o.Logf("scenario: nodes of the relaunched step: %v", err)
	}
	if o.AfterRMNotices {
		if err := s.afterRMNotices(ctx, at, victims); err != nil {
			return err
		}
	}
	halt := exec.CommandContext(ctx, filepath.Join(o.BinDir, "scr_halt"), "--checkpoints", strconv.Itoa(o.MoreCheckpoints), s.prefix)
	if out, err := halt.CombinedOutput(); err != nil {
		return fmt.Errorf("scr_halt: %v: %s", err, out)
	}
	// The job script ends when scr_run returns. Slurm itself keeps the job
	// COMPLETING until it declares the dead node DOWN (minutes with
	// production timeouts): that is Slurm's bookkeeping, not the job's.
	jctx, cancel3 := context.WithTimeout(ctx, 120*time.Second)
	defer cancel3()
	rc, err := s.waitScriptExit(jctx)
	if err != nil {
		s.measure(at)
		return fmt.Errorf("the job script did not end after scr_halt: %w", err)
	}
	s.res.JobState = s.jobState(ctx)
	if s.flux() {
		// The allocation ends once its instance has shut down (a few
		// seconds after the script): wait for it, to report how it ended.
		for deadline := time.Now().Add(60 * time.Second); (s.res.JobState == "RUN" || s.res.JobState == "CLEANUP") && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond)
			s.res.JobState = s.jobState(ctx)
		}
	}
	if o.CaptureDir != "" {
		if b, err := os.ReadFile(filepath.Join(s.prefix, ".scr", "timeline")); err == nil {
			_ = os.WriteFile(filepath.Join(o.CaptureDir, "timeline.jsonl"), b, 0o644)
		}
	}
	if err := s.measure(at); err != nil {
		return err
	}
	return s.check(rc)
}

var scriptExit = regexp.MustCompile(`scr_run exited with (\d+)`)

// waitScriptExit waits for the job script's last line and returns scr_run's
// exit code.
func (s *run) waitScriptExit(ctx context.Context) (int, error) {
	for {
		if m := scriptExit.FindStringSubmatch(s.jobOutput()); m != nil {
			return strconv.Atoi(m[1])
		}
		select {
		case <-ctx.Done():
			st := s.jobState(context.WithoutCancel(ctx))
			return -1, fmt.Errorf("job %s is %s: %w", s.jobID, st, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stepNodes returns the node list of the job's running parallel step.
func (s *run) stepNodes(ctx context.Context) ([]string, error) {
	if s.flux() {
		return s.fluxStepNodes(ctx)
	}
	out, err := s.c.Exec(ctx, "head", []string{"squeue", "-h", "-s", "-j", s.jobID, "-o", "%i %N"}, nil)
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasSuffix(f[0], ".batch") || strings.HasSuffix(f[0], ".extern") {
			continue
		}
		if nodes, err = hostlist.Expand(f[1]); err != nil {
			return nil, err
		}
	}
	if len(nodes) != s.o.JobNodes {
		return nil, fmt.Errorf("the running step has nodes %v, want %d (squeue: %q)", nodes, s.o.JobNodes, out)
	}
	return nodes, nil
}

// victims maps the victim ranks to nodes: one rank per node, block order,
// so rank i runs on the i-th node of the first step's node list.
func (s *run) victims(ctx context.Context) ([]string, error) {
	nodes, err := s.stepNodes(ctx)
	if err != nil {
		return nil, err
	}
	batch := s.c.NodeNames()[0]
	var vs []string
	for _, r := range s.o.VictimRanks {
		if r < 0 || r >= len(nodes) {
			return nil, fmt.Errorf("victim rank %d: the run has %d ranks", r, len(nodes))
		}
		if nodes[r] == batch {
			return nil, fmt.Errorf("victim rank %d runs on the batch host %s: choose another", r, batch)
		}
		vs = append(vs, nodes[r])
	}
	return vs, nil
}

// waitWriteStart returns once the node's cache holds a dataset directory
// that no checkpoint event has completed yet: a write is in progress.
func (s *run) waitWriteStart(ctx context.Context, node string, off int64) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	done := map[string]bool{}
	for {
		evs, next, _ := prefix.ReadTimelineFrom(s.prefix, off)
		off = next
		for _, e := range evs {
			if e.Event == "checkpoint" {
				done[fmt.Sprint(e.Fields["dataset"])] = true
			}
		}
		out, err := s.c.Exec(wctx, node, []string{"sh", "-c", "ls -d /dev/shm/*/scr.*/scr.dataset.* 2>/dev/null"}, nil)
		if err == nil || len(out) > 0 {
			for _, p := range strings.Fields(string(out)) {
				id := strings.TrimPrefix(filepath.Base(p), "scr.dataset.")
				if !done[id] {
					// Let the write get going, then pull the plug.
					time.Sleep(50 * time.Millisecond)
					return nil
				}
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("no checkpoint write seen starting on %s: %w", node, wctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// jobEnv is the environment of the job script, for commands run as if
// from it on the batch host.
func (s *run) jobEnv() []string {
	if s.flux() {
		return []string{"FLUX_URI=" + s.allocURI, "FLUX_ENCLOSING_ID=" + s.jobID, "SCR_PREFIX=" + s.prefix}
	}
	nodes := hostlist.Compress(s.c.NodeNames())
	return []string{"SLURM_JOB_ID=" + s.jobID, "SLURM_JOBID=" + s.jobID, "SLURM_JOB_NODELIST=" + nodes, "SLURM_NODELIST=" + nodes, "SCR_PREFIX=" + s.prefix}
}

// listDown runs scr_list_down_nodes --reason in the job's environment on
// the batch host and returns what it said and how long it took.
func (s *run) listDown(ctx context.Context, at time.Time) (string, float64) {
	batch := s.c.NodeNames()[0]
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	cmd := s.c.Command(lctx, batch, []string{"scr_list_down_nodes", "--reason"}, s.jobEnv())
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	took := time.Since(start).Seconds()
	list := strings.TrimSpace(string(out))
	s.o.Logf("scenario: scr_list_down_nodes --reason (%.2f s after power-off, took %.2f s, %v): %s %s", start.Sub(at).Seconds(), took, err, list, strings.TrimSpace(errb.String()))
	return list, took
}

// submit submits the job script to the resource manager.
func (s *run) submit(ctx context.Context) error {
	var err error
	nodes := "-N" + strconv.Itoa(s.o.Nodes)
	if s.flux() {
		// The allocation must survive a node loss (exit-timeout=none), and
		// a flat overlay makes only its rank 0 (node1) critical.
		s.jobID, err = s.c.FluxBatch(ctx, s.script(), nodes, "-o", "exit-timeout=none", "--conf=tbon.topo=kary:0", "--output="+s.out)
		return err
	}
	s.jobID, err = s.c.Sbatch(ctx, s.script(), "--no-kill", "--no-requeue", nodes, "--output="+s.out)
	return err
}

// jobState is the resource manager's state of the job ("" if unknown).
func (s *run) jobState(ctx context.Context) string {
	if s.flux() {
		st, _ := s.c.FluxJobStatus(ctx, s.jobID)
		return st
	}
	st, _, _ := s.c.JobState(ctx, s.jobID)
	return st
}

// shellJoin quotes words for the job script where they need it.
func shellJoin(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if strings.ContainsAny(w, " \t'\"$`\\[]*?;&|<>(){}") {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		out[i] = w
	}
	return strings.Join(out, " ")
}

// measure fills the result from the timeline.
func (s *run) measure(at time.Time) error {
	evs, err := prefix.ReadTimeline(s.prefix)
	if err != nil {
		return err
	}
	r := s.res
	r.StepExit, r.Detected, r.Relaunch, r.Started, r.Rebuilt, r.FirstCheckpoint = -1, -1, -1, -1, -1, -1
	since := func(e prefix.Event) float64 { return e.Time.Sub(at).Seconds() }
	first := func(v *float64, e prefix.Event) {
		if *v < 0 {
			*v = since(e)
		}
	}
	// The relaunched run is the first one after the power-off that
	// started: a launch scr_run had to kill unconfirmed and retry (a
	// launcher that hung at start-up) is part of the relaunch's time, not
	// the run that restarts.
	relaunchRun := 0
	for _, e := range evs {
		if e.Event == "started" && e.Source != "scr_run" && !e.Time.Before(at) {
			relaunchRun = e.Run
			break
		}
	}
	for _, e := range evs {
		after := !e.Time.Before(at)
		if e.Event == "checkpoint" {
			r.LastCheckpoint, _ = e.Fields["name"].(string)
		}
		switch {
		case e.Event == "checkpoint" && !after:
			r.LastCheckpointBeforePowerOff, _ = e.Fields["name"].(string)
		case e.Event == "step_exit" && after:
			first(&r.StepExit, e)
		case e.Event == "node_down" && after && r.Detected < 0:
			if n, _ := e.Fields["node"].(string); contains(r.Victims, n) {
				first(&r.Detected, e)
				r.DetectedReason, _ = e.Fields["reason"].(string)
			}
		case e.Event == "peer_lost" && after && r.Detected < 0:
			// A rank's heartbeat noticed the node before any check did.
			if n, _ := e.Fields["lost_host"].(string); contains(r.Victims, n) {
				first(&r.Detected, e)
				reason, _ := e.Fields["reason"].(string)
				r.DetectedReason = "peer lost: " + reason
			}
		case e.Event == "launch" && after:
			first(&r.Relaunch, e)
		case e.Event == "started" && relaunchRun > 0 && e.Run == relaunchRun:
			first(&r.Started, e)
		case e.Event == "rebuilt" && relaunchRun > 0 && e.Run == relaunchRun:
			first(&r.Rebuilt, e)
		case e.Event == "restart" && relaunchRun > 0 && e.Run == relaunchRun && r.RestartedFrom == "":
			r.RestartedFrom, _ = e.Fields["name"].(string)
			r.RestartSource, _ = e.Fields["from"].(string)
		case e.Event == "checkpoint" && relaunchRun > 0 && e.Run == relaunchRun:
			first(&r.FirstCheckpoint, e)
		case e.Event == "scavenge":
			r.Scavenged, _ = e.Fields["name"].(string)
		}
	}
	return nil
}

var restartLine = regexp.MustCompile(`Restarting from checkpoint named (\S+)`)

// check compares the result with what the scenario must show.
func (s *run) check(scriptRC int) error {
	r, o := s.res, s.o
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	out := s.jobOutput()
	if m := restartLine.FindAllStringSubmatch(out, -1); len(m) == 0 {
		fail("test_api printed no restart line")
	} else if name := m[len(m)-1][1]; name != r.RestartedFrom {
		fail("test_api restarted from %s, the library offered %s", name, r.RestartedFrom)
	} else {
		// test_api verifies every byte of the restart and exits non-zero
		// when a check fails; the relaunched step must have exited 0.
		r.Verified = !strings.Contains(out, "did not find its checkpoint") && s.relaunchExitedZero()
	}
	if !r.Verified {
		fail("the restart was not verified (see the job output)")
	}
	if r.RestartSource != o.WantSource {
		fail("restart source %q, want %q", r.RestartSource, o.WantSource)
	}
	want := r.LastCheckpointBeforePowerOff
	if o.DuringWrite || o.WantSource == "prefix" {
		want = "" // an earlier checkpoint is right; checked below
	}
	if want != "" && r.RestartedFrom != want {
		fail("restarted from %s, want the last checkpoint before the power-off, %s", r.RestartedFrom, want)
	}
	if r.RestartedFrom == "" {
		fail("no restart was offered after the power-off")
	}
	for _, v := range r.Victims {
		if !strings.Contains(r.DownList, v) {
			fail("scr_list_down_nodes did not name %s: %q", v, r.DownList)
		}
		if contains(r.RelaunchNodes, v) {
			fail("the relaunch used the dead node %s", v)
		}
	}
	// Every phase of the recovery is in the timeline, whatever the
	// resource manager (the same events on Slurm and on Flux).
	for _, ph := range []struct {
		what string
		at   float64
	}{{"step exit", r.StepExit}, {"detection", r.Detected}, {"relaunch", r.Relaunch}, {"started", r.Started}, {"first new checkpoint", r.FirstCheckpoint}} {
		if ph.at < 0 {
			fail("the timeline has no %s after the power-off", ph.what)
		}
	}
	if o.WantSource == "cache-rebuild" && r.Rebuilt < 0 {
		fail("no rebuilt event: the restart was not rebuilt from redundancy")
	}
	if scriptRC != 0 {
		fail("scr_run exited with %d, want 0", scriptRC)
	}
	// The job's last checkpoint must end in the prefix: scavenged by
	// postrun, or flushed by the library when SCR_FLUSH made it due.
	switch {
	case r.LastCheckpoint == "":
		fail("no checkpoint was written")
	case o.Flush == 0 && r.Scavenged != r.LastCheckpoint:
		fail("postrun scavenged %q, want the last checkpoint %s (SCR_FLUSH=0: only a scavenge can put it in the prefix)", r.Scavenged, r.LastCheckpoint)
	default:
		for rank := 0; rank < o.JobNodes; rank++ {
			f := filepath.Join(s.prefix, r.LastCheckpoint, fmt.Sprintf("rank_%d.ckpt", rank))
			if _, err := os.Stat(f); err != nil {
				fail("the last checkpoint is not in the prefix: %v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *run) relaunchExitedZero() bool {
	evs, err := prefix.ReadTimeline(s.prefix)
	if err != nil {
		return false
	}
	last := -1
	for _, e := range evs {
		if e.Event == "step_exit" {
			st, _ := e.Fields["status"].(float64)
			last = int(st)
		}
	}
	return last == 0
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

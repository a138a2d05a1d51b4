package flux_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/jobid"
	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/flux"
	"github.com/scr-go/scr/internal/rm/rmtest"
)

var now = time.Unix(1795613000, 0)

const (
	cmdJobID    = "flux getattr jobid"
	cmdInstance = "flux hostlist instance"
	cmdStatus   = "flux resource status -no {state} {ranks} {nodelist}"
	cmdTimeleft = "flux job timeleft"
)

func td(name string) string { return filepath.Join("testdata", name) }

// situation builds the replies for one captured situation. jobidSit and
// timeleftSit name the situation whose capture answers those commands when
// the situation itself has none (see testdata/README.md).
func situation(sit, jobidSit, timeleftSit string) map[string]rmtest.Reply {
	r := map[string]rmtest.Reply{
		cmdInstance: {File: td("hostlist-instance." + sit + ".txt")},
		cmdStatus:   {File: td("resource-status-no-state-ranks-nodelist." + sit + ".txt")},
		cmdTimeleft: {File: td("job-timeleft." + timeleftSit + ".txt")},
	}
	if jobidSit == "healthy" { // system instance: rc 1, "No such file or directory"
		r[cmdJobID] = rmtest.Reply{ExitCode: 1, Stderr: "flux-getattr: jobid: No such file or directory"}
	} else {
		r[cmdJobID] = rmtest.Reply{File: td("getattr-jobid." + jobidSit + ".txt")}
	}
	return r
}

func newFlux(env map[string]string, replies map[string]rmtest.Reply) func(context.Context) (rm.Manager, error) {
	return func(ctx context.Context) (rm.Manager, error) {
		rp := &rmtest.Replay{Replies: replies}
		return flux.New(ctx, rm.Config{Env: rm.MapEnv(env), Run: rp.Runner(), Now: func() time.Time { return now }})
	}
}

func TestConformance(t *testing.T) {
	nested := map[string]string{"FLUX_URI": "local:///var/tmp/flux-Don9tv/local-0", "FLUX_ENCLOSING_ID": "ƒVaSC5xK"}
	// A task of the first and of a second `flux run` in that allocation
	// (env captured live: shared/fixtures/flux/run-N2-n2-env-sort.nested-healthy.txt;
	// the second run's id is made up, as a relaunch would get a new one).
	task1 := map[string]string{"FLUX_URI": "local:///var/tmp/flux-j1nEZZ/local-1", "FLUX_ENCLOSING_ID": "ƒVaSC5xK",
		"FLUX_JOB_ID": "ƒ2Zk33R9", "FLUX_JOB_ID_PATH": "/ƒVaSC5xK/ƒ2Zk33R9", "FLUX_TASK_RANK": "1"}
	task2 := map[string]string{"FLUX_URI": "local:///var/tmp/flux-j1nEZZ/local-1", "FLUX_ENCLOSING_ID": "ƒVaSC5xK",
		"FLUX_JOB_ID": "ƒ5kX2qAb", "FLUX_JOB_ID_PATH": "/ƒVaSC5xK/ƒ5kX2qAb", "FLUX_TASK_RANK": "0"}
	// The same task where the locale printed ASCII ids, and one submitted
	// through `flux proxy` (no FLUX_ENCLOSING_ID).
	task3 := map[string]string{"FLUX_JOB_ID": "f5kX2qAb", "FLUX_JOB_ID_PATH": "/fVaSC5xK/f5kX2qAb"}
	task4 := map[string]string{"FLUX_JOB_ID": "ƒ5kX2qAb", "FLUX_JOB_ID_PATH": "/ƒVaSC5xK/ƒ5kX2qAb"}
	nestedEnvs := []map[string]string{nested, task1, task2, task3, task4}
	proxied := map[string]string{"FLUX_URI": "local:///var/tmp/flux-Don9tv/local-0"}
	system := map[string]string{"FLUX_URI": "local:///home/user/scrtest/n0/run/local"}
	job := map[string]string{"FLUX_URI": "local:///home/user/scrtest/n1/run/local", "FLUX_JOB_ID": "ƒ3VPu3vw"}
	jobTask := map[string]string{"FLUX_URI": "local:///home/user/scrtest/n1/run/local", "FLUX_JOB_ID": "ƒ3VPu3vw", "FLUX_JOB_ID_PATH": "/ƒ3VPu3vw"}
	all := []string{"fnode0", "fnode1", "fnode2"}

	jobReplies := situation("healthy", "healthy", "healthy")
	jobReplies["flux hostlist ƒ3VPu3vw"] = rmtest.Reply{File: td("hostlist-jobid.healthy-job-running.txt")}
	jobReplies["flux job timeleft ƒ3VPu3vw"] = rmtest.Reply{File: td("job-timeleft-jobid.healthy-job-running.txt")}

	rmtest.Run(t, []rmtest.Case{
		{Name: "nested-healthy", New: newFlux(nested, situation("nested-healthy", "nested-healthy", "nested-healthy")),
			JobID: "fVaSC5xK", Nodes: all, End: now.Unix() + 3596, CacheEnvs: nestedEnvs},
		// Detected from inside a task of a run: still the allocation, and
		// the allocation's nodes, not the run's.
		{Name: "nested-task", New: newFlux(task1, situation("nested-healthy", "nested-healthy", "nested-healthy")),
			JobID: "fVaSC5xK", Nodes: all, End: now.Unix() + 3596, CacheEnvs: nestedEnvs},
		{Name: "nested-proxied", New: newFlux(proxied, situation("nested-healthy", "nested-healthy", "nested-healthy")),
			JobID: "fVaSC5xK", Nodes: all, End: now.Unix() + 3596, CacheEnvs: nestedEnvs},
		// Before the nested instance noticed the loss, Flux knows nothing:
		// an empty answer is the truth, and nodecheck's ping must catch it.
		{Name: "nested-after-poweroff-not-yet-seen", New: newFlux(nested, situation("nested-after-poweroff", "nested-healthy", "nested-healthy")),
			JobID: "fVaSC5xK", Nodes: all, End: now.Unix() + 3596},
		// flux resource list -s down is empty here (observation 2); the
		// status query must still see fnode2.
		{Name: "nested-after-poweroff-detected", New: newFlux(nested, situation("nested-after-poweroff-detected", "nested-after-poweroff-detected", "nested-after-poweroff-detected")),
			JobID: "fVaSC5xK", Nodes: all, Down: []string{"fnode2"}, End: now.Unix() + 3554},
		{Name: "system-healthy-no-job", New: newFlux(system, situation("healthy", "healthy", "healthy")),
			JobID: "", Nodes: all, End: -1},
		{Name: "system-after-poweroff", New: newFlux(system, situation("after-poweroff", "healthy", "healthy")),
			JobID: "", Nodes: all, Down: []string{"fnode2"}, End: -1},
		{Name: "system-after-poweroff-fnode1-drained", New: newFlux(system, situation("after-poweroff-fnode1-drained", "healthy", "healthy")),
			JobID: "", Nodes: all, Down: []string{"fnode1", "fnode2"}, End: -1},
		// A job of the system instance is its own allocation.
		{Name: "system-job-running", New: newFlux(job, jobReplies),
			JobID: "f3VPu3vw", Nodes: []string{"fnode1", "fnode2"}, End: now.Unix() + 1798, CacheEnvs: []map[string]string{job, jobTask}},
		{Name: "system-job-task", New: newFlux(jobTask, jobReplies),
			JobID: "f3VPu3vw", Nodes: []string{"fnode1", "fnode2"}, End: now.Unix() + 1798, CacheEnvs: []map[string]string{job, jobTask}},
	})
}

func TestDownReasonsNameTheState(t *testing.T) {
	m, _ := newFlux(map[string]string{"FLUX_URI": "x"}, situation("after-poweroff-fnode1-drained", "healthy", "healthy"))(context.Background())
	down, err := m.DownNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if down["fnode2"] != "flux: offline (broker lost or not started)" || down["fnode1"] != "flux: drained" {
		t.Fatalf("reasons: %q", down)
	}
}

func TestTransportRanksFromInstance(t *testing.T) {
	env := map[string]string{"FLUX_URI": "x", "FLUX_JOB_ID": "ƒ3VPu3vw"}
	r := situation("healthy", "healthy", "healthy")
	m, _ := newFlux(env, r)(context.Background())
	tr, err := m.Transport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := tr.Command("fnode2", []string{"hostname"})
	if err != nil || c.Path != "flux" || len(c.Args) != 4 || c.Args[2] != "2" {
		t.Fatalf("command %+v, %v", c, err)
	}
}

func TestHungFluxIsBounded(t *testing.T) {
	r := situation("healthy", "healthy", "healthy")
	r[cmdStatus] = rmtest.Reply{Block: true}
	m, _ := newFlux(map[string]string{"FLUX_URI": "x"}, r)(context.Background())
	rmtest.CheckBounded(t, m)
}

func TestDetect(t *testing.T) {
	rp := &rmtest.Replay{Replies: situation("nested-healthy", "nested-healthy", "nested-healthy")}
	m, err := rm.Detect(context.Background(), rm.Config{Env: rm.MapEnv(map[string]string{"FLUX_URI": "x", "SLURM_JOB_ID": "7"}), Run: rp.Runner()})
	if err != nil || m.Name() != "flux" || m.JobID() != "fVaSC5xK" {
		t.Fatalf("Detect: %v %v", m, err)
	}
}

func TestHostlistAskedOnce(t *testing.T) {
	rp := &rmtest.Replay{Replies: situation("nested-after-poweroff-detected", "nested-after-poweroff-detected", "nested-after-poweroff-detected")}
	m, err := flux.New(context.Background(), rm.Config{Env: rm.MapEnv(map[string]string{"FLUX_URI": "x"}), Run: rp.Runner()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m.Nodes(ctx)
	m.DownNodes(ctx)
	m.Transport(ctx)
	n := 0
	for _, c := range rp.Calls {
		if c == cmdInstance {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("flux hostlist instance asked %d times: %q", n, rp.Calls)
	}
}

// Lines of `flux resource status -no "{state} {ranks} {nodelist}"` for the
// states the captures do not show; their shape is statuslines() of
// flux-core 0.88's flux-resource.py: the state, "*" appended when offline,
// and an empty line for "draining"/"drained" when no node is.
func TestParseStatusStates(t *testing.T) {
	out := []byte("avail 0-1 n[0-1]\navail* 2 n2\nexclude 3 n3\ntorpid 4 n4\ndraining 5 n5\ndrained* 6 n6\n" +
		"housekeeping 7 n7\nexclude* 8 n8\ndraining  \ndrained  \n")
	m, _ := newFlux(map[string]string{"FLUX_URI": "x"}, map[string]rmtest.Reply{
		cmdStatus:   {Stdout: string(out)},
		cmdJobID:    {ExitCode: 1},
		cmdInstance: {Stdout: "n[0-8]\n"},
	})(context.Background())
	down, err := m.DownNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"n2": "flux: offline (broker lost or not started)",
		"n3": "flux: excluded",
		"n4": "flux: torpid",
		"n5": "flux: draining",
		"n6": "flux: offline (broker lost or not started)",
		"n8": "flux: offline (broker lost or not started)",
	}
	if len(down) != len(want) {
		t.Errorf("down = %q, want %q", down, want)
	}
	for n, r := range want {
		if down[n] != r {
			t.Errorf("%s: %q, want %q", n, down[n], r)
		}
	}
}

// liveReplies answers the adapter's commands with what live Flux printed
// in one instance ("nested": the flux batch allocation; "system") at one
// stage of the reference scenario (testdata/live/README.md): the command
// lines, exit codes and files of testdata/live/captures.tsv.
func liveReplies(t *testing.T, where, stage string) map[string]rmtest.Reply {
	t.Helper()
	b, err := os.ReadFile(td("live/captures.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	r := map[string]rmtest.Reply{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 5 || !strings.HasSuffix(f[0], "."+where+"-"+stage+".txt") {
			continue
		}
		rc, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("captures.tsv: %q: %v", line, err)
		}
		rep := rmtest.Reply{File: td("live/" + f[0]), ExitCode: rc}
		if e, err := os.ReadFile(td("live/" + strings.TrimSuffix(f[0], ".txt") + ".stderr.txt")); err == nil {
			rep.Stderr = strings.TrimSpace(string(e))
		}
		r[f[1]] = rep
	}
	if len(r) == 0 {
		t.Fatalf("no capture of %s-%s in testdata/live", where, stage)
	}
	return r
}

// The conformance suite against output captured from live Flux 0.88 on the
// virtual cluster (node2 powered off; the allocation noticed at +24.6 s).
func TestConformanceLive(t *testing.T) {
	alloc, err := os.ReadFile(td("live/getattr-jobid.nested-healthy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	batch := map[string]string{"FLUX_URI": "local:///tmp/flux-x/local-0", "FLUX_ENCLOSING_ID": strings.TrimSpace(string(alloc))}
	proxied := map[string]string{"FLUX_URI": "local:///tmp/flux-x/local-0"}
	system := map[string]string{"FLUX_URI": "local:///tmp/vc/flux/run/node1/local"}
	all := []string{"node1", "node2", "node3"}
	id := jobid.Flux(string(alloc)) // the attribute prints ƒ, the canonical id f
	if !strings.HasPrefix(id, "f") || strings.HasPrefix(id, "ƒ") {
		t.Fatalf("canonical id %q", id)
	}
	rmtest.Run(t, []rmtest.Case{
		{Name: "live-nested-healthy", New: newFlux(batch, liveReplies(t, "nested", "healthy")), JobID: id, Nodes: all, End: -1,
			CacheEnvs: []map[string]string{batch}},
		{Name: "live-nested-proxied", New: newFlux(proxied, liveReplies(t, "nested", "healthy")), JobID: id, Nodes: all, End: -1},
		{Name: "live-nested-after-poweroff", New: newFlux(batch, liveReplies(t, "nested", "after-poweroff")), JobID: id, Nodes: all, End: -1},
		{Name: "live-nested-after-poweroff-detected", New: newFlux(batch, liveReplies(t, "nested", "after-poweroff-detected")),
			JobID: id, Nodes: all, Down: []string{"node2"}, End: -1},
		{Name: "live-system-healthy", New: newFlux(system, liveReplies(t, "system", "healthy")), JobID: "", Nodes: all, End: -1},
		{Name: "live-system-after-poweroff-detected", New: newFlux(system, liveReplies(t, "system", "after-poweroff-detected")),
			JobID: "", Nodes: all, Down: []string{"node2"}, End: -1},
	})
}

package nodecheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/local"
)

// The test binary doubles as the remote storage check (os/exec's helper
// process pattern): run with NODECHECK_HELPER=1 and --check-storage.
func TestMain(m *testing.M) {
	// A batched launch (like one srun step): --batch n1,n2 CHECK-ARGS runs
	// the check once per node, except NODECHECK_BATCH_SKIP ones, with that
	// node's name and storage base (under NODECHECK_BATCH_ROOT).
	if os.Getenv("NODECHECK_BATCH_HELPER") == "1" && len(os.Args) > 2 && os.Args[1] == "--batch" {
		skip := map[string]bool{}
		for _, n := range strings.Split(os.Getenv("NODECHECK_BATCH_SKIP"), ",") {
			skip[n] = true
		}
		for _, n := range strings.Split(os.Args[2], ",") {
			if skip[n] {
				continue
			}
			base := filepath.Join(os.Getenv("NODECHECK_BATCH_ROOT"), n, "shm")
			env := func(k string) string {
				switch k {
				case "SCR_CACHE_BASE", "SCR_CNTL_BASE":
					return base
				}
				return ""
			}
			line, _ := RunStorageCheck(os.Args[4:], env, n) // [3] is the program the launch would run
			fmt.Println(line)
		}
		os.Exit(0)
	}
	if os.Getenv("NODECHECK_HELPER") == "1" && len(os.Args) > 1 && os.Args[1] == "--check-storage" {
		host := os.Getenv("SCR_NODE_NAME")
		line, ok := RunStorageCheck(os.Args[1:], os.Getenv, host)
		fmt.Println(line)
		if !ok {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDecide(t *testing.T) {
	fail := Outcome{Ran: true, Failed: true, Detail: "x"}
	pass := Outcome{Ran: true}
	tests := []struct {
		name string
		in   Inputs
		want map[string]string
	}{
		{"none down", Inputs{Nodes: []string{"a", "b"}, Probes: map[string]Result{"a": {Ping: pass, Echo: pass}, "b": {Ping: pass}}},
			map[string]string{}},
		{"specified wins over everything, even outside the allocation",
			Inputs{Nodes: []string{"a"}, Specified: []string{"a", "z"}, Excluded: []string{"a"}, RMDown: map[string]string{"a": "down"}, Probes: map[string]Result{"a": {Ping: fail}}},
			map[string]string{"a": ReasonSpecified, "z": ReasonSpecified}},
		{"excluded only inside the allocation",
			Inputs{Nodes: []string{"a", "b"}, Excluded: []string{"b", "q"}, RMDown: map[string]string{"b": "x"}},
			map[string]string{"b": ReasonExcluded}},
		{"rm before probes, with its words",
			Inputs{Nodes: []string{"a"}, RMDown: map[string]string{"a": "slurm: down*"}, Probes: map[string]Result{"a": {Ping: fail}}},
			map[string]string{"a": ReasonRM + " (slurm: down*)"}},
		{"rm down outside the allocation is ignored",
			Inputs{Nodes: []string{"a"}, RMDown: map[string]string{"q": "x"}}, map[string]string{}},
		{"ping before echo before storage",
			Inputs{Nodes: []string{"a", "b", "c"}, Probes: map[string]Result{
				"a": {Ping: fail, Echo: fail, Storage: fail},
				"b": {Ping: pass, Echo: Outcome{Ran: true, Failed: true, Detail: "timed out"}, Storage: fail},
				"c": {Ping: pass, Echo: pass, Storage: Outcome{Ran: true, Failed: true, Detail: "scr_check_node: FAIL: cache directory /dev/shm: not writable"}}}},
			map[string]string{"a": ReasonPing, "b": ReasonEcho + " (timed out)", "c": "scr_check_node: FAIL: cache directory /dev/shm: not writable"}},
		{"a check that did not run fails nobody",
			Inputs{Nodes: []string{"a"}, Probes: map[string]Result{"a": {Ping: Outcome{Detail: "no ping program"}, Echo: pass}}},
			map[string]string{}},
	}
	for _, tt := range tests {
		if got := Decide(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Decide = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSorted(t *testing.T) {
	got := Sorted(map[string]string{"n10": "", "n2": "", "a": ""})
	if !reflect.DeepEqual(got, []string{"a", "n2", "n10"}) {
		t.Fatalf("Sorted = %q", got)
	}
}

func TestParseBytes(t *testing.T) {
	for s, want := range map[string]int64{"100": 100, "1KB": 1024, "2 MB": 2 << 20, "1.5GB": 3 << 29, "1GiB": 1 << 30, "4t": 4 << 40} {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "x", "-1", "1XB"} {
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) accepted", s)
		}
	}
}

func TestCheckStorage(t *testing.T) {
	dir := t.TempDir()
	ok := Dir{Kind: "cache", Path: filepath.Join(dir, "new", "sub")}
	if err := CheckStorage([]Dir{ok}, false, "n1"); err != nil {
		t.Fatalf("fresh dir: %v", err)
	}
	if ents, _ := os.ReadDir(ok.Path); len(ents) != 0 {
		t.Errorf("test file left behind: %v", ents)
	}
	huge := Dir{Kind: "cache", Path: dir, Bytes: 1 << 62}
	err := CheckStorage([]Dir{huge}, false, "n1")
	var se *StorageError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "insufficient space: total") {
		t.Errorf("huge total: %v", err)
	}
	if err := CheckStorage([]Dir{huge}, true, "n1"); err == nil || !strings.Contains(err.Error(), "free") {
		t.Errorf("huge free: %v", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o500)
		if err := CheckStorage([]Dir{{Kind: "cntl", Path: ro}}, false, "n1"); err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("read-only dir: %v", err)
		}
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if err := CheckStorage([]Dir{{Kind: "cntl", Path: file}}, false, "n1"); err == nil {
		t.Errorf("a plain file passed as a directory")
	}
	line, pass := RunStorageCheck([]string{"--check-storage", "--cache", dir + ":1PB"}, func(string) string { return "" }, "n1")
	if pass || !strings.HasPrefix(line, "scr_check_node: FAIL: cache directory "+dir) {
		t.Errorf("RunStorageCheck = %q, %v", line, pass)
	}
	if _, _, err := ParseStorageArgs([]string{"--bogus"}, os.Getenv); err == nil {
		t.Errorf("unknown argument accepted")
	}
	dirs, _, _ := ParseStorageArgs(nil, func(k string) string { return map[string]string{"SCR_CACHE_BASE": "/c"}[k] })
	if !reflect.DeepEqual(dirs, []Dir{{Kind: "cntl", Path: "/dev/shm"}, {Kind: "cache", Path: "/c"}}) {
		t.Errorf("default dirs %v", dirs)
	}
}

// localCluster builds a local-RM cluster of n nodes under a temp root.
func localCluster(t testing.TB, n int) (root string, nodes []string, m *local.Manager) {
	root = t.TempDir()
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("n%d", i)
		nodes = append(nodes, node)
		if err := os.MkdirAll(filepath.Join(root, node, "shm"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m, err := local.New(rm.Config{Env: rm.MapEnv(map[string]string{
		"SCR_NODELIST": fmt.Sprintf("n[1-%d]", n), "SCR_LOCAL_ROOT": root})})
	if err != nil {
		t.Fatal(err)
	}
	return root, nodes, m
}

func mark(t testing.TB, root, node, file, text string) {
	if err := os.WriteFile(filepath.Join(root, node, file), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func storageArgv(dirs []Dir) []string {
	return append([]string{os.Args[0]}, StorageArgs(dirs, false)...)
}

// The whole check on a local cluster, with real processes for echo and the
// storage check: one node powered off (the RM does not know), one the RM
// reports, one with a read-only cache, one excluded, one named down.
func TestCheckLocalCluster(t *testing.T) {
	t.Setenv("NODECHECK_HELPER", "1")
	root, _, m := localCluster(t, 6)
	mark(t, root, "n2", local.PowerOffFile, "")
	mark(t, root, "n3", local.DownFile, "fan failure\n")
	if os.Geteuid() != 0 {
		os.Chmod(filepath.Join(root, "n4", "shm"), 0o500)
		defer os.Chmod(filepath.Join(root, "n4", "shm"), 0o755)
	} else {
		// root writes anywhere: make the cache a file instead.
		os.RemoveAll(filepath.Join(root, "n4", "shm"))
		os.WriteFile(filepath.Join(root, "n4", "shm"), nil, 0o644)
	}
	start := time.Now()
	rep, err := Check(context.Background(), Request{
		Manager: m, Specified: []string{"n6"}, Excluded: []string{"n5"},
		Options: Options{StorageArgv: storageArgv(nil), PingTimeout: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Check of 6 local nodes (1 powered off) took %v", time.Since(start))
	want := map[string]string{
		"n2": ReasonPing,
		"n3": ReasonRM + " (local: fan failure)",
		"n5": ReasonExcluded,
		"n6": ReasonSpecified,
	}
	n4 := rep.Down["n4"]
	delete(rep.Down, "n4")
	if !reflect.DeepEqual(rep.Down, want) {
		t.Errorf("Down = %q, want %q", rep.Down, want)
	}
	if !strings.HasPrefix(n4, "scr_check_node: FAIL: cntl directory "+filepath.Join(root, "n4", "shm")) {
		t.Errorf("n4 reason %q", n4)
	}
	if rep.RMErr != nil {
		t.Errorf("RMErr %v", rep.RMErr)
	}
	if _, probed := rep.Probes["n6"]; probed {
		t.Errorf("a node named down was probed")
	}
	if p := rep.Probes["n2"]; p.Echo.Ran || p.Storage.Ran {
		t.Errorf("echo/storage ran on a node that failed ping: %+v", p)
	}
}

// hungRM answers Nodes but never DownNodes (until its context ends).
type hungRM struct{ rm.Manager }

func (h hungRM) DownNodes(ctx context.Context) (map[string]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestHungResourceManagerDoesNotStopChecks(t *testing.T) {
	root, _, m := localCluster(t, 3)
	mark(t, root, "n1", local.PowerOffFile, "")
	rep, err := Check(context.Background(), Request{Manager: hungRM{m},
		Options: Options{Ping: m.Ping, RMTimeout: 100 * time.Millisecond, PingTimeout: 100 * time.Millisecond, Checks: []string{CheckPing, CheckEcho}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RMErr == nil {
		t.Errorf("no RMErr from a hung resource manager")
	}
	if !reflect.DeepEqual(rep.Down, map[string]string{"n1": ReasonPing}) {
		t.Errorf("Down = %q", rep.Down)
	}
}

func TestCheckWithoutNodes(t *testing.T) {
	if _, err := Check(context.Background(), Request{}); !errors.Is(err, ErrNoNodes) {
		t.Fatalf("err = %v", err)
	}
}

func TestEchoWrongAnswer(t *testing.T) {
	tr := remote.Local{}
	// A "node" whose echo says something else: use a transport that runs
	// a different program.
	p := probeNode(context.Background(), "n1", func(context.Context, string) error { return nil },
		Options{Checks: []string{CheckPing, CheckEcho}, Transport: liar{tr}}.withDefaults())
	if !p.Echo.Failed || !strings.Contains(p.Echo.Detail, "DOWN") {
		t.Fatalf("echo outcome %+v", p.Echo)
	}
}

type liar struct{ remote.Local }

func (l liar) Command(node string, argv []string) (remote.Cmd, error) {
	return remote.Cmd{Path: "echo", Args: []string{"DOWN"}}, nil
}

func TestPingUnavailableIsNotAFailure(t *testing.T) {
	p := probeNode(context.Background(), "n1", func(context.Context, string) error { return fmt.Errorf("%w: no ping", ErrUnavailable) },
		Options{Checks: []string{CheckPing}}.withDefaults())
	if p.Ping.Ran || p.Ping.Failed {
		t.Fatalf("ping outcome %+v", p.Ping)
	}
}

func TestStorageProgramMissingIsNotAnEchoFailure(t *testing.T) {
	_, _, m := localCluster(t, 1)
	tr, _ := m.Transport(context.Background())
	p := probeNode(context.Background(), "n1", m.Ping,
		Options{Transport: tr, StorageArgv: []string{"/nonexistent/scr_list_down_nodes", "--check-storage"}}.withDefaults())
	if p.Echo.Failed || !p.Storage.Failed || !strings.Contains(p.Storage.Detail, "cannot run /nonexistent/scr_list_down_nodes") {
		t.Fatalf("probe %+v", p)
	}
	if d := Decide(Inputs{Nodes: []string{"n1"}, Probes: map[string]Result{"n1": p}}); !strings.HasPrefix(d["n1"], "scr_check_node: FAIL: cannot run") {
		t.Fatalf("decision %q", d)
	}
}

// A node the resource manager reports down is not pinged to the end: its
// probe is cancelled when the answer arrives.
func TestRMDownCancelsProbe(t *testing.T) {
	root, _, m := localCluster(t, 2)
	mark(t, root, "n2", local.PowerOffFile, "")
	mark(t, root, "n2", local.DownFile, "dead\n")
	rep, err := Check(context.Background(), Request{Manager: m, Options: Options{Checks: []string{CheckPing}, PingTimeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Down["n2"] != ReasonRM+" (local: dead)" || len(rep.Down) != 1 {
		t.Fatalf("Down = %q", rep.Down)
	}
	if p := rep.Probes["n2"]; p.Ping.Ran {
		t.Errorf("n2's ping ran to the end (%+v) although the RM had reported it", p.Ping)
	}
}

// countingEcho is a transport that counts the remote commands it builds.
type countingEcho struct{ n *atomic.Int64 }

func (c countingEcho) Name() string { return "counting" }
func (c countingEcho) Command(node string, argv []string) (remote.Cmd, error) {
	c.n.Add(1)
	return remote.Cmd{Path: "echo", Args: []string{"UP"}}, nil
}

// Dead nodes waiting for their ping must not hold up the remote checks of
// live nodes: here the dead nodes' pings only give up once every live node
// has been echoed, which can only happen if the stages overlap.
func TestDeadPingsDoNotBlockLiveChecks(t *testing.T) {
	var echoed atomic.Int64
	nodes := []string{"d1", "a1", "d2", "a2", "a3", "a4"}
	ping := func(ctx context.Context, node string) error {
		if node[0] == 'a' {
			return nil
		}
		deadline := time.After(10 * time.Second)
		for echoed.Load() < 4 {
			select {
			case <-deadline:
				return errors.New("live nodes were not checked while dead pings waited")
			case <-time.After(time.Millisecond):
			}
		}
		return errors.New("no reply")
	}
	res := Probe(context.Background(), nodes, Options{Checks: []string{CheckPing, CheckEcho}, Ping: ping, PingRetries: -1,
		PingTimeout: time.Minute, Fanout: 1, PingFanout: 3, Transport: countingEcho{&echoed}})
	for _, n := range nodes {
		r := res[n]
		if n[0] == 'a' && (!r.Echo.Ran || r.Echo.Failed) {
			t.Errorf("%s: %+v", n, r)
		}
		if n[0] == 'd' && (!r.Ping.Failed || r.Ping.Detail != "no reply") {
			t.Errorf("%s: %+v", n, r.Ping)
		}
	}
}

// batcher launches the test binary's --batch helper for many nodes at once
// and falls back to the local cluster's per-node transport, counting both.
type batcher struct {
	remote.Transport
	root      string
	skip      string
	hang      bool
	batches   *atomic.Int64
	perNode   *atomic.Int64
	batchSize *atomic.Int64
}

func (b batcher) Command(node string, argv []string) (remote.Cmd, error) {
	b.perNode.Add(1)
	return b.Transport.Command(node, argv)
}

func (b batcher) BatchCommand(nodes []string, argv []string) (remote.Cmd, error) {
	b.batches.Add(1)
	b.batchSize.Add(int64(len(nodes)))
	if b.hang {
		return remote.Cmd{Path: "sleep", Args: []string{"60"}}, nil
	}
	return remote.Cmd{Path: os.Args[0], Args: append([]string{"--batch", strings.Join(nodes, ",")}, argv...),
		Env: []string{"NODECHECK_BATCH_HELPER=1", "NODECHECK_BATCH_ROOT=" + b.root, "NODECHECK_BATCH_SKIP=" + b.skip}}, nil
}

func newBatcher(t *testing.T, n int) (batcher, *local.Manager, []string) {
	root, nodes, m := localCluster(t, n)
	tr, _ := m.Transport(context.Background())
	return batcher{Transport: tr, root: root, batches: new(atomic.Int64), perNode: new(atomic.Int64), batchSize: new(atomic.Int64)}, m, nodes
}

// Live nodes are checked in launches of many nodes; a node missing from a
// launch's output (its task never ran) is checked on its own; a storage
// failure reported inside a launch is kept with its reason.
func TestBatchedChecks(t *testing.T) {
	t.Setenv("NODECHECK_HELPER", "1")
	b, m, nodes := newBatcher(t, 40)
	b.skip = "n7"
	// n9's cache is a file: its storage check fails inside the launch.
	shm := filepath.Join(b.root, "n9", "shm")
	os.RemoveAll(shm)
	os.WriteFile(shm, nil, 0o644)
	mark(t, b.root, "n3", local.PowerOffFile, "")
	rep := Probe(context.Background(), nodes, Options{Transport: b, Ping: m.Ping, StorageArgv: storageArgv(nil), BatchSize: 16})
	for _, n := range nodes {
		p := rep[n]
		switch n {
		case "n3":
			if !p.Ping.Failed || p.Echo.Ran {
				t.Errorf("n3: %+v", p)
			}
		case "n9":
			if !p.Echo.Ran || p.Echo.Failed || !p.Storage.Failed || !strings.Contains(p.Storage.Detail, "cntl directory "+shm) {
				t.Errorf("n9: %+v", p)
			}
		default:
			if !p.Echo.Ran || p.Echo.Failed || !p.Storage.Ran || p.Storage.Failed {
				t.Errorf("%s: %+v", n, p)
			}
		}
	}
	// 39 live nodes in launches of at most 16; only n7 checked on its own.
	if b.batches.Load() < 3 || b.batchSize.Load() != 39 || b.perNode.Load() != 1 {
		t.Errorf("%d launches of %d nodes in all, %d one-node checks", b.batches.Load(), b.batchSize.Load(), b.perNode.Load())
	}
}

// A launch that hangs (one bad node can do that to a whole srun step) is
// cut at BatchTimeout and its nodes are checked one by one.
func TestHungBatchFallsBack(t *testing.T) {
	t.Setenv("NODECHECK_HELPER", "1")
	b, m, nodes := newBatcher(t, 5)
	b.hang = true
	rep := Probe(context.Background(), nodes, Options{Transport: b, Ping: m.Ping, StorageArgv: storageArgv(nil), BatchTimeout: 200 * time.Millisecond})
	for _, n := range nodes {
		if p := rep[n]; !p.Echo.Ran || p.Echo.Failed || p.Storage.Failed {
			t.Errorf("%s: %+v", n, p)
		}
	}
	if b.perNode.Load() != 5 {
		t.Errorf("%d one-node checks after the hung launch, want 5", b.perNode.Load())
	}
}

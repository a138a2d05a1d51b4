package locallaunch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestPlacement(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		want    []string
		wantErr string
	}{
		{"default one per node", Options{N: 3}, []string{"node1", "node2", "node3"}, ""},
		{"blocks of two", Options{N: 5, PerNode: 2}, []string{"node1", "node1", "node2", "node2", "node3"}, ""},
		{"nodes given, spread", Options{N: 4, Nodes: []string{"a", "b"}}, []string{"a", "a", "b", "b"}, ""},
		{"nodes only", Options{Nodes: []string{"a", "b", "c"}}, []string{"a", "b", "c"}, ""},
		{"nodes and ppn", Options{Nodes: []string{"a", "b"}, PerNode: 2}, []string{"a", "a", "b", "b"}, ""},
		{"too many", Options{N: 5, Nodes: []string{"a", "b"}, PerNode: 2}, nil, "do not fit"},
		{"twice", Options{N: 2, Nodes: []string{"a", "a"}}, nil, "twice"},
		{"path in name", Options{N: 1, Nodes: []string{"../x"}}, nil, "bad node name"},
		{"negative", Options{N: -1}, nil, "negative"},
		// scr_launch -n 100000000 forked until the descriptors ran out.
		{"more ranks than open files", Options{N: 100000000}, nil, "ulimit"},
		{"more ranks per node than open files", Options{Nodes: []string{"a"}, PerNode: 100000000}, nil, "ulimit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Argv = []string{"true"}
			got, err := Placement(&o)
			if tc.wantErr != "" {
				var ue *UsageError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ue) {
					t.Fatalf("got %v, %v; want error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := Placement(&Options{N: 1}); err == nil {
		t.Fatal("no program accepted")
	}
}

func launch(t *testing.T, o Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.CacheRoot == "" {
		o.CacheRoot = t.TempDir()
	}
	o.Stdout, o.Stderr = os.Stderr, os.Stderr
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestEnvironmentPerRank(t *testing.T) {
	out := t.TempDir()
	root := t.TempDir()
	res := launch(t, Options{N: 4, PerNode: 2, CacheRoot: root, Argv: []string{"sh", "-c",
		`echo "$PMI_RANK $PMI_SIZE $PMI_FD $SCR_NODE_NAME $SCR_CACHE_BASE $SCR_CNTL_BASE $SCR_COMM_ADDR" > ` + out + `/$PMI_RANK; test -S /proc/self/fd/3 || test -e /proc/self/fd/3`}})
	if res.ExitCode() != 0 {
		t.Fatalf("exit %d: %+v", res.ExitCode(), res)
	}
	for r, node := range []string{"node1", "node1", "node2", "node2"} {
		b, err := os.ReadFile(filepath.Join(out, string(rune('0'+r))))
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(root, node, "shm")
		want := strings.Join([]string{string(rune('0' + r)), "4", "3", node, base, base, "127.0.0.1"}, " ")
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("rank %d env %q, want %q", r, got, want)
		}
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			t.Errorf("node storage %s: %v", base, err)
		}
	}
}

func TestFirstFailureKillsTheRest(t *testing.T) {
	res := launch(t, Options{N: 3, Argv: []string{"sh", "-c", `if [ "$PMI_RANK" = 1 ]; then exit 7; fi; exec sleep 60`}})
	if res.ExitCode() != 7 || res.FirstFail != 1 {
		t.Fatalf("exit %d first %d, want 7 from rank 1", res.ExitCode(), res.FirstFail)
	}
	for _, r := range []int{0, 2} {
		if !res.Ranks[r].Killed || res.Ranks[r].Signal != syscall.SIGKILL {
			t.Errorf("rank %d: %+v, want killed", r, res.Ranks[r])
		}
	}
}

func TestKeepGoing(t *testing.T) {
	res := launch(t, Options{N: 3, KeepGoing: true, Argv: []string{"sh", "-c", `exit $((PMI_RANK * 2))`}})
	// Ranks 1 and 2 fail (2 and 4); whichever ended first gives the code,
	// and nobody is killed.
	if res.FirstFail < 1 || res.ExitCode() != 2*res.FirstFail || res.Ranks[1].Code != 2 || res.Ranks[2].Code != 4 || res.Ranks[2].Killed || res.Ranks[1].Killed {
		t.Fatalf("got %+v", res)
	}
}

func TestSignalsForwarded(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	ready := t.TempDir()
	var once sync.Once
	started := 0
	var mu sync.Mutex
	res := launch(t, Options{N: 2, Signals: sigs, Argv: []string{"sh", "-c",
		`trap 'exit 9' TERM; touch ` + ready + `/$PMI_RANK; while :; do sleep 0.05; done`},
		Started: func(int, int) {
			mu.Lock()
			started++
			n := started
			mu.Unlock()
			if n == 2 {
				go func() {
					for {
						if ents, _ := os.ReadDir(ready); len(ents) == 2 {
							once.Do(func() { sigs <- syscall.SIGTERM })
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				}()
			}
		}})
	for r, rr := range res.Ranks {
		if rr.Code != 9 && !rr.Killed {
			t.Errorf("rank %d: %+v, want exit 9 from its TERM trap", r, rr)
		}
	}
	if res.ExitCode() != 9 {
		t.Fatalf("exit %d", res.ExitCode())
	}
}

func TestPowerOffFreezesNode(t *testing.T) {
	root := t.TempDir()
	pids := make(chan int, 2)
	done := make(chan *Result)
	go func() {
		done <- launch(t, Options{N: 2, CacheRoot: root, KeepGoing: true, Argv: []string{"sleep", "60"},
			Started: func(r, pid int) { pids <- pid }})
	}()
	p0, p1 := <-pids, <-pids
	if err := os.WriteFile(filepath.Join(root, "node2", "poweroff"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// node2 holds rank 1; wait until some process is stopped (state T).
	stopped := func(pid int) bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		return len(f) > 0 && f[0] == "T"
	}
	deadline := time.Now().Add(20 * time.Second)
	for !stopped(p1) && !stopped(p0) {
		if time.Now().After(deadline) {
			t.Fatal("no rank was frozen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	frozen := p1
	if stopped(p0) {
		frozen = p0
	}
	syscall.Kill(p0, syscall.SIGKILL)
	syscall.Kill(p1, syscall.SIGKILL)
	res := <-done
	if res.Ranks[1].Pid != frozen {
		t.Fatalf("frozen pid %d is not rank 1 on node2 (%+v)", frozen, res.Ranks)
	}
}

func TestProgramMissing(t *testing.T) {
	_, err := Run(context.Background(), Options{N: 2, CacheRoot: t.TempDir(), Argv: []string{"/nonexistent/prog"}})
	if err == nil || !strings.Contains(err.Error(), "start rank 0") {
		t.Fatalf("got %v, want a start error naming rank 0", err)
	}
}

// The rank count is checked against the open-file limit before anything
// is forked: with a soft limit of 1024, 1000 ranks (3 descriptors each)
// are refused at once, naming the limit; 100 fit.
func TestRankCountWithinOpenFileLimit(t *testing.T) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skip(err)
	}
	low := old
	low.Cur = min(1024, old.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	start := time.Now()
	_, err := Run(context.Background(), Options{N: 1000, Argv: []string{"true"}, CacheRoot: t.TempDir()})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "ulimit -n") {
		t.Fatalf("1000 ranks with 1024 open files: %v", err)
	}
	t.Logf("refused in %v: %v", time.Since(start), err)
	if _, err := Placement(&Options{N: 100, Argv: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
}

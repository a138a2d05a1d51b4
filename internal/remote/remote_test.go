package remote

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestRunLocalCollectsPerNode(t *testing.T) {
	tr := Local{NodeEnv: func(n string) []string { return []string{"SCR_NODE_NAME=" + n} }}
	nodes := []string{"n1", "n2", "n3"}
	res := Run(context.Background(), tr, nodes,
		[]string{"sh", "-c", `echo "UP $SCR_NODE_NAME"; echo warn >&2; [ "$SCR_NODE_NAME" != n2 ] || exit 3`}, Options{})
	if len(res) != 3 {
		t.Fatalf("got %d results", len(res))
	}
	for i, r := range res {
		if r.Node != nodes[i] {
			t.Errorf("result %d is for %s, want %s", i, r.Node, nodes[i])
		}
		if got := strings.TrimSpace(string(r.Stdout)); got != "UP "+nodes[i] {
			t.Errorf("%s: stdout %q", r.Node, got)
		}
		if strings.TrimSpace(string(r.Stderr)) != "warn" {
			t.Errorf("%s: stderr %q", r.Node, r.Stderr)
		}
	}
	if res[0].Err != nil || res[0].ExitCode != 0 {
		t.Errorf("n1: exit %d err %v", res[0].ExitCode, res[0].Err)
	}
	var ne *NodeError
	if res[1].ExitCode != 3 || !errors.As(res[1].Err, &ne) || ne.Node != "n2" {
		t.Errorf("n2: exit %d err %v", res[1].ExitCode, res[1].Err)
	}
	var ee *exec.ExitError
	if !errors.As(res[1].Err, &ee) {
		t.Errorf("n2: error does not unwrap to *exec.ExitError: %v", res[1].Err)
	}
	if !strings.Contains(res[1].Err.Error(), "n2") || !strings.Contains(res[1].Err.Error(), "warn") {
		t.Errorf("n2: error %q should name the node and stderr", res[1].Err)
	}
}

// A command whose children keep the pipes open must not hold Run past its
// timeout: the process group is killed.
func TestRunTimeoutKillsGroup(t *testing.T) {
	res := Run(context.Background(), Local{}, []string{"dead"},
		[]string{"sh", "-c", "sleep 60 & sleep 60"}, Options{Timeout: 200 * time.Millisecond})
	r := res[0]
	if !errors.Is(r.Err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", r.Err)
	}
	if r.ExitCode != -1 {
		t.Errorf("exit = %d, want -1", r.ExitCode)
	}
	if r.Duration > 10*time.Second {
		t.Errorf("Run took %v after a 200ms timeout", r.Duration)
	}
}

func TestRunCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Run(ctx, Local{}, []string{"a", "b"}, []string{"true"}, Options{})
	for _, r := range res {
		if r.Err == nil || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", r.Node, r.Err)
		}
	}
}

func TestEachBoundsFanout(t *testing.T) {
	var cur, peak, calls atomic.Int64
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		Each(context.Background(), 50, 4, func(ctx context.Context, i int) {
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			calls.Add(1)
			<-release
			cur.Add(-1)
		})
		close(done)
	}()
	// Wait until the pool is full, then let everything go.
	for peak.Load() < 4 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-done
	if peak.Load() != 4 || calls.Load() != 50 {
		t.Fatalf("peak %d calls %d, want 4 and 50", peak.Load(), calls.Load())
	}
}

func TestOutputCapped(t *testing.T) {
	r := RunOne(context.Background(), Local{}, "n", []string{"sh", "-c", "head -c 100000 /dev/zero"}, Options{MaxOutput: 1000})
	if r.Err != nil || len(r.Stdout) != 1000 {
		t.Fatalf("err %v, kept %d bytes", r.Err, len(r.Stdout))
	}
}

func TestTransportCommands(t *testing.T) {
	argv := []string{"echo", "it's", "UP"}
	c, _ := SSH{ConnectTimeout: 1500 * time.Millisecond}.Command("n7", argv)
	want := []string{"-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "StrictHostKeyChecking=no",
		"-o", "LogLevel=ERROR", "-T", "n7", "--", `echo 'it'\''s' UP`}
	if c.Path != "ssh" || !reflect.DeepEqual(c.Args, want) {
		t.Errorf("ssh: %s %q", c.Path, c.Args)
	}
	c, _ = Srun{JobID: "42"}.Command("n7", argv)
	if c.Path != "srun" || !reflect.DeepEqual(c.Args, []string{"-N1", "-n1", "-w", "n7", "--overlap", "--jobid=42", "echo", "it's", "UP"}) {
		t.Errorf("srun: %s %q", c.Path, c.Args)
	}
	f := FluxExec{Ranks: map[string]int{"fnode2": 2}}
	c, _ = f.Command("fnode2", argv)
	if c.Path != "flux" || !reflect.DeepEqual(c.Args, []string{"exec", "-r", "2", "echo", "it's", "UP"}) {
		t.Errorf("flux: %s %q", c.Path, c.Args)
	}
	if _, err := f.Command("fnode9", argv); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("flux unknown node: %v", err)
	}
}

// ssh to a loopback port where nothing listens fails at once, as a
// NodeError naming the node, never hangs.
func TestSSHRefusedIsNodeError(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client installed")
	}
	tr := SSH{ConnectTimeout: time.Second, Extra: []string{"-p", "1"}}
	r := RunOne(context.Background(), tr, "127.0.0.1", []string{"echo", "UP"}, Options{Timeout: 5 * time.Second})
	var ne *NodeError
	if !errors.As(r.Err, &ne) || ne.Node != "127.0.0.1" || ne.Transport != "ssh" {
		t.Fatalf("err = %v", r.Err)
	}
	if strings.Contains(string(r.Stdout), "UP") {
		t.Fatalf("stdout %q", r.Stdout)
	}
}

// A command that exits 0 while a grandchild keeps stdout open is a
// success with the output that arrived, not a failure (and not a hang);
// the grandchild is killed.
func TestExitedWithPipeHeldOpen(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	r := RunOne(context.Background(), Local{}, "n", []string{"sh", "-c", "echo UP; sleep 30 & echo $! > " + pidfile}, Options{Timeout: 10 * time.Second})
	if r.Err != nil || r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != "UP" {
		t.Fatalf("exit %d out %q err %v", r.ExitCode, r.Stdout, r.Err)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The kill is sent before RunOne returns; wait for the zombie-free exit.
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBatchCommands(t *testing.T) {
	var b Batcher = Srun{JobID: "7"}
	c, err := b.BatchCommand([]string{"n1", "n2", "n5"}, []string{"check", "--label"})
	want := []string{"-N3", "-n3", "--ntasks-per-node=1", "-w", "n1,n2,n5", "--overlap", "--kill-on-bad-exit=0", "--jobid=7", "check", "--label"}
	if err != nil || c.Path != "srun" || !reflect.DeepEqual(c.Args, want) {
		t.Errorf("srun batch: %q %v", c.Args, err)
	}
	b = FluxExec{Ranks: map[string]int{"fnode0": 0, "fnode2": 2}}
	c, err = b.BatchCommand([]string{"fnode0", "fnode2"}, []string{"check"})
	if err != nil || !reflect.DeepEqual(c.Args, []string{"exec", "-r", "0,2", "check"}) {
		t.Errorf("flux batch: %q %v", c.Args, err)
	}
	if _, err := b.BatchCommand([]string{"fnode9"}, []string{"check"}); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("flux batch, unknown node: %v", err)
	}
}

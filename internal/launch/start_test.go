package launch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shAdapter runs a shell script as the "launcher", for real-process tests.
type shAdapter struct{ canceled *[]string }

func (shAdapter) Name() string                   { return "sh" }
func (shAdapter) WantedNodes([]string) int       { return 0 }
func (shAdapter) Build(Request) (Command, error) { return Command{}, nil }
func (a shAdapter) Cancel(_ context.Context, _ Runner, job string, _ Command, id string) error {
	*a.canceled = append(*a.canceled, job+"/"+id)
	return nil
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			return strings.TrimSpace(string(b))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s never written", path)
	return ""
}

// running reports whether pid is a live process (a zombie waiting to be
// reaped by a slow init counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func TestStartKillReachesWholeProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	var canceled []string
	a := shAdapter{canceled: &canceled}
	// The launcher forks a "rank" and waits for it, like srun would.
	cmd := Command{Argv: []string{"sh", "-c", "sleep 300 & echo $! > " + pidFile + "; wait"}}
	p, err := Start(context.Background(), a, cmd, StartOptions{Env: os.Environ(), JobID: "42"})
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(waitFile(t, pidFile))
	if !alive(child) {
		t.Fatalf("child %d not running", child)
	}
	if err := p.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("launcher still running after Kill")
	}
	if code := p.ExitCode(); code != 128+9 {
		t.Errorf("exit code %d, want 137", code)
	}
	// The child is reaped by init once killed; wait for it to vanish.
	deadline := time.Now().Add(10 * time.Second)
	for alive(child) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if alive(child) {
		t.Errorf("rank %d survived the step kill", child)
	}
	if len(canceled) != 1 || canceled[0] != "42/" {
		t.Errorf("resource-manager cancel calls %q", canceled)
	}
	if err := p.Kill(context.Background()); err != nil || len(canceled) != 1 {
		t.Errorf("second Kill acted again: %v %q", err, canceled)
	}
}

func TestStartExitCodeAndOutput(t *testing.T) {
	var out bytes.Buffer
	var canceled []string
	p, err := Start(context.Background(), shAdapter{&canceled}, Command{Argv: []string{"sh", "-c", "echo hi $SCR_RUN_ID; exit 3"}},
		StartOptions{Env: []string{"SCR_RUN_ID=5", "PATH=" + os.Getenv("PATH")}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 3 {
		t.Fatalf("exit %d", code)
	}
	if out.String() != "hi 5\n" {
		t.Fatalf("output %q", out.String())
	}
}

func TestStartMissingLauncher(t *testing.T) {
	var canceled []string
	_, err := Start(context.Background(), shAdapter{&canceled}, Command{Argv: []string{"/nonexistent/srun"}}, StartOptions{})
	var se *StartError
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/srun") {
		t.Fatalf("err = %v", err)
	}
	if !asStartError(err, &se) {
		t.Fatalf("not a StartError: %T", err)
	}
}

func asStartError(err error, se **StartError) bool {
	e, ok := err.(*StartError)
	*se = e
	return ok
}

// A fake flux: submit prints an id, job attach waits for a cancel marker,
// cancel writes it. Exercises Submit + attach + Cancel with real processes.
func TestFluxSubmitAttachCancel(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "flux")
	script := `#!/bin/sh
d=` + dir + `
case "$1" in
submit) shift; echo "$@" > $d/submitted; echo "f3VPu3vw";;
job) echo "$3" > $d/attached; while [ ! -e $d/canceled ]; do sleep 0.01; done; exit 143;;
cancel) echo "$2" > $d/canceled;;
esac
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Flux{}.Build(Request{Args: []string{"run", "-N2", "./app"}, Nodes: []string{"a", "b", "c"}, Down: []string{"b"}, JobID: "J", RunID: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Flux{}, c, StartOptions{Env: os.Environ(), Path: fake, Run: ExecRunner})
	if err != nil {
		t.Fatal(err)
	}
	if p.StepID() != "f3VPu3vw" {
		t.Fatalf("step id %q", p.StepID())
	}
	if got := waitFile(t, filepath.Join(dir, "attached")); got != "f3VPu3vw" {
		t.Fatalf("attached to %q", got)
	}
	if got := waitFile(t, filepath.Join(dir, "submitted")); got != "--requires=-host:b --job-name=scr.J.2 -N2 ./app" {
		t.Fatalf("submitted %q", got)
	}
	// Kill: SIGKILL the attach, then `flux cancel ID` with the same binary.
	if err := p.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if got := waitFile(t, filepath.Join(dir, "canceled")); got != "f3VPu3vw" {
		t.Fatalf("canceled %q", got)
	}
}

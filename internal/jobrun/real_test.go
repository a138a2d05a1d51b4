package jobrun

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/launch"
)

// shLauncher runs the user's args as a shell script: a real launcher
// process with real "ranks" (children), for the loop's real-process test.
type shLauncher struct{}

func (shLauncher) Name() string             { return "sh" }
func (shLauncher) WantedNodes([]string) int { return 2 }
func (shLauncher) Build(r launch.Request) (launch.Command, error) {
	return launch.Command{Argv: append([]string{"sh", "-c"}, r.Args...), Exclude: r.Down}, nil
}
func (shLauncher) Cancel(context.Context, launch.Runner, string, launch.Command, string) error {
	return nil
}

func TestRealProcessesNodeLossRelaunch(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "rank.pid")
	// Run 1: fork a rank that hangs, then report in. Run 2: report in,
	// exit 0. The rank's pid is written before the step reports in, so
	// the kill that follows the confirmation cannot come before it.
	script := `if [ "$SCR_RUN_ID" = 1 ]; then sleep 300 & echo $! > ` + pidFile + `; fi
printf '{"time":"2026-01-01T00:00:00Z","source":"library","event":"started","run":%s,"ranks":2,"nodes":["n1","n2"]}\n' "$SCR_RUN_ID" >> "$SCR_PREFIX/.scr/timeline"
if [ "$SCR_RUN_ID" = 1 ]; then wait; fi
exit 0`
	if err := os.MkdirAll(filepath.Join(dir, ".scr"), 0o700); err != nil {
		t.Fatal(err)
	}
	log := &syncWriter{w: new(bytes.Buffer)}
	o := Options{
		Prefix: dir, JobID: "1", Nodes: []string{"n1", "n2", "n3"}, Adapter: shLauncher{},
		Args: []string{script}, Log: log, Down: downOnceFile{path: pidFile, node: "n2"},
		Runs: 2, WatchInterval: 20 * time.Millisecond, Poll: 5 * time.Millisecond, LaunchTimeout: 10 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.LastExit != 0 || res.Down["n2"] == "" {
		t.Fatalf("result %+v\n%s", res, log.w)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if running(pid) {
		t.Fatalf("rank %d of the killed step still runs", pid)
	}
}

// downOnceFile reports node down once path exists: the node fails after
// run 1 forked its rank, however slowly a loaded machine starts it (a
// count of checks raced the shell).
type downOnceFile struct{ path, node string }

func (d downOnceFile) DownNodes(_ context.Context, _ []string, sticky map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range sticky {
		out[k] = v
	}
	if _, err := os.Stat(d.path); err == nil {
		out[d.node] = "Failed to ping"
	}
	return out, nil
}

// running reports whether pid is a live process (a zombie waiting to be
// reaped by a slow init counts as dead).
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

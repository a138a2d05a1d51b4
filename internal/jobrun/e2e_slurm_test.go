package jobrun_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/vcluster"
)

// TestSlurmStepKillAndRelaunch runs scr_srun in a real Slurm allocation of
// the virtual cluster (3 nodes, job on 2, --no-kill, production-like Slurm
// timeouts): the step is named so that `squeue -s` finds it; node2 is
// powered off under the step; scr_run's node check must kill the step
// (SIGKILL + scancel), relaunch with --exclude=node2 on node1+node3 at once,
// and the relaunch must start although the killed step still holds node1.
// The program is a shell script that reports in like the library's rank 0.
func TestSlurmStepKillAndRelaunch(t *testing.T) {
	bin := os.Getenv("SCR_BIN")
	if os.Getenv("SCR_E2E") == "1" && bin == "" {
		t.Fatal("SCR_BIN must name the built commands (make build)")
	}
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, BinDir: bin, Name: "jobrun"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pfx := filepath.Join(c.SharedDir(), "prefix")
	// .scr must be ours and not writable by others (it is checked).
	if err := os.MkdirAll(filepath.Join(pfx, ".scr"), 0o700); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(c.SharedDir(), "app.sh")
	appText := `#!/bin/sh
if [ "$SLURM_PROCID" = 0 ]; then
  printf '{"time":"%s","source":"library","event":"started","run":%s,"ranks":2}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$SCR_RUN_ID" >> "$SCR_PREFIX/.scr/timeline"
fi
if [ "$SCR_RUN_ID" = 1 ]; then exec sleep 600; fi
exit 0
`
	if err := os.WriteFile(app, []byte(appText), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(c.SharedDir(), "job.out")
	script := fmt.Sprintf(`#!/bin/sh
export SCR_PREFIX=%s SCR_RUNS=3 SCR_WATCH_INTERVAL=1 SCR_NODE_TESTS=ping
scr_srun -N2 -n2 %s
echo "scr_srun exit $?"
`, pfx, app)
	job, err := c.Sbatch(ctx, script, "-N3", "--no-kill", "--no-requeue", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	_, _, err = prefix.WaitTimeline(wctx, pfx, 0, 20*time.Millisecond, func(e prefix.Event) bool { return e.Event == "started" && e.Run == 1 })
	wcancel()
	if err != nil {
		b, _ := os.ReadFile(out)
		t.Fatalf("run 1 never started: %v\n%s", err, b)
	}
	// The step carries scr_run's name: this is how the kill finds it.
	steps, err := c.Exec(ctx, "node1", []string{"squeue", "-h", "-s", "-j", job, "-o", "%i %j %N"}, nil)
	if err != nil || !strings.Contains(string(steps), job+".0 scr."+job+".1 ") {
		t.Fatalf("squeue -s: %v\n%s", err, steps)
	}
	// Power off a node of the step other than node1, where the batch
	// script (and so scr_run) runs.
	on := ""
	for _, line := range strings.Split(strings.TrimSpace(string(steps)), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "scr."+job+".1" {
			nodes, err := hostlist.Expand(f[2])
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				if n != "node1" {
					on = n
				}
			}
		}
	}
	if on == "" {
		t.Fatalf("no step node besides node1:\n%s", steps)
	}
	at, err := c.PowerOff(ctx, on)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel = context.WithTimeout(ctx, 2*time.Minute)
	started2, _, err := prefix.WaitTimeline(wctx, pfx, 0, 20*time.Millisecond, func(e prefix.Event) bool { return e.Event == "started" && e.Run == 2 })
	wcancel()
	b, _ := os.ReadFile(out)
	if err != nil {
		t.Fatalf("run 2 never started: %v\n%s", err, b)
	}
	// The batch script ends when scr_srun does; the job then stays
	// COMPLETING until Slurm declares the dead node down.
	if _, err := c.WaitJob(ctx, job, func(s string) bool { return s == "COMPLETED" || s == "COMPLETING" }); err != nil {
		t.Fatalf("job: %v\n%s", err, b)
	}
	if err := waitContains(ctx, out, "scr_srun exit"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(out)
	evs, _ := prefix.ReadTimeline(pfx)
	var kill time.Time
	for _, e := range evs {
		if e.Event == "step_kill" && e.Run == 1 {
			kill = e.Time
		}
		if e.Event == "launch" && e.Run == 2 {
			if ex, _ := e.Fields["exclude"].([]any); len(ex) != 1 || ex[0] != on {
				t.Errorf("relaunch excluded %v, want [%s]", e.Fields["exclude"], on)
			}
		}
	}
	text := string(b)
	if kill.IsZero() || strings.Contains(text, "warning") || !strings.Contains(text, "scr_srun exit 0") {
		t.Fatalf("no clean kill or no success:\n%s", text)
	}
	t.Logf("power-off of %s -> step killed %.2f s -> run 2 started %.2f s\n%s", on, kill.Sub(at).Seconds(), started2.Time.Sub(at).Seconds(), text)
}

func waitContains(ctx context.Context, path, text string) error {
	for {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
			return nil
		}
		select {
		case <-ctx.Done():
			b, _ := os.ReadFile(path)
			return fmt.Errorf("%s never said %q: %w\n%s", path, text, ctx.Err(), b)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

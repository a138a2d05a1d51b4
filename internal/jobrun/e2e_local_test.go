package jobrun_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// TestLocalClusterNodeLoss runs the real commands on the local simulated
// cluster: scr_run launches test_api with scr_launch on 3 of 4 nodes; once
// the first checkpoint is complete node n2 is "powered off" (its ranks
// freeze, it stops answering pings); scr_run must kill the step, relaunch on
// n1,n3,n4, the ranks restart from the cache (rebuilt with XOR), and postrun
// scavenges the last checkpoint. Needs SCR_E2E=1 and SCR_BIN (make build).
func TestLocalClusterNodeLoss(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("local-cluster e2e test: set SCR_E2E=1 and SCR_BIN to the built commands (make test does)")
	}
	bin := os.Getenv("SCR_BIN")
	for _, b := range []string{"scr_run", "scr_launch", "test_api", "scr_postrun", "scr_list_down_nodes"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("SCR_BIN=%q: %s missing (make build): %v", bin, b, err)
		}
	}
	dir := t.TempDir()
	root, pfx := filepath.Join(dir, "root"), filepath.Join(dir, "prefix")
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		if err := os.MkdirAll(filepath.Join(root, n, "shm"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(pfx, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "scr_run"), "scr_launch", "-n", "3", "--nodes", "n1,n2,n3",
		"test_api", "--size", "256k", "--times", "6", "--seconds", "1")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "SCR_NODELIST=n[1-4]", "SCR_LOCAL_ROOT="+root,
		"SCR_JOB_ID=5", "SCR_PREFIX="+pfx, "SCR_RUNS=3", "SCR_COPY_TYPE=XOR", "SCR_FLUSH=0", "SCR_CACHE_SIZE=2",
		"SCR_WATCH_INTERVAL=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	_, _, err := prefix.WaitTimeline(wctx, pfx, 0, 20*time.Millisecond, func(e prefix.Event) bool {
		return e.Event == "checkpoint" && e.Run == 1
	})
	wcancel()
	if err != nil {
		cmd.Process.Kill()
		<-done
		t.Fatalf("no checkpoint in run 1: %v\n%s", err, out.String())
	}
	off := time.Now()
	if err := os.WriteFile(filepath.Join(root, "n2", "poweroff"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if err != nil {
		t.Fatalf("scr_run: %v\n%s", err, out.String())
	}
	evs, err := prefix.ReadTimeline(pfx)
	if err != nil {
		t.Fatal(err)
	}
	// Run 1 ends either by scr_run's kill (its node check saw n2 first) or
	// by the ranks themselves (comm's heartbeat saw the lost peer first).
	var kill, started2, scavenged time.Time
	var relaunch prefix.Event
	for _, e := range evs {
		switch {
		case (e.Event == "step_kill" || e.Event == "step_exit") && e.Run == 1 && kill.IsZero():
			kill = e.Time
			if r, _ := e.Fields["reason"].(string); e.Event == "step_kill" && !strings.Contains(r, "n2") {
				t.Errorf("step killed for %q, want node n2", r)
			}
		case e.Event == "launch" && e.Run == 2:
			relaunch = e
		case e.Event == "started" && e.Run == 2:
			started2 = e.Time
		case e.Event == "scavenge":
			scavenged = e.Time
		}
	}
	if kill.IsZero() || started2.IsZero() || scavenged.IsZero() {
		t.Fatalf("timeline lacks the end of run 1, started(run 2) or scavenge:\n%s", out.String())
	}
	if ex, _ := relaunch.Fields["exclude"].([]any); len(ex) != 1 || ex[0] != "n2" {
		t.Errorf("relaunch excluded %v, want [n2]", relaunch.Fields["exclude"])
	}
	if !strings.Contains(out.String(), "--nodes n1,n3,n4") || !strings.Contains(out.String(), "Restarting from checkpoint") {
		t.Errorf("relaunch did not use the spare or did not restart:\n%s", out.String())
	}
	t.Logf("power-off -> run 1 ended %.2f s, -> run 2 started %.2f s (SCR_WATCH_INTERVAL=1)",
		kill.Sub(off).Seconds(), started2.Sub(off).Seconds())
}

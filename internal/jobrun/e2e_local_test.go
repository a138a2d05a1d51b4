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
	bin, root, pfx := localCluster(t, []string{"n1", "n2", "n3", "n4"}, "scr_run", "scr_launch", "test_api", "scr_postrun", "scr_list_down_nodes")
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

// TestLocalRunAndRestartCommands: SCR's scr_run --run-cmd / --restart-cmd
// with the real scr_have_restart on the local cluster. The first job has
// no checkpoint (the run command runs); the second finds the first job's
// newest checkpoint in the caches and runs the restart command with
// SCR_CKPT_NAME replaced by its name.
func TestLocalRunAndRestartCommands(t *testing.T) {
	bin, root, pfx := localCluster(t, []string{"n1", "n2", "n3"}, "scr_run", "scr_launch", "test_api", "scr_have_restart", "scr_halt")
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "SCR_NODELIST=n[1-3]", "SCR_LOCAL_ROOT="+root,
		"SCR_JOB_ID=6", "SCR_PREFIX="+pfx, "SCR_COPY_TYPE=XOR", "SCR_FLUSH=0", "SCR_NODE_TESTS=ping", "SCR_LOG_ENABLE=1")
	job := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "scr_run"), "scr_launch", "-n", "2", "--nodes", "n1,n2",
			"--run-cmd=test_api --size 64k --times 1", "-rs", "test_api --size 64k --times 1 --current SCR_CKPT_NAME")
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("scr_run: %v\n%s", err, out)
		}
		// The application called Finalize: clear the halt file for the
		// next job, as a user does between jobs of one allocation.
		if b, err := exec.Command(filepath.Join(bin, "scr_halt"), "-r", pfx).CombinedOutput(); err != nil {
			t.Fatalf("scr_halt -r: %v: %s", err, b)
		}
		return string(out)
	}
	out := job()
	if !strings.Contains(out, "restart check: no checkpoint to restart from") || !strings.Contains(out, "test_api --size 64k --times 1\n") ||
		strings.Contains(out, "Restarting from") {
		t.Fatalf("first job: want the run command:\n%s", out)
	}
	out = job()
	if !strings.Contains(out, "restart check: checkpoint ckpt.2") || !strings.Contains(out, "--current ckpt.2") ||
		!strings.Contains(out, "Restarting from checkpoint named ckpt.2") {
		t.Fatalf("second job: want the restart command with ckpt.2:\n%s", out)
	}
	// scr_run's part of SCR's text log.
	b, err := os.ReadFile(prefix.LogPath(pfx))
	if err != nil || strings.Count(string(b), "event=RUN_START, note=\"run=1\"") != 2 || !strings.Contains(string(b), "event=RUN_END") ||
		!strings.Contains(string(b), "event=SCAVENGE_END, dset=2, secs=") {
		t.Errorf("text log: %v\n%s", err, b)
	}
}

// localCluster skips unless SCR_E2E=1, checks that SCR_BIN holds the
// commands, and makes the nodes' storage (root/<node>/shm) and a prefix.
func localCluster(t *testing.T, nodes []string, commands ...string) (bin, root, pfx string) {
	t.Helper()
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("local-cluster e2e test: set SCR_E2E=1 and SCR_BIN to the built commands (make test does)")
	}
	bin = os.Getenv("SCR_BIN")
	for _, b := range commands {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("SCR_BIN=%q: %s missing (make build): %v", bin, b, err)
		}
	}
	dir := t.TempDir()
	root, pfx = filepath.Join(dir, "root"), filepath.Join(dir, "prefix")
	for _, n := range append(nodes, "") {
		p := filepath.Join(root, n, "shm")
		if n == "" {
			p = pfx
		}
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return bin, root, pfx
}

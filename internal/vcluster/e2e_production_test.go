package vcluster_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// With production timeouts Slurm does not notice a dead node for minutes.
// This test pins down what srun does meanwhile, which scr_run relies on
// (doc/vcluster.md, "srun under power-off"): a task exiting on a live node
// does not make srun return; SIGKILL of srun returns at once; a new step
// over the surviving nodes starts at once only with --overlap.
func TestProductionTimeoutsStepOnDeadNode(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, Timeouts: vcluster.TimeoutsProduction})
	ctx := ctxT(t, 2*time.Minute)
	job, err := c.Salloc(ctx, "-N3", "-k")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(c.SharedDir(), "prod")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// Task 0 (node2) exits 75 once the test creates "go"; task 1 (node3)
	// sleeps.
	task := `touch task.$SLURM_PROCID
if [ "$SLURM_PROCID" = 0 ]; then while [ ! -e go ]; do sleep 0.05; done; exit 75; fi
exec sleep 600`
	srunCtx, cancelSrun := context.WithCancel(ctx)
	defer cancelSrun()
	srun := c.CommandDir(srunCtx, "node1", dir, []string{"srun", "--jobid=" + job, "-N2", "-n2", "-w", "node2,node3", "sh", "-c", task}, nil)
	stderr, err := srun.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srun.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	lines := make(chan string, 16)
	go func() { // ends at EOF of srun's stderr
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var waitErr error
	go func() { waitErr = srun.Wait(); close(exited) }() // ends when srun (nsenter) exits

	for _, f := range []string{"task.0", "task.1"} {
		if err := waitFile(ctxT(t, 30*time.Second), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	off, err := c.PowerOff(ctx, "node3")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// (a) srun reports the exit on node2 ...
	var taskExit time.Time
	for taskExit.IsZero() {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("srun closed stderr before reporting task 0's exit")
			}
			t.Logf("srun: %s", l)
			if strings.Contains(l, "task 0: Exited with exit code 75") {
				taskExit = time.Now()
			}
		case <-ctx.Done():
			t.Fatal("srun never reported task 0's exit")
		}
	}
	t.Logf("poweroff -> task on node2 exited 75 and srun reported it: %v", taskExit.Sub(off).Round(time.Millisecond))
	// ... but keeps waiting for the dead node3.
	select {
	case <-exited:
		t.Fatalf("srun returned %v after task 0 exited (%v): Slurm no longer waits for the dead node; update doc/vcluster.md", time.Since(taskExit), waitErr)
	case <-time.After(3 * time.Second):
		t.Logf("srun still running %v after task 0 exited (node3 dark, Slurm unaware)", time.Since(taskExit).Round(time.Millisecond))
	}
	if st, err := c.SlurmState(ctx, "node3"); err != nil || vcluster.IsDown(st) {
		t.Fatalf("node3 %+v %v: with production timeouts Slurm should not have marked it DOWN yet", st, err)
	}

	// (b) SIGKILL of srun returns control at once.
	kill := time.Now()
	if err := syscall.Kill(-srun.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Logf("SIGKILL -> srun gone: %v", time.Since(kill).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("srun still running 10 s after SIGKILL")
	}

	// A step without --overlap cannot start: the old step still holds node2.
	var busy bytes.Buffer
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	plain := c.CommandDir(pctx, "node1", dir, []string{"srun", "-v", "--jobid=" + job, "-N2", "-n2", "--exclude=node3", "hostname"}, nil)
	plain.Stdout, plain.Stderr = &busy, &busy
	err = plain.Run()
	cancel()
	if err == nil {
		t.Logf("note: a step without --overlap started at once: %s", busy.String())
	} else {
		t.Logf("step without --overlap did not start within 3 s (%v); last line: %s", err, lastLine(busy.String()))
	}

	// With --overlap the relaunch starts at once.
	start := time.Now()
	out, err := c.Exec(ctx, "node1", []string{"srun", "--jobid=" + job, "--overlap", "-N2", "-n2", "--exclude=node3", "hostname"}, nil)
	if err != nil {
		t.Fatalf("relaunch with --overlap: %v", err)
	}
	hosts := strings.Fields(string(out))
	if len(hosts) != 2 || hosts[0] == hosts[1] || strings.Contains(string(out), "node3") {
		t.Errorf("relaunch ran on %v, want node1 and node2", hosts)
	}
	t.Logf("relaunch srun --overlap --exclude=node3 done in %v", time.Since(start).Round(time.Millisecond))
	if state, _, err := c.JobState(ctx, job); err != nil || state != "RUNNING" {
		t.Errorf("allocation %s is %q (%v), want RUNNING", job, state, err)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

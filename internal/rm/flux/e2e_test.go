package flux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/jobid"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/flux"
	"github.com/scr-go/scr/internal/rm/rmtest"
	"github.com/scr-go/scr/internal/vcluster"
)

// TestE2ELiveFlux runs against a live Flux system instance (vcluster --rm
// flux, fast timeouts: tcp_user_timeout 2 s; 10 s in the allocation, a
// window to act in before Flux notices) with a 4-node allocation `flux
// batch -N4 -o exit-timeout=none --conf=tbon.topo=kary:0`, whose script
// runs test_api twice with plain
// `flux run` (no scr_run): each run is a Flux job of its own, and the second
// must restart from the first one's checkpoint in the node caches. Then:
//   - the conformance suite from inside the allocation, with the real
//     environments of the batch script and of a task of each run;
//   - node4 powered off, Flux not yet aware: flux exec to every node of the
//     allocation (the transport of node checks and scavenge) ends within
//     its timeout, the live nodes answer, node4 times out; scr_postrun
//     scavenges the second run's last checkpoint from the live nodes'
//     caches in bounded time;
//   - once Flux marks node4 offline, DownNodes reports it and flux exec to
//     it fails at once.
func TestE2ELiveFlux(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 4, RM: vcluster.RMFlux, Timeouts: vcluster.TimeoutsFast})
	bin := os.Getenv("SCR_BIN")
	if _, err := os.Stat(filepath.Join(bin, "test_api")); err != nil {
		t.Fatalf("SCR_BIN=%q: test_api missing (make build)", bin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sh := c.SharedDir()
	pfx := filepath.Join(sh, "prefix")
	if err := os.MkdirAll(pfx, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
export SCR_PREFIX=%[1]s SCR_COPY_TYPE=XOR SCR_FLUSH=0
env > %[2]s/batch.env.tmp && mv %[2]s/batch.env.tmp %[2]s/batch.env
flux run -N2 -n2 test_api --size 1m --times 2 > %[2]s/run1.out 2>&1
flux run -N2 -n2 test_api --size 1m --times 1 > %[2]s/run2.out 2>&1
flux run -N1 -n1 env > %[2]s/task.env
touch %[2]s/runs.done
exec sleep 600
`, pfx, sh)
	alloc, err := c.FluxBatch(ctx, script, "-N4", "-o", "exit-timeout=none", "--conf=tbon.topo=kary:0",
		"--conf=tbon.tcp_user_timeout=10s", "--output="+filepath.Join(sh, "batch.out"))
	if err != nil {
		t.Fatal(err)
	}
	waitFile(ctx, t, filepath.Join(sh, "runs.done"), filepath.Join(sh, "batch.out"))
	run1, _ := os.ReadFile(filepath.Join(sh, "run1.out"))
	run2, _ := os.ReadFile(filepath.Join(sh, "run2.out"))
	t.Logf("allocation %s\nrun 1:\n%s\nrun 2:\n%s", alloc, run1, run2)
	if !strings.Contains(string(run2), "Restarting from checkpoint named ckpt.3") {
		t.Errorf("the second flux run in the allocation did not restart from the first run's last checkpoint (ckpt.3) in cache")
	}

	uri, err := c.FluxJobURI(ctx, alloc)
	if err != nil {
		t.Fatal(err)
	}
	batchEnv := parseEnvFile(t, filepath.Join(sh, "batch.env"))
	taskEnv := parseEnvFile(t, filepath.Join(sh, "task.env"))
	if taskEnv["FLUX_JOB_ID"] == "" || jobid.Flux(taskEnv["FLUX_JOB_ID"]) == jobid.Flux(alloc) {
		t.Fatalf("a task's FLUX_JOB_ID %q: want its own job, not the allocation %s", taskEnv["FLUX_JOB_ID"], alloc)
	}
	// The adapter's commands run on node1 inside the allocation, as from
	// the batch script.
	env := map[string]string{"FLUX_URI": uri, "FLUX_ENCLOSING_ID": batchEnv["FLUX_ENCLOSING_ID"]}
	onNode1 := func(ctx context.Context, argv []string) ([]byte, error) {
		var out, errb bytes.Buffer
		cmd := c.Command(ctx, "node1", argv, []string{"FLUX_URI=" + uri})
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			code := -1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			return out.Bytes(), &rm.CmdError{Argv: argv, ExitCode: code, Stderr: strings.TrimSpace(errb.String()), Err: err}
		}
		return out.Bytes(), nil
	}
	newM := func(ctx context.Context) (rm.Manager, error) {
		return flux.New(ctx, rm.Config{Env: rm.MapEnv(env), Run: onNode1, CommandTimeout: 15 * time.Second})
	}
	nodes := []string{"node1", "node2", "node3", "node4"}
	want := jobid.Flux(alloc)
	rmtest.Run(t, []rmtest.Case{{Name: "live-healthy", New: newM, JobID: want, Nodes: nodes, AnyEnd: true,
		CacheEnvs: []map[string]string{batchEnv, taskEnv}}})

	// node4 dies; Flux has not noticed yet.
	m, _ := newM(ctx)
	tr, err := m.Transport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fx := tr.(remote.FluxExec)
	if fx.Program, err = vcluster.FluxProgram(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FLUX_URI", uri) // flux exec runs here, against node1's broker of the allocation
	at, err := c.PowerOff(ctx, "node4")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := remote.Run(ctx, fx, nodes, []string{"hostname"}, remote.Options{Timeout: 5 * time.Second})
	took := time.Since(start)
	t.Logf("flux exec hostname on %v, %.1f s after node4's power-off: %.2f s", nodes, start.Sub(at).Seconds(), took.Seconds())
	for _, r := range res {
		t.Logf("  %s: rc %d err %v out %q", r.Node, r.ExitCode, r.Err, strings.TrimSpace(string(r.Stdout)))
		switch {
		case r.Node == "node4" && (r.Err == nil || r.ExitCode == 0):
			t.Errorf("flux exec on the powered-off node4 succeeded: %+v", r)
		case r.Node != "node4" && (r.Err != nil || strings.TrimSpace(string(r.Stdout)) != r.Node):
			t.Errorf("flux exec on the live %s: %v %q", r.Node, r.Err, r.Stdout)
		}
	}
	if took > 30*time.Second {
		t.Errorf("flux exec with a dead node in the allocation took %v: not bounded by its 5 s timeout", took)
	}

	// scr_postrun from the batch node, as at the end of a job script: it
	// checks the nodes (ping, then echo and storage through flux exec on
	// the nodes that answer) and copies from each live node's cache.
	start = time.Now()
	pcmd := c.Command(ctx, "node1", []string{"scr_postrun", "--json"}, []string{"FLUX_URI=" + uri,
		"FLUX_ENCLOSING_ID=" + batchEnv["FLUX_ENCLOSING_ID"], "SCR_PREFIX=" + pfx, "SCR_COPY_TYPE=XOR"})
	var pout, perr bytes.Buffer
	pcmd.Stdout, pcmd.Stderr = &pout, &perr
	perrRun := pcmd.Run()
	took = time.Since(start)
	t.Logf("scr_postrun %.1f s after node4's power-off: %.2f s, %v\n%s%s", start.Sub(at).Seconds(), took.Seconds(), perrRun, pout.String(), perr.String())
	if perrRun != nil || !strings.Contains(pout.String(), `"current":"ckpt.5"`) {
		t.Errorf("scr_postrun with a dead node in the allocation did not scavenge ckpt.5: %v", perrRun)
	}
	if took > 60*time.Second {
		t.Errorf("scr_postrun with a dead node in the allocation took %v", took)
	}
	if off, err := c.FluxOffline(ctx); err == nil && len(off) > 0 {
		t.Logf("(the system instance already reports %v offline)", off)
	}

	// Flux notices (tcp_user_timeout 10 s in the allocation).
	deadline := time.Now().Add(60 * time.Second)
	for {
		down, err := m.DownNodes(ctx)
		if err == nil && down["node4"] != "" {
			t.Logf("Flux reports node4 down %.1f s after the power-off: %q", time.Since(at).Seconds(), down["node4"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Flux did not report node4 within 60 s: %v %v", down, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	rmtest.Run(t, []rmtest.Case{{Name: "live-node4-offline", New: newM, JobID: want, Nodes: nodes, Down: []string{"node4"}, AnyEnd: true}})
	start = time.Now()
	res = remote.Run(ctx, fx, []string{"node4"}, []string{"hostname"}, remote.Options{Timeout: 5 * time.Second})
	t.Logf("flux exec on node4 once Flux knows: %.2f s, rc %d, %v", time.Since(start).Seconds(), res[0].ExitCode, res[0].Err)
	if res[0].Err == nil {
		t.Errorf("flux exec on the lost node4 succeeded")
	}
}

func waitFile(ctx context.Context, t *testing.T, path, log string) {
	t.Helper()
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			b, _ := os.ReadFile(log)
			t.Fatalf("no %s: %v; batch output:\n%s", path, ctx.Err(), b)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

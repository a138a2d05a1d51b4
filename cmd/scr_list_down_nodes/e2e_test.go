package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/nodecheck"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/slurm"
	"github.com/scr-go/scr/internal/vcluster"
)

// TestE2ESlurm runs scr_list_down_nodes inside a real Slurm allocation of the
// virtual cluster (SCR_E2E=1, root): all healthy; then node3 powered off
// before Slurm notices (our ping must catch it, fast); then after Slurm has
// marked it down (the sinfo query, checked on live output).
func TestE2ESlurm(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, Timeouts: vcluster.TimeoutsFast})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	bin := filepath.Join(t.TempDir(), "scr_list_down_nodes")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	job, err := c.Sbatch(ctx, "#!/bin/sh\nexec sleep 600\n", "-N3", "--no-kill", "--no-requeue", "-t", "10", "-o", "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitJob(ctx, job, func(s string) bool { return s == "RUNNING" }); err != nil {
		t.Fatal(err)
	}
	_, nodelist, _ := c.JobState(ctx, job)
	env := []string{"SLURM_JOB_ID=" + job, "SLURM_JOB_NODELIST=" + nodelist, "SCR_PREFIX=" + c.SharedDir()}
	t.Logf("allocation %s on %s", job, nodelist)

	type listing struct {
		Down    string
		Reasons []struct{ Node, Reason string }
		RMError string `json:"resource_manager_error"`
	}
	list := func(label string, args ...string) (int, listing, time.Duration) {
		t.Helper()
		var out, errb bytes.Buffer
		cmd := c.CommandDir(ctx, "node1", c.SharedDir(), append([]string{bin, "--json", "--fail-if-down"}, args...), env)
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		var l listing
		if err := json.Unmarshal(out.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v: %s / %s", label, err, out.String(), errb.String())
		}
		t.Logf("%s: exit %d in %.2f s: %s %s", label, code, d.Seconds(), strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()))
		return code, l, d
	}

	if code, l, _ := list("healthy"); code != exitNoneDown || l.Down != "" {
		t.Fatalf("healthy allocation: exit %d, down %q", code, l.Down)
	}

	// The storage test really runs on every node (through srun): ask for
	// more space than any /dev/shm has.
	code, l, _ := list("cache must hold 1 EB", "--cache", "/dev/shm:1048576TB")
	if code != exitSomeDown || l.Down != "node[1-3]" {
		t.Fatalf("exit %d, listing %+v", code, l)
	}
	for _, r := range l.Reasons {
		if !strings.Contains(r.Reason, "scr_check_node: FAIL: cache directory /dev/shm: insufficient space") {
			t.Errorf("%s: %s", r.Node, r.Reason)
		}
	}

	// The batched launch nodecheck uses (one srun step, labelled lines):
	// every node must answer under the name Slurm gives it.
	bc, err := remote.Srun{JobID: job}.BatchCommand([]string{"node1", "node2", "node3"},
		[]string{bin, "--check-storage", nodecheck.EchoArg, nodecheck.LabelArg})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.Exec(ctx, "node1", append([]string{bc.Path}, bc.Args...), nil)
	t.Logf("batched step %s %s:\n%s", bc.Path, strings.Join(bc.Args, " "), raw)
	for _, n := range []string{"node1", "node2", "node3"} {
		if err != nil || !strings.Contains(string(raw), n+": UP\n"+n+": scr_check_node: PASS") {
			t.Errorf("batched step: no labelled answer from %s (%v)", n, err)
		}
	}

	// The adapter's queries, run on node1 against live slurmctld.
	onNode1 := func(ctx context.Context, argv []string) ([]byte, error) { return c.Exec(ctx, "node1", argv, nil) }
	m, _ := slurm.New(rm.Config{Env: rm.MapEnv(map[string]string{"SLURM_JOB_ID": job, "SLURM_JOB_NODELIST": nodelist}), Run: onNode1})
	end, err := m.EndTime(ctx)
	if now := time.Now().Unix(); err != nil || end < now+8*60 || end > now+10*60+5 {
		t.Errorf("EndTime of a 10-minute job = %d (now %d), %v", end, now, err)
	}
	if nodes, err := m.Nodes(ctx); err != nil || strings.Join(nodes, ",") != "node1,node2,node3" {
		t.Errorf("Nodes = %q, %v", nodes, err)
	}

	if _, err := c.PowerOff(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	code, l, d := list("node3 powered off, Slurm not yet aware")
	if code != exitSomeDown || l.Down != "node3" {
		t.Fatalf("exit %d, down %q", code, l.Down)
	}
	if d > 3*time.Second {
		t.Errorf("took %v with one dead node; the target is 3 s", d)
	}

	if _, err := c.WaitState(ctx, "node3", vcluster.IsDown); err != nil {
		t.Fatal(err)
	}
	// The live sinfo output, parsed by the adapter.
	raw, err = c.Exec(ctx, "node1", []string{"sinfo", "-h", "-o", "%N|%T|%E", "-n", nodelist}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("live sinfo output:\n%s", raw)
	down, err := slurm.ParseSinfo(raw)
	if err != nil || !strings.HasPrefix(down["node3"], "slurm: down") || len(down) != 1 {
		t.Errorf("ParseSinfo(live) = %q, %v", down, err)
	}
	code, l, _ = list("node3 down in Slurm")
	if code != exitSomeDown || l.Down != "node3" || len(l.Reasons) != 1 ||
		!strings.HasPrefix(l.Reasons[0].Reason, "Reported down by resource manager (slurm: down") {
		t.Fatalf("exit %d, listing %+v", code, l)
	}
}

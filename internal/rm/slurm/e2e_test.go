package slurm_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/rmtest"
	"github.com/scr-go/scr/internal/rm/slurm"
	"github.com/scr-go/scr/internal/vcluster"
)

// TestE2ELiveSlurm runs the conformance suite against live Slurm in the
// virtual cluster (SCR_E2E=1, root): a 4-node allocation, healthy; with
// node2 drained by an admin while our job runs on it (draining: not down);
// with node4 powered off and marked down by slurmctld. With
// SCR_SLURM_CAPTURE=<dir> it also writes each query's stdout there (how
// testdata/live-*.txt were made).
func TestE2ELiveSlurm(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 4, Timeouts: vcluster.TimeoutsFast})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	batchEnv := filepath.Join(c.SharedDir(), "batch.env")
	job, err := c.Sbatch(ctx, "#!/bin/sh\nenv > "+batchEnv+".tmp && mv "+batchEnv+".tmp "+batchEnv+"\nexec sleep 600\n", "-N4", "--no-kill", "--no-requeue", "-t", "10", "-o", "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitJob(ctx, job, func(s string) bool { return s == "RUNNING" }); err != nil {
		t.Fatal(err)
	}
	_, nodelist, _ := c.JobState(ctx, job)
	capture := os.Getenv("SCR_SLURM_CAPTURE")
	situation := "healthy"
	// The adapter's commands run on node1, as in a batch script; stdout
	// only (stderr goes to the error).
	onNode1 := func(ctx context.Context, argv []string) ([]byte, error) {
		var out, errb bytes.Buffer
		cmd := c.Command(ctx, "node1", argv, nil)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if capture != "" {
			name := fmt.Sprintf("live-%s.%s.txt", argv[0], situation)
			os.WriteFile(filepath.Join(capture, name), out.Bytes(), 0o644)
		}
		if err != nil {
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			return out.Bytes(), &rm.CmdError{Argv: argv, ExitCode: code, Stderr: strings.TrimSpace(errb.String()), Err: err}
		}
		return out.Bytes(), nil
	}
	newM := func(ctx context.Context) (rm.Manager, error) {
		return slurm.New(rm.Config{Env: rm.MapEnv(map[string]string{"SLURM_JOB_ID": job, "SLURM_JOB_NODELIST": nodelist}), Run: onNode1, CommandTimeout: 15 * time.Second})
	}
	nodes := []string{"node1", "node2", "node3", "node4"}

	// The cache identity the library computes in the batch script and in
	// the tasks of two steps, from their real environments.
	envs := []map[string]string{waitEnvFile(ctx, t, batchEnv)}
	for i := 0; i < 2; i++ {
		out, err := c.Exec(ctx, "node1", []string{"srun", "--jobid=" + job, "--overlap", "-N1", "-n1", "-w", nodes[i+1], "env"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, parseEnv(string(out)))
	}
	if envs[1]["SLURM_STEP_ID"] == envs[2]["SLURM_STEP_ID"] {
		t.Fatalf("two steps with one SLURM_STEP_ID %q", envs[1]["SLURM_STEP_ID"])
	}
	rmtest.Run(t, []rmtest.Case{{Name: "live-healthy", New: newM, JobID: job, Nodes: nodes, AnyEnd: true, CacheEnvs: envs}})

	situation = "node2-draining"
	if _, err := c.Exec(ctx, "head", []string{"scontrol", "update", "nodename=node2", "state=drain", "reason=scr-test admin drain"}, nil); err != nil {
		t.Fatal(err)
	}
	rmtest.Run(t, []rmtest.Case{{Name: "live-node2-draining", New: newM, JobID: job, Nodes: nodes, AnyEnd: true}})

	situation = "node4-down"
	if _, err := c.PowerOff(ctx, "node4"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitState(ctx, "node4", vcluster.IsDown); err != nil {
		t.Fatal(err)
	}
	rmtest.Run(t, []rmtest.Case{{Name: "live-node4-down", New: newM, JobID: job, Nodes: nodes, Down: []string{"node4"}, AnyEnd: true}})

	m, _ := newM(ctx)
	down, _ := m.DownNodes(ctx)
	t.Logf("live down list: %q", down)
	if !strings.HasPrefix(down["node4"], "slurm: down") {
		t.Errorf("node4 reason %q", down["node4"])
	}
}

// parseEnv reads env(1) output.
func parseEnv(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// waitEnvFile waits for the batch script to write its environment.
func waitEnvFile(ctx context.Context, t *testing.T, path string) map[string]string {
	t.Helper()
	for {
		if b, err := os.ReadFile(path); err == nil {
			return parseEnv(string(b))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the batch script wrote no %s: %v", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

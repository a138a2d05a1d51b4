package jobrun_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/jobrun"
	"github.com/scr-go/scr/internal/vcluster"
)

// TestSlurmScavengeRebuildsPoweredOffNode: in a real Slurm allocation of
// the virtual cluster, test_api (the real library over PMI) writes two XOR
// checkpoints that stay in the nodes' tmpfs caches; node3 is then powered
// off (its cache is gone with it) and scr_postrun runs: it must scavenge
// the newest checkpoint from node1 and node2 through srun, rebuild node3's
// rank in the prefix from their redundancy data, and make it current. A
// new job id then restarts test_api from the prefix, which verifies every
// byte of every rank.
func TestSlurmScavengeRebuildsPoweredOffNode(t *testing.T) {
	bin := os.Getenv("SCR_BIN")
	if os.Getenv("SCR_E2E") == "1" && bin == "" {
		t.Fatal("SCR_BIN must name the built commands (make build)")
	}
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, BinDir: bin, Name: "jobscav"})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sh := c.SharedDir()
	pfx := filepath.Join(sh, "prefix")
	if err := os.MkdirAll(pfx, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"written", "go", "postrun.json"} {
		os.Remove(filepath.Join(sh, f))
	}
	out := filepath.Join(sh, "scavenge.out")
	script := fmt.Sprintf(`#!/bin/bash
export SCR_PREFIX=%[1]s SCR_COPY_TYPE=XOR SCR_SET_SIZE=8 SCR_FLUSH=0 SCR_CACHE_BYPASS=0 SCR_NODE_TESTS=ping
cd %[1]s
srun -N3 -n3 test_api --size 1m --times 1
echo "write exit $?"
touch %[2]s/written
while [ ! -e %[2]s/go ]; do sleep 0.1; done
scr_postrun -v --json > %[2]s/postrun.json
echo "postrun exit $?"
SCR_JOB_ID=verify$SLURM_JOB_ID SCR_COPY_TYPE=SINGLE srun --overlap -w node1,node2 -N2 -n3 test_api --size 1m --times 0
echo "verify exit $?"
`, pfx, sh)
	job, err := c.Sbatch(ctx, script, "-N3", "-n6", "--no-kill", "--no-requeue", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	err = waitContains(wctx, out, "write exit")
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "write exit 0") {
		t.Fatalf("the checkpoints were not written:\n%s", b)
	}
	at, err := c.PowerOff(ctx, "node3")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sh, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := waitContains(ctx, out, "postrun exit"); err != nil {
		t.Fatal(err)
	}
	postrunDone := time.Now()
	if err := waitContains(ctx, out, "verify exit"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	text := string(b)
	pj, _ := os.ReadFile(filepath.Join(sh, "postrun.json"))
	var res jobrun.ScavengeResult
	if err := json.Unmarshal(pj, &res); err != nil || !strings.Contains(text, "postrun exit 0") || res.Current == "" || len(res.Rebuilt[res.Checkpoint]) != 1 {
		t.Fatalf("scr_postrun: %s (%v)\n%s", pj, err, text)
	}
	m := regexp.MustCompile(`Restarting from checkpoint named (\S+)`).FindStringSubmatch(text)
	if m == nil || m[1] != res.Current || !strings.Contains(text, "verify exit 0") {
		t.Fatalf("the restart from the scavenged checkpoint %s did not verify:\n%s", res.Current, text)
	}
	t.Logf("job %s: node3 off -> scr_postrun done %.2f s later (checkpoint %s, rank %v rebuilt); restart verified\n%s",
		job, postrunDone.Sub(at).Seconds(), res.Current, res.Rebuilt[res.Checkpoint], text)
}

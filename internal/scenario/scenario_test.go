package scenario

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// bins returns the directory of the project's commands: $SCR_BIN (make
// test builds them), else a fresh build into a temporary directory.
func bins(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SCR_BIN"); d != "" {
		return d
	}
	mod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(mod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

func runScenario(t *testing.T, o Options) *Result {
	t.Helper()
	vcluster.Require(t)
	o.BinDir = bins(t)
	o.StateDir = t.TempDir()
	o.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if res != nil {
		t.Log("\n" + res.Table())
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The reference scenario: production-like Slurm timeouts, so scr-go's own
// detection must end the step and find the node.
func TestReferenceScenario(t *testing.T) {
	r := runScenario(t, Options{Name: "ref"})
	// Targets of the mission, reported rather than asserted on timing-noisy
	// machines beyond a generous bound that Slurm alone (300 s) cannot meet.
	t.Logf("step exit %.2f s (target <= 5), detection->started %.2f s (target <= 5)", r.StepExit, r.Started-r.Detected)
	if r.StepExit < 0 || r.StepExit > 60 {
		t.Errorf("step exit %.2f s after the power-off: scr-go's detection did not end the step (Slurm's SlurmdTimeout is 300 s)", r.StepExit)
	}
}

// Fast Slurm timeouts: the resource manager notices the dead node too.
func TestScenarioFastSlurm(t *testing.T) {
	runScenario(t, Options{Name: "fast", Timeouts: vcluster.TimeoutsFast})
}

// Power-off while a checkpoint is being written: the partial checkpoint is
// never used; the restart comes from the previous one.
func TestScenarioPowerOffDuringWrite(t *testing.T) {
	r := runScenario(t, Options{Name: "midwrite", DuringWrite: true, Size: "256MB"})
	if r.RestartedFrom != r.LastCheckpointBeforePowerOff {
		t.Errorf("restarted from %s, want %s (the last complete one)", r.RestartedFrom, r.LastCheckpointBeforePowerOff)
	}
}

// Power-off of the node that holds rank 0 (the batch host is the spare).
func TestScenarioRankZeroNode(t *testing.T) {
	runScenario(t, Options{Name: "rank0", VictimRanks: []int{0}, SrunArgs: []string{"-w", "node2,node3"}})
}

// 6 nodes, 4 in the run, XOR sets of 2: two failures in different sets are
// both rebuilt.
func TestScenarioTwoFailuresTwoSets(t *testing.T) {
	runScenario(t, Options{Name: "twosets", Nodes: 6, JobNodes: 4, SetSize: 2, VictimRanks: []int{1, 2}})
}

// Two failures in one XOR set cannot be rebuilt: the restart comes from the
// checkpoint flushed to the prefix.
func TestScenarioTwoFailuresOneSet(t *testing.T) {
	runScenario(t, Options{Name: "oneset", Nodes: 6, JobNodes: 4, SetSize: 2, VictimRanks: []int{2, 3}, Flush: 1, WantSource: "prefix"})
}

package scenario

import (
	"os"
	"testing"

	"github.com/scr-go/scr/internal/vcluster"
)

// The reference scenario and its variants on a live Flux system instance
// (vcluster --rm flux, flux-core 0.88): `flux batch -N3 -o
// exit-timeout=none --conf=tbon.topo=kary:0` running `scr_run flux run -N2
// -n2 test_api`. Each `flux run` in the allocation is a job of its own with
// its own FLUX_JOB_ID; the relaunch must still find the first run's cache.
// Skipped, with the reason, when flux-core is not installed (make deps-flux).

func runFluxScenario(t *testing.T, o Options) *Result {
	t.Helper()
	vcluster.RequireFlux(t)
	o.RM = vcluster.RMFlux
	return runScenario(t, o)
}

// The reference scenario. It also waits for Flux itself to notice the lost
// node (the allocation's default tcp_user_timeout, 20 s) and asks
// scr_list_down_nodes again, and records what `flux resource status` and
// `flux resource list` print at each stage (in SCR_FLUX_CAPTURE if set:
// how internal/rm/flux/testdata/live-* were made).
func TestFluxReferenceScenario(t *testing.T) {
	dir := os.Getenv("SCR_FLUX_CAPTURE")
	if dir == "" {
		dir = t.TempDir()
	}
	r := runFluxScenario(t, Options{Name: "fluxref", AfterRMNotices: true, CaptureDir: dir})
	t.Logf("step exit %.2f s, detected %.2f s, relaunch %.2f s, started %.2f s, rebuilt %.2f s, first checkpoint %.2f s; Flux noticed at %.2f s",
		r.StepExit, r.Detected, r.Relaunch, r.Started, r.Rebuilt, r.FirstCheckpoint, r.RMNoticed)
	if r.StepExit < 0 || r.StepExit > 15 {
		t.Errorf("step exit %.2f s after the power-off: scr-go's detection did not end the run before Flux's own (tcp_user_timeout 20 s)", r.StepExit)
	}
	if r.DownListAfterRM == "" || r.DownList == "" {
		t.Errorf("scr_list_down_nodes: %q before Flux noticed, %q after", r.DownList, r.DownListAfterRM)
	}
}

// Power-off of the node of rank 0 when it is not broker 0: the user keeps
// the run off the batch node with a host constraint, which the relaunch
// rewrites with the spare.
func TestFluxScenarioRankZeroNode(t *testing.T) {
	runFluxScenario(t, Options{Name: "fluxrank0", VictimRanks: []int{0}, FluxArgs: []string{"--requires=host:node[2-3]"}})
}

// Power-off while a checkpoint is being written: the restart comes from
// the last complete one. 128 MB a rank (the Slurm variant writes 256 MB)
// keeps a write long enough to be caught and the test shorter.
func TestFluxScenarioPowerOffDuringWrite(t *testing.T) {
	r := runFluxScenario(t, Options{Name: "fluxmidwrite", DuringWrite: true, Size: "128MB"})
	if r.RestartedFrom != r.LastCheckpointBeforePowerOff {
		t.Errorf("restarted from %s, want %s (the last complete one)", r.RestartedFrom, r.LastCheckpointBeforePowerOff)
	}
}

// 6 nodes, 4 in the run, XOR sets of 2: two failures in different sets are
// both rebuilt.
func TestFluxScenarioTwoFailuresTwoSets(t *testing.T) {
	runFluxScenario(t, Options{Name: "fluxtwosets", Nodes: 6, JobNodes: 4, SetSize: 2, VictimRanks: []int{1, 2}})
}

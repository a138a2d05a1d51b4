package scenario

import (
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// A relaunch that never reported in (scr_run killed it after
// SCR_LAUNCH_TIMEOUT and launched again) counts in the relaunch time; the
// phases after it are the run that started.
func TestMeasureSkipsAnUnconfirmedRelaunch(t *testing.T) {
	dir := t.TempDir()
	at := time.Unix(1796650000, 0)
	ev := func(sec float64, source, event string, run int, f map[string]any) {
		t.Helper()
		e := prefix.Event{Time: at.Add(time.Duration(sec * float64(time.Second))), Source: source, Event: event, Run: run, Fields: f}
		if err := prefix.AppendTimeline(dir, e); err != nil {
			t.Fatal(err)
		}
	}
	ev(-9, "library", "started", 1, nil)
	ev(-3, "library", "checkpoint", 1, map[string]any{"name": "ckpt.1"})
	ev(2.8, "comm", "peer_lost", 1, map[string]any{"lost_host": "node2", "reason": "no heartbeat"})
	ev(2.8, "scr_run", "step_exit", 1, map[string]any{"status": 137})
	ev(3.3, "scr_run", "launch", 2, nil)
	ev(63.3, "scr_run", "step_exit", 2, map[string]any{"status": 137})
	ev(64.5, "scr_run", "launch", 3, nil)
	ev(66.0, "library", "started", 3, nil)
	ev(67.0, "library", "rebuilt", 3, nil)
	ev(67.1, "library", "restart", 3, map[string]any{"name": "ckpt.1", "from": "cache-rebuild"})
	ev(70.0, "library", "checkpoint", 3, map[string]any{"name": "ckpt.2"})
	s := &run{prefix: dir, res: &Result{Victims: []string{"node2"}}}
	if err := s.measure(at); err != nil {
		t.Fatal(err)
	}
	r := s.res
	if r.Relaunch != 3.3 || r.Started != 66 || r.Rebuilt != 67 || r.FirstCheckpoint != 70 || r.RestartedFrom != "ckpt.1" || r.RestartSource != "cache-rebuild" {
		t.Fatalf("measured %+v", r)
	}
	if r.StepExit != 2.8 || r.Detected != 2.8 || r.LastCheckpointBeforePowerOff != "ckpt.1" {
		t.Fatalf("measured %+v", r)
	}
}

package jobrun

import (
	"context"
	"errors"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// PrefixHalter reads the halt file under a prefix with scr_run's view
// (SCR_FINALIZE_CALLED stops the loop).
type PrefixHalter struct {
	Prefix      string
	End         time.Time // allocation end (zero: unknown)
	HaltSeconds int64     // SCR_HALT_SECONDS when the file has none
	Now         func() time.Time
}

// Check implements Halter. A damaged halt file is an error (the loop then
// stops, as SCR does, and says why).
func (h PrefixHalter) Check(ctx context.Context) (HaltState, error) {
	f, exists, err := prefix.ReadHalt(h.Prefix)
	if err != nil {
		return HaltState{}, err
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	if !exists {
		f = &prefix.Halt{}
	}
	d := f.HaltCheck(now, h.End, h.HaltSeconds, false)
	return HaltState{Halt: d.Halt, Reason: d.Reason, Immediate: d.Halt && f.Immediate}, nil
}

// ShouldExitOptions are scr_should_exit's inputs.
type ShouldExitOptions struct {
	Halter    Halter
	Nodes     []string          // the allocation's nodes; nil = unknown (no node-count check)
	Down      map[string]string // --down
	MinNodes  int               // --min-nodes / SCR_MIN_NODES
	Runs      int               // --runs; < 0 = not given
	LastNodes int               // nodes of the last run (nodes file)
}

// Verdict is scr_should_exit's answer.
type Verdict struct {
	Stop    bool   `json:"stop"`
	Reason  string `json:"reason"`
	Healthy int    `json:"healthy_nodes"`
	Need    int    `json:"need_nodes"`
}

// ShouldExit decides, as the loop would, whether a job script should stop
// launching: halt condition, --runs 0, or too few healthy nodes.
func ShouldExit(ctx context.Context, o ShouldExitOptions) (Verdict, error) {
	var h HaltState
	if o.Halter != nil {
		var err error
		h, err = o.Halter.Check(ctx)
		if err != nil {
			var ce *prefix.CorruptError
			if !errors.As(err, &ce) {
				return Verdict{}, err
			}
			h = HaltState{Halt: true, Reason: "halt file unreadable: " + err.Error()}
		}
	}
	runs := o.Runs
	if runs < 0 {
		runs = -1
	}
	nodes := o.Nodes
	if nodes == nil {
		// Unknown allocation: no node-count verdict.
		nodes = []string{}
	}
	d := Decide(Input{Nodes: nodes, Down: o.Down, Halt: h, RunsLeft: runs, MinNodes: o.MinNodes,
		LastNodes: o.LastNodes, LastExit: -1})
	if d.Stop && len(o.Nodes) == 0 && !h.Halt && runs != 0 {
		d.Stop, d.Reason = false, ""
	}
	v := Verdict{Stop: d.Stop, Reason: d.Reason, Healthy: len(d.Healthy), Need: d.Need}
	if !v.Stop {
		v.Reason = "continue"
	}
	return v, nil
}

package jobrun

import (
	"fmt"
	"sort"
)

// HaltState is what the halt file says right now.
type HaltState struct {
	Halt      bool   // the job must stop
	Reason    string // why (TIME_LIMIT, JOB_HALTED, SCR_FINALIZE_CALLED, ...)
	Immediate bool   // kill the running step now (scr_halt --immediate)
	Err       error  // the halt file could not be read (Halt is then true)
}

// Input is everything the loop knows before deciding whether to launch.
type Input struct {
	Nodes          []string          // the allocation's nodes
	Down           map[string]string // node -> reason (sticky for the allocation)
	Halt           HaltState         // the halt file's verdict
	RunsLeft       int               // runs still allowed; < 0 = unlimited
	MinNodes       int               // SCR_MIN_NODES (0 = unset)
	WantedNodes    int               // nodes the launcher arguments ask for (0 = unknown)
	LastNodes      int               // nodes the last run used (nodes file; 0 = unknown)
	LastExit       int               // exit code of the last run; -1 = no run yet
	Unconfirmed    int               // launches in a row that never reported `started`
	MaxUnconfirmed int               // give up after this many (0 = never)
}

// Decision is the loop's verdict.
type Decision struct {
	Stop    bool
	Reason  string   // why the loop stops (one line)
	Healthy []string // nodes to launch on, allocation order
	Exclude []string // down nodes, sorted
	Need    int      // nodes the run needs
	NeedWhy string   // where Need comes from
	TooFew  bool     // the stop is for too few healthy nodes
}

// Decide is the pure core of the scr_run loop: stop, or launch on the healthy
// nodes. Order of the checks: halt file, a run that succeeded, runs left,
// launches that never started, too few healthy nodes.
func Decide(in Input) Decision {
	d := Decision{}
	for _, n := range in.Nodes {
		if _, down := in.Down[n]; !down {
			d.Healthy = append(d.Healthy, n)
		}
	}
	for n := range in.Down {
		d.Exclude = append(d.Exclude, n)
	}
	sort.Strings(d.Exclude)
	switch {
	case in.MinNodes > 0:
		d.Need, d.NeedWhy = in.MinNodes, "SCR_MIN_NODES"
	case in.WantedNodes > 0:
		d.Need, d.NeedWhy = in.WantedNodes, "the launcher's node count"
	case in.LastNodes > 0:
		d.Need, d.NeedWhy = in.LastNodes, "nodes of the last run"
	default:
		d.Need, d.NeedWhy = len(in.Nodes), "all nodes of the allocation"
	}
	stop := func(format string, a ...any) Decision {
		d.Stop, d.Reason = true, fmt.Sprintf(format, a...)
		return d
	}
	switch {
	case in.Halt.Halt:
		return stop("halt condition: %s", in.Halt.Reason)
	case in.LastExit == 0:
		return stop("the last run ended with exit code 0")
	case in.RunsLeft == 0:
		if in.LastExit > 0 {
			return stop("no runs left (SCR_RUNS); the last run ended with exit code %d", in.LastExit)
		}
		return stop("no runs left (SCR_RUNS)")
	case in.MaxUnconfirmed > 0 && in.Unconfirmed >= in.MaxUnconfirmed:
		return stop("%d launches in a row never reported `started` (SCR_LAUNCH_TIMEOUT); is the program linked with scr-go?", in.Unconfirmed)
	case len(d.Healthy) < d.Need:
		d.TooFew = true
		return stop("too few healthy nodes: %d of %d, need %d (%s)", len(d.Healthy), len(in.Nodes), d.Need, d.NeedWhy)
	}
	return d
}

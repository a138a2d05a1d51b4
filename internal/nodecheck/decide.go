// Package nodecheck decides which nodes of an allocation are down.
//
// The decision (Decide) is pure: it takes what each source said and returns
// node -> reason. Sources are consulted in SCR's order, and the first that
// fails a node gives its reason; a node failed by one source is not tested
// further:
//
//  1. nodes named as down by the caller (scr_list_down_nodes --down; the
//     sticky list scr_run keeps for the allocation),
//  2. SCR_EXCLUDE_NODES (only nodes of the allocation),
//  3. the resource manager's down list,
//  4. ping (ping -c1 -W1, retried once: the first may only refresh ARP),
//  5. echo: a remote `echo UP` (skipped where ping failed),
//  6. storage: the control and cache base directories exist, are writable
//     (a test file is written and removed) and have the configured total (or
//     free) capacity, checked on the node by `scr_list_down_nodes
//     --check-storage` (CheckStorage here), so no Python is needed.
//
// Probe runs checks 4 to 6 on many nodes at once, with bounded fan-out and
// a timeout per check, and Check runs the whole thing, including a bounded
// query of the resource manager concurrent with the probes: a dead node
// costs about two seconds (two one-second pings) whatever the resource
// manager believes, and a hung resource manager costs its bound, not more.
package nodecheck

import (
	"sort"

	"github.com/scr-go/scr/internal/hostlist"
)

// Reasons, as SCR words them (job scripts grep for them).
const (
	ReasonSpecified = "Specified as down"
	ReasonExcluded  = "User excluded via SCR_EXCLUDE_NODES"
	ReasonRM        = "Reported down by resource manager"
	ReasonPing      = "Failed to ping"
	ReasonEcho      = "Failed to echo UP"
)

// Outcome is one check's result on one node.
type Outcome struct {
	Ran    bool   // false: not run (skipped, or the check is unavailable)
	Failed bool   // ran and failed
	Detail string // why it failed (or why it did not run)
}

// Result is what the checks found on one node.
type Result struct {
	Ping, Echo, Storage Outcome
}

// Inputs are everything the decision looks at.
type Inputs struct {
	Nodes     []string          // the allocation's nodes (the set checked)
	Specified []string          // named as down by the caller: always reported
	Excluded  []string          // SCR_EXCLUDE_NODES; nodes outside Nodes are ignored
	RMDown    map[string]string // resource manager: node -> its own words
	Probes    map[string]Result // ping/echo/storage per node
}

// Decide returns node -> reason for every down node (see the package doc for
// the order). Specified nodes are reported even when outside Nodes: the
// caller said so.
func Decide(in Inputs) map[string]string {
	down := map[string]string{}
	for _, n := range in.Specified {
		down[n] = ReasonSpecified
	}
	inAlloc := make(map[string]bool, len(in.Nodes))
	for _, n := range in.Nodes {
		inAlloc[n] = true
	}
	for _, n := range in.Excluded {
		if _, done := down[n]; !done && inAlloc[n] {
			down[n] = ReasonExcluded
		}
	}
	for _, n := range in.Nodes {
		if _, done := down[n]; done {
			continue
		}
		if why, ok := in.RMDown[n]; ok {
			r := ReasonRM
			if why != "" {
				r += " (" + why + ")"
			}
			down[n] = r
			continue
		}
		p := in.Probes[n]
		switch {
		case p.Ping.Ran && p.Ping.Failed:
			down[n] = ReasonPing
		case p.Echo.Ran && p.Echo.Failed:
			r := ReasonEcho
			if p.Echo.Detail != "" {
				r += " (" + p.Echo.Detail + ")"
			}
			down[n] = r
		case p.Storage.Ran && p.Storage.Failed:
			down[n] = p.Storage.Detail
			if down[n] == "" {
				down[n] = "scr_check_node: FAIL"
			}
		}
	}
	return down
}

// Sorted returns the keys of down in natural host order.
func Sorted(down map[string]string) []string {
	nodes := make([]string, 0, len(down))
	for n := range down {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	hostlist.Sort(nodes)
	return nodes
}

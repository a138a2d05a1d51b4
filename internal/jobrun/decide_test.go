package jobrun

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	tests := []struct {
		name    string
		in      Input
		stop    string // substring of the reason; "" = launch
		healthy []string
		need    int
	}{
		{name: "first run all healthy", in: Input{Nodes: nodes, RunsLeft: 1, LastExit: -1},
			healthy: nodes, need: 4},
		{name: "halt file", in: Input{Nodes: nodes, RunsLeft: 5, LastExit: -1, Halt: HaltState{Halt: true, Reason: "JOB_HALTED"}},
			stop: "halt condition: JOB_HALTED"},
		{name: "success ends the loop", in: Input{Nodes: nodes, RunsLeft: 5, LastExit: 0}, stop: "exit code 0"},
		{name: "no runs left", in: Input{Nodes: nodes, RunsLeft: 0, LastExit: 75}, stop: "no runs left"},
		{name: "unlimited runs", in: Input{Nodes: nodes, RunsLeft: -1, LastExit: 75}, healthy: nodes, need: 4},
		{name: "spare replaces lost node", in: Input{Nodes: nodes, RunsLeft: 2, LastExit: 75, WantedNodes: 3,
			Down: map[string]string{"n2": "Failed to ping"}}, healthy: []string{"n1", "n3", "n4"}, need: 3},
		{name: "too few for the launcher's count", in: Input{Nodes: nodes, RunsLeft: 2, LastExit: 75, WantedNodes: 3,
			Down: map[string]string{"n2": "x", "n4": "y"}}, stop: "too few healthy nodes: 2 of 4, need 3 (the launcher's node count)"},
		{name: "min nodes wins", in: Input{Nodes: nodes, RunsLeft: 2, LastExit: -1, WantedNodes: 4, MinNodes: 2,
			Down: map[string]string{"n2": "x", "n4": "y"}}, healthy: []string{"n1", "n3"}, need: 2},
		{name: "last run's nodes", in: Input{Nodes: nodes, RunsLeft: 2, LastExit: 1, LastNodes: 3,
			Down: map[string]string{"n1": "x"}}, healthy: []string{"n2", "n3", "n4"}, need: 3},
		{name: "whole allocation by default", in: Input{Nodes: nodes, RunsLeft: 2, LastExit: 1,
			Down: map[string]string{"n1": "x"}}, stop: "need 4 (all nodes of the allocation)"},
		{name: "down node outside the allocation", in: Input{Nodes: nodes, RunsLeft: 1, LastExit: -1,
			Down: map[string]string{"other": "x"}}, healthy: nodes, need: 4},
		{name: "launches never start", in: Input{Nodes: nodes, RunsLeft: 1, LastExit: -1, Unconfirmed: 3, MaxUnconfirmed: 3},
			stop: "3 launches in a row"},
		{name: "halt beats everything", in: Input{Nodes: nodes, RunsLeft: 0, LastExit: 0, Halt: HaltState{Halt: true, Reason: "TIME_LIMIT"}},
			stop: "TIME_LIMIT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in)
			if tc.stop != "" {
				if !d.Stop || !strings.Contains(d.Reason, tc.stop) {
					t.Fatalf("decision %+v, want stop with %q", d, tc.stop)
				}
				return
			}
			if d.Stop {
				t.Fatalf("stopped: %s", d.Reason)
			}
			if !reflect.DeepEqual(d.Healthy, tc.healthy) || d.Need != tc.need {
				t.Fatalf("healthy %v need %d, want %v %d", d.Healthy, d.Need, tc.healthy, tc.need)
			}
			if len(d.Exclude) != len(tc.in.Down) {
				t.Fatalf("exclude %v for down %v", d.Exclude, tc.in.Down)
			}
		})
	}
}

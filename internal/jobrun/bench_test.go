package jobrun

import (
	"fmt"
	"testing"

	"github.com/scr-go/scr/internal/launch"
)

// 10,000 nodes, 100 down: the decision and the launch command stay linear.
func nodes10k() ([]string, map[string]string) {
	nodes := make([]string, 10000)
	down := map[string]string{}
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node%05d", i)
		if i%100 == 7 {
			down[nodes[i]] = "Failed to ping"
		}
	}
	return nodes, down
}

func BenchmarkDecide10k(b *testing.B) {
	nodes, down := nodes10k()
	for b.Loop() {
		d := Decide(Input{Nodes: nodes, Down: down, RunsLeft: -1, LastExit: 75, WantedNodes: 9800})
		if d.Stop {
			b.Fatal(d.Reason)
		}
	}
}

func BenchmarkSrunBuild10k(b *testing.B) {
	nodes, down := nodes10k()
	ex := sortedKeys(down)
	for b.Loop() {
		c, err := launch.Srun{}.Build(launch.Request{Args: []string{"-N", "9800", "./app"}, Nodes: nodes, Down: ex, JobID: "1", RunID: 2})
		if err != nil || len(c.Argv) < 4 {
			b.Fatal(err)
		}
	}
}

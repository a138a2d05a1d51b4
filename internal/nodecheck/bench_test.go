package nodecheck

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/rm/local"
)

// benchCheck runs the full check (RM query, ping with retry, remote echo,
// remote storage check as a real process per node) on a local cluster of n
// nodes of which dead are powered off (ping fails after 1 s, like ping -W1;
// the RM does not know). It reports the wall time of one whole check.
func benchCheck(b *testing.B, n, dead int) {
	b.Setenv("NODECHECK_HELPER", "1")
	root, nodes, m := localCluster(b, n)
	for i := 0; i < dead; i++ {
		// Spread the dead nodes over the list.
		mark(b, root, nodes[(i*n)/dead], local.PowerOffFile, "")
	}
	var last time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rep, err := Check(context.Background(), Request{Manager: m, Options: Options{StorageArgv: storageArgv(nil)}})
		last = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(rep.Down) != dead {
			b.Fatalf("%d down, want %d: %v", len(rep.Down), dead, rep.Down)
		}
	}
	b.ReportMetric(last.Seconds(), "s/check")
	fmt.Printf("nodecheck: %d nodes, %d powered off: whole check %.2f s\n", n, dead, last.Seconds())
}

func BenchmarkCheck8Nodes1Dead(b *testing.B)     { benchCheck(b, 8, 1) }
func BenchmarkCheck1000Nodes10Dead(b *testing.B) { benchCheck(b, 1000, 10) }

// The echo-only variant isolates the process cost from the storage check.
func BenchmarkPing1000Nodes10Dead(b *testing.B) {
	root, nodes, m := localCluster(b, 1000)
	for i := 0; i < 10; i++ {
		mark(b, root, nodes[i*100], local.PowerOffFile, "")
	}
	var last time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rep, _ := Check(context.Background(), Request{Manager: m, Options: Options{Checks: []string{CheckPing}}})
		last = time.Since(start)
		if len(rep.Down) != 10 {
			b.Fatalf("%d down", len(rep.Down))
		}
	}
	b.ReportMetric(last.Seconds(), "s/check")
}

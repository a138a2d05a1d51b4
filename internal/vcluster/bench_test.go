package vcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// BenchmarkUpDown measures bring-up to IDLE plus tear-down of a 3-node
// cluster (target: well under 2 s on 2 cores).
func BenchmarkUpDown(b *testing.B) {
	vcluster.Require(b)
	tmp, err := os.MkdirTemp("", "vc")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx := context.Background()
	for b.Loop() {
		c, err := vcluster.Up(ctx, vcluster.Options{StateDir: filepath.Join(tmp, "c"), Nodes: 3})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Down(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPowerCycle measures PowerOff (link cut to every process gone)
// plus PowerOn (until Slurm sees the node responding) with production
// timeouts, where Slurm does not mark the node DOWN in between.
func BenchmarkPowerCycle(b *testing.B) {
	c := vcluster.Start(b, vcluster.Options{Nodes: 2, Timeouts: vcluster.TimeoutsProduction})
	ctx := context.Background()
	var dark time.Duration
	for b.Loop() {
		at, err := c.PowerOff(ctx, "node2")
		if err != nil {
			b.Fatal(err)
		}
		dark += time.Since(at)
		if err := c.PowerOn(ctx, "node2"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(dark.Microseconds())/float64(b.N)/1000, "ms-to-dark/op")
}

package redundancy

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestMemoryBounded: encoding and rebuilding 4 x 32 MB in 64 KB pieces keeps
// the heap far below the data size: memory depends on the piece size, not
// on the files.
func TestMemoryBounded(t *testing.T) {
	const size = 32 << 20
	for _, s := range []Scheme{{Type: XOR, BufSize: 64 << 10}, {Type: RS, Failures: 2, BufSize: 64 << 10}, {Type: Partner, BufSize: 64 << 10}} {
		t.Run(s.Type.String(), func(t *testing.T) {
			w := newWorld(t, nodes(4, 1), 8)
			files := make([][]FileInfo, 4)
			chunk := make([]byte, 1<<20)
			for i := range chunk {
				chunk[i] = byte(i * 7)
			}
			for r := range 4 {
				p := filepath.Join(w.dir(r), "big")
				os.MkdirAll(w.dir(r), 0o700)
				f, err := os.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				for range size / len(chunk) {
					f.Write(chunk)
				}
				f.Close()
				if files[r], err = StatFiles(w.dir(r), []string{"big"}, false); err != nil {
					t.Fatal(err)
				}
			}
			chunk = nil
			peak := watchHeap(t, func() {
				noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
					return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
				}))
				os.RemoveAll(filepath.Join(w.root, w.hosts[2]))
				noErrs(t, "rebuild", w.run(func(ctx context.Context, g *Group) error {
					_, err := Rebuild(ctx, g, s, w.dir(g.World.Rank()))
					return err
				}))
			})
			if peak > size/4 {
				t.Fatalf("live heap peaked at %d MB while moving %d MB per rank", peak>>20, size>>20)
			}
			t.Logf("%v: peak live heap %.1f MB for 4 x %d MB", s.Type, float64(peak)/(1<<20), size>>20)
		})
	}
}

// watchHeap runs f and returns the largest live heap (bytes reachable at
// the end of a GC cycle) seen while it ran. GC runs often meanwhile, so the
// figure follows what is retained, not garbage a busy machine has not yet
// collected.
func watchHeap(t *testing.T, f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				peak = max(peak, sample[0].Value.Uint64())
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return peak
}

package redundancy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// shmDir is a fresh directory in /dev/shm (node-local memory, where the
// cache lives), removed at the end of the benchmark.
func shmDir(b *testing.B) string {
	d, err := os.MkdirTemp("/dev/shm", "scr-red-bench-")
	if err != nil {
		b.Skipf("no /dev/shm: %v", err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// parallel runs f(r) for r in 0..n-1 concurrently and returns the wall time.
func parallel(b *testing.B, n int, f func(r int) error) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for r := range n {
		wg.Go(func() { errs[r] = f(r) })
	}
	wg.Wait()
	d := time.Since(start)
	for r, err := range errs {
		if err != nil {
			b.Fatalf("rank %d: %v", r, err)
		}
	}
	return d
}

// benchCodec measures, in one run, a plain write of every rank's data to
// /dev/shm, the encode of that data, and the rebuild of one lost node
// (rank 1's node replaced by an empty directory), and reports the ratios:
// encode/plain-write (target <= 3 for XOR) and rebuild/plain-write of the
// lost node's data (target <= 4).
func benchCodec(b *testing.B, s Scheme, ranks int, size int) {
	benchCodecOver(b, s, ranks, size, false)
}

func benchCodecOver(b *testing.B, s Scheme, ranks int, size int, tcp bool) {
	root := shmDir(b)
	hosts := nodes(ranks, 1)
	sets, err := Sets(hosts, ranks)
	if err != nil {
		b.Fatal(err)
	}
	w := &world{t: b, root: root, hosts: hosts, sets: sets}
	if tcp {
		w.comms = tcpWorld(b, hosts)
	}
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	// two files per rank, uneven
	parts := []struct {
		name string
		lo   int
		hi   int
	}{{"ckpt/a", 0, size / 3}, {"ckpt/b", size / 3, size}}
	writeRank := func(r int) error {
		for _, p := range parts {
			f := filepath.Join(w.dir(r), p.name)
			if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(f, data[p.lo:p.hi], 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	names := []string{"ckpt/a", "ckpt/b"}
	var plain, plainNode, enc, reb time.Duration
	b.SetBytes(int64(ranks * size))
	for b.Loop() {
		os.RemoveAll(root)
		plain += parallel(b, ranks, writeRank)
		os.RemoveAll(filepath.Join(root, hosts[1]))
		plainNode += parallel(b, 1, func(int) error { return writeRank(1) })
		files := make([][]FileInfo, ranks)
		for r := range ranks {
			if files[r], err = StatFiles(w.dir(r), names, false); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		errs := w.run(func(ctx context.Context, g *Group) error {
			return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
		})
		enc += time.Since(start)
		for r, err := range errs {
			if err != nil {
				b.Fatalf("encode rank %d: %v", r, err)
			}
		}
		os.RemoveAll(filepath.Join(root, hosts[1]))
		start = time.Now()
		errs = w.run(func(ctx context.Context, g *Group) error {
			_, err := Rebuild(ctx, g, s, w.dir(g.World.Rank()))
			return err
		})
		reb += time.Since(start)
		for r, err := range errs {
			if err != nil {
				b.Fatalf("rebuild rank %d: %v", r, err)
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(plain.Seconds()/n*1e3, "plain-ms")
	b.ReportMetric(enc.Seconds()/n*1e3, "encode-ms")
	b.ReportMetric(reb.Seconds()/n*1e3, "rebuild-ms")
	b.ReportMetric(enc.Seconds()/plain.Seconds(), "encode/plain")
	b.ReportMetric(reb.Seconds()/plainNode.Seconds(), "rebuild/plain-node")
}

func BenchmarkXOR4x64MB(b *testing.B) {
	benchCodec(b, Scheme{Type: XOR}, 4, 64<<20)
}

// BenchmarkXOR4x64MBTCP is BenchmarkXOR4x64MB over comm's TCP transport
// on loopback (bootstrap included in the encode and rebuild times).
func BenchmarkXOR4x64MBTCP(b *testing.B) {
	benchCodecOver(b, Scheme{Type: XOR}, 4, 64<<20, true)
}

func BenchmarkRS4x64MB(b *testing.B) {
	benchCodec(b, Scheme{Type: RS, Failures: 2}, 4, 64<<20)
}

func BenchmarkPartner4x64MB(b *testing.B) {
	benchCodec(b, Scheme{Type: Partner}, 4, 64<<20)
}

// BenchmarkXORBufSize shows the effect of the piece size.
func BenchmarkXORBufSize(b *testing.B) {
	for _, buf := range []int{64 << 10, 128 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("buf=%dK", buf>>10), func(b *testing.B) {
			benchCodec(b, Scheme{Type: XOR, BufSize: buf}, 4, 64<<20)
		})
	}
}

// BenchmarkSets100k: set formation for 100,000 ranks (10,000 nodes x 10),
// done by every rank at start-up, stays a few milliseconds.
func BenchmarkSets100k(b *testing.B) {
	hosts := nodes(10000, 10)
	for b.Loop() {
		if _, err := Sets(hosts, 8); err != nil {
			b.Fatal(err)
		}
	}
}

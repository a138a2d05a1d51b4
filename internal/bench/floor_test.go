package bench

import (
	"crypto/subtle"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFloor measures, on this machine, the CPU time of the data
// movements a checkpoint is made of, per 64 MiB in 1 MiB pieces: writing
// a new tmpfs file (the plain write), reading one with pread (again, and
// right after it was written, as an encode does), moving the bytes over
// loopback TCP (sender and receiver together), XOR of two buffers. They
// bound from below what an XOR encode can cost relative to the plain
// write (doc/performance.md; scr_bench measures the same before its runs,
// MeasureMovements). Reported as cpu-ms/64MiB.
//
//	go test -run '^$' -bench Floor -benchtime 10x ./internal/bench
func BenchmarkFloor(b *testing.B) {
	const total = 64 << 20
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "floor"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
	}
	buf := make([]byte, movementPiece)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	must := func(b *testing.B, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	src := filepath.Join(dir, "src")
	must(b, writeNew(src, buf, total))
	report := func(b *testing.B, ns int64) {
		b.ReportMetric(float64(ns)/1e6/float64(b.N), "cpu-ms/64MiB")
	}
	cpuLoop := func(b *testing.B, f func()) {
		var ns int64
		for b.Loop() {
			ns += cpuNS(f)
		}
		report(b, ns)
	}
	b.Run("write", func(b *testing.B) {
		p := filepath.Join(dir, "dst")
		var ns int64
		for b.Loop() {
			os.Remove(p)
			ns += cpuNS(func() { must(b, writeNew(p, buf, total)) })
		}
		report(b, ns)
		os.Remove(p)
	})
	b.Run("pread", func(b *testing.B) {
		cpuLoop(b, func() { must(b, preadFile(src, buf, total)) })
	})
	// What an encode reads is what the application has just written: the
	// first read of a page after its write moves it to the active LRU
	// list, which the re-reads of "pread" do not pay.
	b.Run("pread-fresh", func(b *testing.B) {
		p := filepath.Join(dir, "fresh")
		var ns int64
		for b.Loop() {
			must(b, writeNew(p, buf, total))
			ns += cpuNS(func() { must(b, preadFile(p, buf, total)) })
			os.Remove(p)
		}
		report(b, ns)
	})
	b.Run("xor", func(b *testing.B) {
		acc := make([]byte, movementPiece)
		cpuLoop(b, func() {
			for o := 0; o < total; o += movementPiece {
				subtle.XORBytes(acc, acc, buf)
			}
		})
	})
	b.Run("tcp", func(b *testing.B) {
		cpuLoop(b, func() { must(b, loopback(buf, total)) })
	})
}

package bench

import (
	"crypto/subtle"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkFloor measures, on this machine, the CPU time of the data
// movements a checkpoint is made of, per 64 MiB in 1 MiB pieces: writing
// a new tmpfs file (the plain write), reading one with pread (again, and
// right after it was written, as an encode does), moving the
// bytes over loopback TCP (sender and receiver together), XOR of two
// buffers. They bound from below what an XOR encode can cost relative to
// the plain write (doc/performance.md). Reported as cpu-ms/64MiB.
//
//	go test -run '^$' -bench Floor -benchtime 10x ./internal/bench
func BenchmarkFloor(b *testing.B) {
	const total, piece = 64 << 20, 1 << 20
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "floor"); err == nil {
			dir = d
			defer os.RemoveAll(d)
		}
	}
	buf := make([]byte, piece)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	src := filepath.Join(dir, "src")
	write := func(p string) {
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		for o := 0; o < total; o += piece {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		f.Sync()
		f.Close()
	}
	write(src)
	cpuMs := func(b *testing.B, f func()) {
		b.Helper()
		var ru0, ru1 syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		for b.Loop() {
			f()
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		ns := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
		b.ReportMetric(float64(ns)/1e6/float64(b.N), "cpu-ms/64MiB")
	}
	b.Run("write", func(b *testing.B) {
		p := filepath.Join(dir, "dst")
		cpuMs(b, func() { os.Remove(p); write(p) })
		os.Remove(p)
	})
	b.Run("pread", func(b *testing.B) {
		f, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cpuMs(b, func() {
			for o := 0; o < total; o += piece {
				f.ReadAt(buf, int64(o))
			}
		})
	})
	// What an encode reads is what the application has just written: the
	// first read of a page after its write moves it to the active LRU
	// list, which the re-reads of "pread" do not pay.
	b.Run("pread-fresh", func(b *testing.B) {
		p := filepath.Join(dir, "fresh")
		var ns int64
		for b.Loop() {
			write(p)
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			for o := 0; o < total; o += piece {
				f.ReadAt(buf, int64(o))
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			ns += ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
			f.Close()
			os.Remove(p)
		}
		b.ReportMetric(float64(ns)/1e6/float64(b.N), "cpu-ms/64MiB")
	})
	b.Run("xor", func(b *testing.B) {
		acc := make([]byte, piece)
		cpuMs(b, func() {
			for o := 0; o < total; o += piece {
				subtle.XORBytes(acc, acc, buf)
			}
		})
	})
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		got := make(chan error)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err
				return
			}
			defer c.Close()
			rb := make([]byte, piece)
			for {
				for o := 0; o < total; o += piece {
					if _, err := io.ReadFull(c, rb); err != nil {
						got <- err
						return
					}
				}
				got <- nil
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cpuMs(b, func() {
			for o := 0; o < total; o += piece {
				c.Write(buf)
			}
			if err := <-got; err != nil {
				b.Fatal(err)
			}
		})
	})
}

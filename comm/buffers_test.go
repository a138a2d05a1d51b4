package comm

import (
	"context"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

func TestBufferClasses(t *testing.T) {
	for _, tc := range []struct{ n, cap int }{
		{0, 0}, {1, 1}, {64<<10 - 1, 64<<10 - 1}, // too small to pool: exact
		{64 << 10, 64 << 10}, {64<<10 + 1, 128 << 10}, {1 << 20, 1 << 20}, {3 << 20, 4 << 20},
		{16<<20 + 1, 16<<20 + 1}, // too large to pool: exact
	} {
		b := Buffer(tc.n)
		exact := tc.n < 64<<10 || tc.n > 16<<20
		if len(b) != tc.n || cap(b) < tc.cap || (exact && cap(b) != tc.n) {
			t.Errorf("Buffer(%d): len %d cap %d, want len %d cap >= %d", tc.n, len(b), cap(b), tc.n, tc.cap)
		}
	}
}

// TestReleaseReuses: a released buffer comes back from Buffer (the pool
// may drop it under a GC, so this tries a few times), and a released
// prefix slice keeps its whole capacity.
func TestReleaseReuses(t *testing.T) {
	reused := false
	for range 20 {
		b := Buffer(1 << 20)
		Release(b[:10])
		c := Buffer(1<<20 - 5)
		if unsafe.SliceData(c) == unsafe.SliceData(b) {
			reused = true
			if len(c) != 1<<20-5 {
				t.Fatalf("len %d", len(c))
			}
			break
		}
	}
	if !reused {
		t.Fatal("a released buffer was never handed out again")
	}
	// A buffer whose capacity is not a class size serves the class below.
	odd := make([]byte, 100, 96<<10)
	Release(odd)
	for range 20 {
		if c := Buffer(64 << 10); unsafe.SliceData(c) == unsafe.SliceData(odd) {
			return
		}
	}
	t.Fatal("a 96 KiB buffer was not reused for 64 KiB")
}

// TestSendOwnedOverTCPRecycles: SendOwned over TCP delivers a copy and
// leaves the sender's buffer to the pool; the receiver gets the bytes.
func TestSendOwnedOverTCPRecycles(t *testing.T) {
	ctx := context.Background()
	comms := tcpWorld(t, []string{"a", "b"}, 3*time.Second, nil)
	msg := Buffer(200 << 10)
	for i := range msg {
		msg[i] = byte(i * 3)
	}
	want := append([]byte(nil), msg...)
	errc := make(chan error, 1)
	go func() { errc <- SendOwned(ctx, comms[0], 1, 7, msg) }()
	got, err := comms[1].Recv(ctx, 0, 7)
	if err != nil || <-errc != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("message differs")
	}
	Release(got)
}

// TestBufferTakesNextClass: with its own class empty, a request is served
// by a kept buffer of the class above (a chunk's short last piece reuses a
// full piece) and that buffer goes back to its own class.
func TestBufferTakesNextClass(t *testing.T) {
	drainAll()
	c512, c1m := 19-minPooledShift, 20-minPooledShift
	kept := func(c int) int {
		bufs.mu.Lock()
		defer bufs.mu.Unlock()
		return len(bufs.free[c])
	}
	Release(Buffer(1 << 20))
	n1m := kept(c1m)
	small := Buffer(300 << 10) // class 512 KiB: empty
	if len(small) != 300<<10 || cap(small) != 1<<20 || kept(c1m) != n1m-1 {
		t.Fatalf("a 300 KiB request did not take a kept 1 MiB buffer (len %d cap %d)", len(small), cap(small))
	}
	Release(small)
	if kept(c512) != 0 || kept(c1m) != n1m {
		t.Fatalf("after release: %d kept of 512 KiB, %d of 1 MiB; want 0 and %d", kept(c512), kept(c1m), n1m)
	}
	// Two classes up is too wasteful: a fresh buffer.
	if b := Buffer(200 << 10); cap(b) == 1<<20 {
		t.Fatal("a 200 KiB request took a 1 MiB buffer")
	}
}

// TestArena: on Linux, buffers of 512 KiB and up come from the arena,
// mapped outside the heap; Release keeps them even past keptMax, and the
// arena stops growing at keptMax (the heap serves beyond it).
func TestArena(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the arena is Linux only")
	}
	drainAll()
	b := Buffer(1 << 20)
	bufs.mu.Lock()
	in := inArena(b)
	bufs.kept = keptMax // as if the free lists were full
	bufs.mu.Unlock()
	if !in {
		t.Fatal("a 1 MiB buffer did not come from the arena")
	}
	for i := range b {
		b[i] = byte(i) // the memory is writable
	}
	Release(b)
	bufs.mu.Lock()
	l := len(bufs.free[20-minPooledShift])
	bufs.mu.Unlock()
	if l == 0 {
		t.Fatal("an arena buffer released past keptMax was not kept")
	}
	var held [][]byte
	for range 2 * keptMax / (4 << 20) {
		held = append(held, Buffer(4<<20))
	}
	bufs.mu.Lock()
	ab := bufs.arenaBytes
	bufs.mu.Unlock()
	if ab > keptMax {
		t.Fatalf("the arena grew to %d bytes, past %d", ab, keptMax)
	}
	for _, h := range held {
		if len(h) != 4<<20 {
			t.Fatalf("len %d", len(h))
		}
		h[len(h)-1] = 1
	}
}

// TestReserve: Reserve maps buffers into the class's free list up to the
// count asked, counts them in the kept bytes, stops at keptMax, and later
// requests get them without allocating.
func TestReserve(t *testing.T) {
	drainAll()
	if got := Reserve(1<<20+1, 3); got != 3 {
		t.Fatalf("Reserve made %d buffers, want 3", got)
	}
	if got := Reserve(2<<20, 3); got != 0 {
		t.Fatalf("a second Reserve of the same class made %d buffers, want 0", got)
	}
	if got := Reserve(100, 3) + Reserve(32<<20, 1) + Reserve(1<<20, 0); got != 0 {
		t.Fatalf("Reserve of sizes not pooled or no count made %d buffers", got)
	}
	allocs := testing.AllocsPerRun(1, func() {
		b := Buffer(2 << 20)
		Release(b)
	})
	if allocs != 0 {
		t.Fatalf("Buffer after Reserve allocated (%v allocations)", allocs)
	}
	got := Reserve(2<<20, 1000)
	bufs.mu.Lock()
	kept := bufs.kept
	bufs.mu.Unlock()
	if kept > keptMax || got >= 1000 {
		t.Fatalf("Reserve of 1000 x 2 MiB made %d; %d bytes kept, limit %d", got, kept, keptMax)
	}
}

// drainAll empties the free lists (tests that count what is kept).
func drainAll() {
	bufs.mu.Lock()
	defer bufs.mu.Unlock()
	for c := range bufs.free {
		bufs.free[c] = nil
	}
	bufs.kept = 0
}

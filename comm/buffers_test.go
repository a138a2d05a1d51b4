package comm

import (
	"context"
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

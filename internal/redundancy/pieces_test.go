package redundancy

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/scr-go/scr/comm"
)

// wrapped hides the concrete communicator, as a caller's own Comm would.
type wrapped struct{ comm.Comm }

// TestSendOwned: over comm.NewLocal a piece given up with sendOwned
// arrives as the very buffer sent (no copy); over any other communicator
// it is an ordinary Send, whose message is a copy.
func TestSendOwned(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		wrap bool
		same bool
	}{{"local", false, true}, {"other", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			cs := comm.NewLocal([]string{"a", "b"})
			defer cs[0].Close()
			defer cs[1].Close()
			var from, to comm.Comm = cs[0], cs[1]
			if tc.wrap {
				from = wrapped{cs[0]}
			}
			b := getPiece(64 << 10)
			for i := range b {
				b[i] = byte(i)
			}
			want := append([]byte(nil), b...)
			if err := sendOwned(ctx, from, 1, tagData, b); err != nil {
				t.Fatal(err)
			}
			got, err := to.Recv(ctx, 0, tagData)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatal("message differs from what was sent")
			}
			if same := &got[0] == &b[0]; same != tc.same {
				t.Fatalf("received the sender's buffer: %v, want %v", same, tc.same)
			}
			putPiece(got)
		})
	}
}

// TestReserve: after Reserve, the pieces an encode keeps in flight come
// from kept buffers, without allocating. It runs in a fresh process each
// time, whose buffer lists start empty (so without Reserve it fails).
func TestReserve(t *testing.T) {
	if os.Getenv("SCR_TEST_RESERVE") != "" {
		reserveChild(t, os.Getenv("SCR_TEST_RESERVE") == "on")
		return
	}
	for _, on := range []string{"on", "off"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReserve$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SCR_TEST_RESERVE="+on)
		out, err := cmd.CombinedOutput()
		if on == "on" && err != nil {
			t.Errorf("with Reserve: %v\n%s", err, out)
		}
		if on == "off" && err == nil {
			t.Errorf("without Reserve the pieces were not allocated: the check cannot fail\n%s", out)
		}
	}
}

func reserveChild(t *testing.T, reserve bool) {
	for _, tc := range []struct {
		s    Scheme
		size int // piece size asked for
		n    int
	}{
		{Scheme{Type: XOR}, DefaultBufSize, 3*pipeDepth + 6},
		{Scheme{Type: XOR, BufSize: 256 << 10}, 256 << 10, 3*pipeDepth + 6},
		{Scheme{Type: RS, Failures: 2}, 2 * DefaultBufSize, 3*pipeDepth + 2},
		{Scheme{Type: Partner, BufSize: 128 << 10}, 128 << 10, 4},
	} {
		if reserve {
			Reserve(tc.s)
		}
		held := make([][]byte, 0, tc.n)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for range tc.n {
			held = append(held, comm.Buffer(tc.size))
		}
		runtime.ReadMemStats(&m1)
		for _, b := range held {
			comm.Release(b)
		}
		if fresh := m1.TotalAlloc - m0.TotalAlloc; fresh >= uint64(tc.size) {
			t.Errorf("%v: %d pieces of %d bytes allocated %d bytes", tc.s.Type, tc.n, tc.size, fresh)
		}
	}
}

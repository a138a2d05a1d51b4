package redundancy

import (
	"context"
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

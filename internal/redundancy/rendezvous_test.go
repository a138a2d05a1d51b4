package redundancy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/scr-go/scr/comm"
)

// rvComm wraps a communicator so that a Send of eager bytes or more
// returns only once the receiver took the message, as a blocking MPI send
// does for large messages under MPI's rendezvous protocol (comm's contract
// allows it). Smaller messages (acknowledgements, file lists) return at
// once, as MPI sends them eagerly. Collectives are the wrapped ones'.
type rvComm struct {
	comm.Comm
	id string // the same on every rank for one communicator
	rv *rvShared
}

type rvShared struct {
	mu    sync.Mutex
	taken map[string]chan struct{} // per (comm, src, dst, tag): one token per message taken
}

const rvEager = 1 << 10

func (s *rvShared) ch(k string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.taken[k]
	if c == nil {
		c = make(chan struct{}, 1<<16)
		s.taken[k] = c
	}
	return c
}

func rvKey(id string, src, dst, tag int) string { return fmt.Sprintf("%s/%d>%d/%d", id, src, dst, tag) }

func (c *rvComm) Send(ctx context.Context, dst, tag int, data []byte) error {
	if err := c.Comm.Send(ctx, dst, tag, data); err != nil || len(data) < rvEager {
		return err
	}
	select {
	case <-c.rv.ch(rvKey(c.id, c.Rank(), dst, tag)):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rank %d: send of %d bytes to rank %d (tag %d) never taken: %w", c.Rank(), len(data), dst, tag, ctx.Err())
	}
}

func (c *rvComm) Recv(ctx context.Context, src, tag int) ([]byte, error) {
	b, err := c.Comm.Recv(ctx, src, tag)
	if err == nil && len(b) >= rvEager {
		c.rv.ch(rvKey(c.id, src, c.Rank(), tag)) <- struct{}{}
	}
	return b, err
}

func (c *rvComm) Split(ctx context.Context, color, key int) (comm.Comm, error) {
	sc, err := c.Comm.Split(ctx, color, key)
	if sc == nil || err != nil {
		return sc, err
	}
	return &rvComm{Comm: sc, id: fmt.Sprintf("%s/%d", c.id, color), rv: c.rv}, nil
}

// TestRendezvousSends: encode and rebuild complete over a communicator
// whose large Sends wait for the receiver (a blocking MPI send), with pieces
// well above the eager size: the pipelined encode and the rebuild's
// wavefront must not wait in Send for a member that is itself sending.
func TestRendezvousSends(t *testing.T) {
	for _, s := range []Scheme{{Type: XOR, BufSize: 8 << 10}, {Type: RS, Failures: 2, BufSize: 8 << 10}, {Type: Partner, BufSize: 8 << 10}} {
		t.Run(s.Type.String(), func(t *testing.T) {
			w := newWorld(t, nodes(5, 1), 8)
			w.comms = func(ctx context.Context) []comm.Comm {
				rv := &rvShared{taken: map[string]chan struct{}{}}
				var out []comm.Comm
				for _, c := range comm.NewLocal(w.hosts) {
					out = append(out, &rvComm{Comm: c, id: "world", rv: rv})
				}
				return out
			}
			files := w.writeData(sizes(300000, 0, 70001), 12)
			noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
				return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
			}))
			good := w.snapshot()
			lost := map[int]bool{3: true}
			if s.Type == RS {
				lost[1] = true
			}
			for r := range lost {
				os.RemoveAll(filepath.Join(w.root, w.hosts[r]))
			}
			w.checkRebuild(s, files, good, lost, len(lost))
		})
	}
}

package redundancy

import (
	"context"
	"sync"

	"github.com/scr-go/scr/comm"
)

// outboxes send pieces from goroutines of their own, one per destination,
// in order, so that a member never waits in Send for a receiver while it
// could receive or compute. The pipelined encode and the rebuild's
// wavefront send before their receivers get to the matching receive; over
// a communicator whose Send waits for the matching Recv (a blocking MPI
// send of a large message, under MPI's rendezvous protocol) they would
// deadlock if the member sent itself. Over the TCP and in-process transports Send returns
// at once anyway and the goroutine only moves the system call off the
// member's path.
//
// Pieces handed to send are given up (sendOwned); when a send fails, the
// rest of that destination's pieces are released unsent and later calls
// return the error. Owner: the encode or rebuild that made them; stop:
// close, which waits for every goroutine (after cancelling their sends when
// the operation failed).
type outboxes struct {
	ctx    context.Context
	cancel context.CancelFunc
	c      comm.Comm
	depth  int // pieces a destination's queue holds before send waits
	boxes  map[int]*outbox
}

type outbox struct {
	q      chan []byte
	done   chan struct{} // the goroutine ended
	failed chan struct{} // closed at the first error
	once   sync.Once
	err    error // the first error; read after failed or done closed
}

func newOutboxes(ctx context.Context, c comm.Comm, depth int) *outboxes {
	ctx, cancel := context.WithCancel(ctx)
	return &outboxes{ctx: ctx, cancel: cancel, c: c, depth: max(depth, 1), boxes: map[int]*outbox{}}
}

// send queues b for dst (under tagData); it waits while dst's queue is
// full.
func (o *outboxes) send(dst int, b []byte) error {
	ob := o.boxes[dst]
	if ob == nil {
		ob = &outbox{q: make(chan []byte, o.depth), done: make(chan struct{}), failed: make(chan struct{})}
		o.boxes[dst] = ob
		go ob.run(o.ctx, o.c, dst)
	}
	select {
	case <-ob.failed:
		putPiece(b)
		return ob.err
	default:
	}
	select {
	case ob.q <- b:
		return nil
	case <-ob.failed:
		putPiece(b)
		return ob.err
	case <-o.ctx.Done():
		putPiece(b)
		return o.ctx.Err()
	}
}

func (ob *outbox) run(ctx context.Context, c comm.Comm, dst int) {
	defer close(ob.done)
	for b := range ob.q {
		select {
		case <-ob.failed:
			putPiece(b)
			continue
		default:
		}
		if err := sendOwned(ctx, c, dst, tagData, b); err != nil {
			ob.once.Do(func() {
				ob.err = err
				close(ob.failed)
			})
		}
	}
}

// close ends every goroutine and returns the first send error. ok says
// that the operation succeeded so far: the queued pieces are then sent
// (their receivers take them); otherwise pending sends are cancelled.
func (o *outboxes) close(ok bool) error {
	if !ok {
		o.cancel()
	}
	for _, ob := range o.boxes {
		close(ob.q)
	}
	var first error
	for _, ob := range o.boxes {
		<-ob.done
		if ob.err != nil && first == nil {
			first = ob.err
		}
	}
	o.cancel()
	return first
}

package comm

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// LocalGroup is a world of ranks that all live in this process, one
// communicator per rank, for tests and single-process programs. Messages
// are copied between goroutines; nothing touches the network.
//
// Kill simulates losing a rank, the way a node failure looks to the
// survivors of a real job: every blocking call of every other rank that has
// to wait returns a *PeerLostError naming the killed rank, and the killed
// rank's own calls return an error wrapping ErrClosed.
type LocalGroup struct {
	hosts []string
	boxes []*mailbox
	comms []*group

	mu     sync.Mutex
	lost   *PeerLostError // first rank killed
	killed []string       // reason rank r was killed; "" while alive
	closed []bool
}

// NewLocal returns one communicator per entry of hosts, all in this process;
// rank i reports node hosts[i] (see doc/seams.md, section 1). Use
// NewLocalGroup to simulate failures with Kill.
func NewLocal(hosts []string) []Comm {
	return NewLocalGroup(hosts).Comms()
}

// NewLocalGroup is NewLocal returning the group, which can also Kill ranks.
func NewLocalGroup(hosts []string) *LocalGroup {
	p := len(hosts)
	lg := &LocalGroup{
		hosts:  slices.Clone(hosts),
		boxes:  make([]*mailbox, p),
		comms:  make([]*group, p),
		killed: make([]string, p),
		closed: make([]bool, p),
	}
	for r := range p {
		lg.boxes[r] = newMailbox()
		lg.comms[r] = newWorld(&localTransport{lg: lg, me: r})
	}
	return lg
}

// Comms returns the world communicators, indexed by rank.
func (lg *LocalGroup) Comms() []Comm {
	out := make([]Comm, len(lg.comms))
	for i, c := range lg.comms {
		out[i] = c
	}
	return out
}

// Kill simulates the loss of rank r (its process died or its node
// vanished). reason goes into the PeerLostError the survivors see; empty
// means "killed by test".
func (lg *LocalGroup) Kill(r int, reason string) {
	if reason == "" {
		reason = "killed by test"
	}
	lg.mu.Lock()
	if r < 0 || r >= len(lg.hosts) || lg.killed[r] != "" {
		lg.mu.Unlock()
		return
	}
	lg.killed[r] = reason
	if lg.lost == nil {
		lg.lost = &PeerLostError{Rank: r, Host: lg.hosts[r], Reason: reason}
	}
	lost := lg.lost
	lg.mu.Unlock()
	lg.boxes[r].setFail(fmt.Errorf("rank %d on %s was killed (%s): %w", r, lg.hosts[r], reason, ErrClosed))
	for i, b := range lg.boxes {
		if i != r {
			b.setFail(lost)
		}
	}
}

// Lost returns the first rank killed, or nil.
func (lg *LocalGroup) Lost() *PeerLostError {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.lost
}

// KillLocal kills the rank of a world communicator returned by NewLocal (see
// LocalGroup.Kill). It reports false if c is not one.
func KillLocal(c Comm, reason string) bool {
	g, ok := c.(*group)
	if !ok {
		return false
	}
	lt, ok := g.t.(*localTransport)
	if !ok {
		return false
	}
	lt.lg.Kill(lt.me, reason)
	return true
}

type localTransport struct {
	lg *LocalGroup
	me int
}

func (t *localTransport) rank() int         { return t.me }
func (t *localTransport) size() int         { return len(t.lg.hosts) }
func (t *localTransport) host(r int) string { return t.lg.hosts[r] }

func (t *localTransport) send(ctx context.Context, dst int, k key, data []byte) error {
	return t.deliver(ctx, dst, k, slices.Clone(data))
}

// SendOwned is Send for a sender that gives data up: from the call on, the
// sender must neither read nor write data (whatever the call returns), and
// the receiver's Recv may return data itself. Over the in-process transport
// (NewLocal) the message is then handed over without a copy, as one
// process's ranks share memory; a communicator implementing OwnedSender
// does its own (the MPI backend sends data without copying it first); over
// other transports it is Send, after which data is recycled (see Release).
func SendOwned(ctx context.Context, c Comm, dst, tag int, data []byte) error {
	if o, ok := c.(OwnedSender); ok {
		return o.SendOwned(ctx, dst, tag, data)
	}
	if g, ok := c.(*group); ok {
		if lt, ok := g.t.(*localTransport); ok {
			if err := g.check("send", dst); err != nil {
				return err
			}
			return lt.deliver(ctx, g.ranks[dst], key{comm: g.id, tag: int64(tag)}, data)
		}
	}
	// Send has copied or written out data when it returns, whatever it
	// returns (a cut frame is finished from a copy).
	err := c.Send(ctx, dst, tag, data)
	Release(data)
	return err
}

// OwnedSender is implemented by a communicator (outside this package) with
// a cheaper Send for a sender that gives its buffer up; see SendOwned.
type OwnedSender interface {
	SendOwned(ctx context.Context, dst, tag int, data []byte) error
}

// deliver queues msg, which the receiver owns from now on, for dst.
func (t *localTransport) deliver(ctx context.Context, dst int, k key, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lg := t.lg
	if err := lg.boxes[t.me].failed(); err != nil {
		return err
	}
	lg.mu.Lock()
	killed, closed := lg.killed[dst], lg.closed[dst]
	lg.mu.Unlock()
	if killed != "" {
		return &PeerLostError{Rank: dst, Host: lg.hosts[dst], Reason: killed}
	}
	if closed {
		return fmt.Errorf("send to rank %d on %s: %w", dst, lg.hosts[dst], ErrClosed)
	}
	lg.boxes[dst].put(t.me, k, msg)
	return nil
}

func (t *localTransport) recv(ctx context.Context, src int, k key) ([]byte, error) {
	return t.lg.boxes[t.me].take(ctx, src, k)
}

func (t *localTransport) close() error {
	lg := t.lg
	lg.mu.Lock()
	if lg.closed[t.me] {
		lg.mu.Unlock()
		return nil
	}
	lg.closed[t.me] = true
	lg.mu.Unlock()
	lg.boxes[t.me].setFail(fmt.Errorf("rank %d: %w", t.me, ErrClosed))
	gone := fmt.Errorf("rank %d on %s closed its communicator: %w", t.me, lg.hosts[t.me], ErrClosed)
	for i, b := range lg.boxes {
		if i != t.me {
			b.peerGone(t.me, gone)
		}
	}
	return nil
}

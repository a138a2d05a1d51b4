package comm

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrClosed is wrapped by the errors of calls on a closed communicator and of
// receives from a rank that closed its communicator.
var ErrClosed = errors.New("communicator closed")

// transport moves messages between the ranks of one world. It is the whole
// difference between NewLocal (goroutines, one process) and the TCP
// transport; the collectives and Split are written once, over it, in group.
type transport interface {
	rank() int
	size() int
	host(r int) string
	// send delivers a copy of data to world rank dst under k (FIFO per
	// (src, dst, k)); data may be reused once it returns.
	send(ctx context.Context, dst int, k key, data []byte) error
	// recv returns the next message from world rank src under k.
	recv(ctx context.Context, src int, k key) ([]byte, error)
	close() error
}

// group is a communicator: a list of world ranks over a transport. The world
// communicator has id 0 and ranks 0..P-1; Split derives children.
type group struct {
	t      transport
	id     uint64
	ranks  []int // world rank of each rank of this communicator
	me     int   // my rank in this communicator
	seq    uint64
	parent *group
	closed atomic.Bool

	mu       sync.Mutex
	children []*group
}

func newWorld(t transport) *group {
	ranks := make([]int, t.size())
	for i := range ranks {
		ranks[i] = i
	}
	return &group{t: t, ranks: ranks, me: t.rank()}
}

func (g *group) Rank() int         { return g.me }
func (g *group) Size() int         { return len(g.ranks) }
func (g *group) Host(r int) string { return g.t.host(g.ranks[r]) }

func (g *group) isClosed() bool {
	for c := g; c != nil; c = c.parent {
		if c.closed.Load() {
			return true
		}
	}
	return false
}

func (g *group) check(what string, peer int) error {
	if g.isClosed() {
		return fmt.Errorf("comm: %s on rank %d: %w", what, g.me, ErrClosed)
	}
	if peer < 0 || peer >= len(g.ranks) {
		return fmt.Errorf("comm: %s on rank %d: rank %d out of range [0,%d)", what, g.me, peer, len(g.ranks))
	}
	return nil
}

func (g *group) Send(ctx context.Context, dst, tag int, data []byte) error {
	if err := g.check("send", dst); err != nil {
		return err
	}
	return g.t.send(ctx, g.ranks[dst], key{comm: g.id, tag: int64(tag)}, data)
}

func (g *group) Recv(ctx context.Context, src, tag int) ([]byte, error) {
	if err := g.check("recv", src); err != nil {
		return nil, err
	}
	return g.t.recv(ctx, g.ranks[src], key{comm: g.id, tag: int64(tag)})
}

// coll is one collective call: its sequence number picks the message
// streams, so consecutive collectives never mix their messages.
type coll struct {
	g    *group
	name string
	seq  uint64
	base int // added to rounds: parts of one collective use disjoint rounds
}

func (g *group) begin(name string, root int) (coll, error) {
	if g.isClosed() {
		return coll{}, fmt.Errorf("comm: %s on rank %d: %w", name, g.me, ErrClosed)
	}
	if root < 0 || root >= len(g.ranks) {
		return coll{}, fmt.Errorf("comm: %s on rank %d: root %d out of range [0,%d)", name, g.me, root, len(g.ranks))
	}
	g.seq++
	return coll{g: g, name: name, seq: g.seq}, nil
}

func (c coll) key(round int) key {
	return key{comm: c.g.id, sys: true, tag: int64(c.seq<<16) | int64(c.base+round)}
}

func (c coll) send(ctx context.Context, dst, round int, data []byte) error {
	if err := c.g.t.send(ctx, c.g.ranks[dst], c.key(round), data); err != nil {
		return c.wrap(err)
	}
	return nil
}

func (c coll) recv(ctx context.Context, src, round int) ([]byte, error) {
	b, err := c.g.t.recv(ctx, c.g.ranks[src], c.key(round))
	if err != nil {
		return nil, c.wrap(err)
	}
	return b, nil
}

func (c coll) wrap(err error) error {
	return fmt.Errorf("comm: %s on rank %d of %d: %w", c.name, c.g.me, len(c.g.ranks), err)
}

// Barrier is a dissemination barrier: ceil(log2 P) rounds, in round k rank i
// signals i+2^k and waits for i-2^k.
func (g *group) Barrier(ctx context.Context) error {
	c, err := g.begin("barrier", 0)
	if err != nil {
		return err
	}
	p := len(g.ranks)
	for k, d := 0, 1; d < p; k, d = k+1, d*2 {
		if err := c.send(ctx, (g.me+d)%p, k, nil); err != nil {
			return err
		}
		if _, err := c.recv(ctx, (g.me-d+p)%p, k); err != nil {
			return err
		}
	}
	return nil
}

// Binomial trees over virtual ranks v = (rank - root) mod P: the parent of
// v is v with its lowest set bit cleared, its children are v + 2^k for every
// 2^k below that bit (every 2^k < P for the root).

func lowbit(v, p int) int {
	if v == 0 {
		m := 1
		for m < p {
			m *= 2
		}
		return m
	}
	return v & -v
}

// Bcast sends root's data down a binomial tree: ceil(log2 P) steps.
func (g *group) Bcast(ctx context.Context, root int, data []byte) ([]byte, error) {
	c, err := g.begin("bcast", root)
	if err != nil {
		return nil, err
	}
	return c.bcast(ctx, root, data)
}

func (c coll) bcast(ctx context.Context, root int, data []byte) ([]byte, error) {
	p := len(c.g.ranks)
	v := (c.g.me - root + p) % p
	lb := lowbit(v, p)
	if v != 0 {
		b, err := c.recv(ctx, (v-lb+root)%p, 0)
		if err != nil {
			return nil, err
		}
		data = b
	} else {
		data = slices.Clone(data)
	}
	for d := lb / 2; d >= 1; d /= 2 {
		if v+d < p {
			if err := c.send(ctx, (v+d+root)%p, 0, data); err != nil {
				return nil, err
			}
		}
	}
	return data, nil
}

// Gather collects each subtree's data up a binomial tree; a message carries
// the contiguous virtual ranks of the sender's subtree.
func (g *group) Gather(ctx context.Context, root int, data []byte) ([][]byte, error) {
	c, err := g.begin("gather", root)
	if err != nil {
		return nil, err
	}
	return c.gather(ctx, root, data)
}

func (c coll) gather(ctx context.Context, root int, data []byte) ([][]byte, error) {
	p := len(c.g.ranks)
	v := (c.g.me - root + p) % p
	lb := lowbit(v, p)
	n := min(lb, p-v) // size of my subtree: virtual ranks v..v+n-1
	parts := make([][]byte, n)
	parts[0] = slices.Clone(data)
	for d := 1; d < lb && v+d < p; d *= 2 {
		b, err := c.recv(ctx, (v+d+root)%p, 0)
		if err != nil {
			return nil, err
		}
		sub, err := decodeParts(b)
		if err != nil || len(sub) != min(d, p-v-d) {
			return nil, c.wrap(fmt.Errorf("bad gather message from rank %d (%d parts): %v", (v+d+root)%p, len(sub), err))
		}
		copy(parts[d:], sub)
	}
	if v != 0 {
		if err := c.send(ctx, (v-lb+root)%p, 0, encodeParts(parts)); err != nil {
			return nil, err
		}
		return nil, nil
	}
	out := make([][]byte, p)
	for i, b := range parts {
		out[(i+root)%p] = b
	}
	return out, nil
}

// Allgather is a gather to rank 0 and a broadcast of the result: 2 log2 P
// steps.
func (g *group) Allgather(ctx context.Context, data []byte) ([][]byte, error) {
	c, err := g.begin("allgather", 0)
	if err != nil {
		return nil, err
	}
	return c.allgather(ctx, data)
}

func (c coll) allgather(ctx context.Context, data []byte) ([][]byte, error) {
	parts, err := c.gather(ctx, 0, data)
	if err != nil {
		return nil, err
	}
	var enc []byte
	if c.g.me == 0 {
		enc = encodeParts(parts)
	}
	c2 := c
	c2.base = 1 << 15 // streams of its own, distinct from the gather's
	enc, err = c2.bcast(ctx, 0, enc)
	if err != nil {
		return nil, err
	}
	parts, err = decodeParts(enc)
	if err != nil || len(parts) != len(c.g.ranks) {
		return nil, c.wrap(fmt.Errorf("bad allgather result (%d parts): %v", len(parts), err))
	}
	return parts, nil
}

// Allreduce is recursive doubling (log2 P steps); with P not a power of two
// the first 2r ranks fold pairwise first and get the result back at the end.
func (g *group) Allreduce(ctx context.Context, op Op, vals []int64) ([]int64, error) {
	c, err := g.begin("allreduce", 0)
	if err != nil {
		return nil, err
	}
	if op < OpSum || op > OpOr {
		return nil, c.wrap(fmt.Errorf("unknown operator %v", op))
	}
	acc := slices.Clone(vals)
	if op == OpAnd || op == OpOr {
		for i, x := range acc {
			acc[i] = b2i(x != 0)
		}
	}
	p := len(g.ranks)
	me := g.me
	p2 := 1
	for p2*2 <= p {
		p2 *= 2
	}
	rem := p - p2
	combine := func(from int, b []byte) error {
		other, err := decodeInts(b)
		if err != nil {
			return c.wrap(fmt.Errorf("bad message from rank %d: %v", from, err))
		}
		if len(other) != len(acc) {
			return c.wrap(fmt.Errorf("rank %d passed %d values, rank %d passed %d: every rank must pass the same number", from, len(other), me, len(vals)))
		}
		reduce(op, acc, other)
		return nil
	}
	// Fold: among ranks < 2*rem, even ranks hand their values to the odd
	// neighbour and sit out the doubling.
	newRank := me - rem
	if me < 2*rem {
		if me%2 == 0 {
			if err := c.send(ctx, me+1, 0, encodeInts(acc)); err != nil {
				return nil, err
			}
			b, err := c.recv(ctx, me+1, 1)
			if err != nil {
				return nil, err
			}
			out, err := decodeInts(b)
			if err != nil {
				return nil, c.wrap(fmt.Errorf("bad result from rank %d: %v", me+1, err))
			}
			return out, nil
		}
		b, err := c.recv(ctx, me-1, 0)
		if err != nil {
			return nil, err
		}
		if err := combine(me-1, b); err != nil {
			return nil, err
		}
		newRank = me / 2
	}
	real := func(nr int) int {
		if nr < rem {
			return nr*2 + 1
		}
		return nr + rem
	}
	for k, d := 2, 1; d < p2; k, d = k+1, d*2 {
		peer := real(newRank ^ d)
		if err := c.send(ctx, peer, k, encodeInts(acc)); err != nil {
			return nil, err
		}
		b, err := c.recv(ctx, peer, k)
		if err != nil {
			return nil, err
		}
		if err := combine(peer, b); err != nil {
			return nil, err
		}
	}
	if me < 2*rem {
		if err := c.send(ctx, me-1, 1, encodeInts(acc)); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func reduce(op Op, acc, other []int64) {
	for i, y := range other {
		switch op {
		case OpSum:
			acc[i] += y
		case OpMin:
			acc[i] = min(acc[i], y)
		case OpMax:
			acc[i] = max(acc[i], y)
		case OpAnd:
			acc[i] = b2i(acc[i] != 0 && y != 0)
		case OpOr:
			acc[i] = b2i(acc[i] != 0 || y != 0)
		}
	}
}

// Split allgathers (color, key) and forms the groups locally; the child's
// id is derived from the parent's id, the call's sequence number and the
// color, so every member computes the same id without another message.
func (g *group) Split(ctx context.Context, color, key int) (Comm, error) {
	c, err := g.begin("split", 0)
	if err != nil {
		return nil, err
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], uint64(int64(color)))
	binary.LittleEndian.PutUint64(b[8:], uint64(int64(key)))
	all, err := c.allgather(ctx, b[:])
	if err != nil {
		return nil, err
	}
	if color < 0 {
		return nil, nil
	}
	type member struct{ key, old int }
	var ms []member
	for r, x := range all {
		if len(x) != 16 {
			return nil, c.wrap(fmt.Errorf("bad split message from rank %d", r))
		}
		if int(int64(binary.LittleEndian.Uint64(x))) == color {
			ms = append(ms, member{int(int64(binary.LittleEndian.Uint64(x[8:]))), r})
		}
	}
	slices.SortFunc(ms, func(a, b member) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.old, b.old))
	})
	olds := make([]int, len(ms))
	for i, m := range ms {
		olds[i] = m.old
	}
	return g.child(c.seq, b[:8], olds), nil
}

// SplitString is Split with a string color; members keep their old order.
func (g *group) SplitString(ctx context.Context, color string) (Comm, error) {
	c, err := g.begin("split", 0)
	if err != nil {
		return nil, err
	}
	all, err := c.allgather(ctx, []byte(color))
	if err != nil {
		return nil, err
	}
	var olds []int
	for r, x := range all {
		if string(x) == color {
			olds = append(olds, r)
		}
	}
	return g.child(c.seq, append([]byte("s"), color...), olds), nil
}

func (g *group) child(seq uint64, color []byte, olds []int) *group {
	h := fnv.New64a()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], g.id)
	binary.LittleEndian.PutUint64(b[8:], seq)
	h.Write(b[:])
	h.Write(color)
	id := h.Sum64()
	if id == 0 {
		id = 1 // 0 is the world
	}
	ch := &group{t: g.t, id: id, parent: g}
	for i, o := range olds {
		ch.ranks = append(ch.ranks, g.ranks[o])
		if o == g.me {
			ch.me = i
		}
	}
	g.mu.Lock()
	g.children = append(g.children, ch)
	g.mu.Unlock()
	return ch
}

// Close closes the communicator; closing the world closes the transport and
// so every communicator split from it.
func (g *group) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	if g.parent == nil {
		return g.t.close()
	}
	return nil
}

// encodeParts packs byte slices as a count and length-prefixed entries.
func encodeParts(parts [][]byte) []byte {
	n := binary.MaxVarintLen64
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	out := make([]byte, 0, n)
	out = binary.AppendUvarint(out, uint64(len(parts)))
	for _, p := range parts {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

func decodeParts(b []byte) ([][]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errors.New("bad part count")
	}
	b = b[k:]
	parts := make([][]byte, n)
	for i := range parts {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("bad length of part %d", i)
		}
		parts[i] = b[k : k+int(l) : k+int(l)]
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, errors.New("trailing bytes")
	}
	return parts, nil
}

func encodeInts(v []int64) []byte {
	out := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(out[8*i:], uint64(x))
	}
	return out
}

func decodeInts(b []byte) ([]int64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("length %d is not a multiple of 8", len(b))
	}
	v := make([]int64, len(b)/8)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return v, nil
}

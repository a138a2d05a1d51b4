//go:build scrmpi

package mpicomm

// #include "mpicomm.h"
import "C"

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/scr-go/scr/comm"
)

// Options configure a World.
type Options struct {
	// Comm are the options of the heartbeat ring (comm.FromAllgather):
	// Timeout is the detection bound (default SCR_COMM_TIMEOUT, else 3s),
	// Node this rank's node name (default SCR_NODE_NAME, else the short
	// host name), OnPeerLost the reaction to a lost peer (default: the
	// fatal policy, exit comm.ExitPeerLost).
	Comm comm.Options
}

// world is what every communicator of one World shares.
type world struct {
	eng   *Engine
	hosts []string // node of every world rank
	tagUB int
	hb    comm.Comm // heartbeat ring; nil on one rank

	lostOnce sync.Once
	lost     chan struct{} // closed once a peer was lost
	lostErr  *comm.PeerLostError
}

// Comm is a communicator over MPI. The world one comes from NewWorld;
// Split and SplitString derive others. Its blocking calls must run while
// some thread serves the engine (Engine.Serve).
type Comm struct {
	w      *world
	h      C.MPI_Comm
	rank   int
	size   int
	ranks  []int // world rank of each member
	parent *Comm
	closed atomic.Bool

	mu       sync.Mutex
	children []*Comm
}

var _ comm.Comm = (*Comm)(nil)
var _ comm.OwnedSender = (*Comm)(nil)

// NewWorld duplicates MPI_COMM_WORLD, learns every rank's node and starts
// the heartbeat ring (collective over MPI_COMM_WORLD). MPI must be
// initialized; eng must be served while it runs.
func NewWorld(ctx context.Context, eng *Engine, opts Options) (*Comm, error) {
	if !Initialized() {
		return nil, ErrNoMPI
	}
	w := &world{eng: eng, lost: make(chan struct{})}
	c := &Comm{w: w}
	var err error
	done := make(chan struct{})
	if e := eng.submit(ctx, func() {
		defer close(done)
		if rc := C.scrgo_mpi_dup_world(&c.h); rc != C.MPI_SUCCESS {
			err = mpiError("MPI_Comm_dup(MPI_COMM_WORLD)", rc)
			return
		}
		var r, s C.int
		if rc := C.scrgo_mpi_rank_size(c.h, &r, &s); rc != C.MPI_SUCCESS {
			err = mpiError("MPI_Comm_rank", rc)
			return
		}
		c.rank, c.size = int(r), int(s)
		w.tagUB = int(C.scrgo_mpi_tag_ub(c.h))
	}); e != nil {
		return nil, e
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("mpicomm: %w", err)
	}
	c.ranks = make([]int, c.size)
	for i := range c.ranks {
		c.ranks[i] = i
	}
	w.hosts = make([]string, c.size)

	// The heartbeat ring also tells every rank its peers' nodes. Under the
	// default fatal policy a loss ends the process; a caller's policy
	// runs after the waits of this world were ended.
	o := opts.Comm
	if user := o.OnPeerLost; user != nil {
		o.OnPeerLost = func(e *comm.PeerLostError) {
			w.lostOnce.Do(func() {
				w.lostErr = e
				close(w.lost)
			})
			user(e)
		}
	}
	hb, err := comm.FromAllgather(ctx, o, c.rank, c.size, c.Allgather)
	if err != nil {
		c.freeHandle()
		return nil, err
	}
	w.hb = hb
	for r := range w.hosts {
		w.hosts[r] = hb.Host(r)
	}
	return c, nil
}

func (c *Comm) Rank() int         { return c.rank }
func (c *Comm) Size() int         { return c.size }
func (c *Comm) Host(r int) string { return c.w.hosts[c.ranks[r]] }

func (c *Comm) isClosed() bool {
	for x := c; x != nil; x = x.parent {
		if x.closed.Load() {
			return true
		}
	}
	return false
}

func (c *Comm) errorf(what string, err error) error {
	return fmt.Errorf("mpicomm: %s on rank %d of %d: %w", what, c.rank, c.size, err)
}

func (c *Comm) check(what string, peer int) error {
	if c.isClosed() {
		return c.errorf(what, comm.ErrClosed)
	}
	if peer < 0 || peer >= c.size {
		return c.errorf(what, fmt.Errorf("rank %d out of range [0,%d)", peer, c.size))
	}
	select {
	case <-c.w.lost:
		return c.errorf(what, c.w.lostErr)
	default:
	}
	return nil
}

func (c *Comm) checkTag(what string, tag int) error {
	if tag < 0 || tag > c.w.tagUB {
		return c.errorf(what, fmt.Errorf("tag %d outside MPI's range [0,%d] (MPI_TAG_UB)", tag, c.w.tagUB))
	}
	return nil
}

// start runs post on the serving thread; post either posts a request and
// tracks it (e.track) or finishes o with an error. If post cannot even be
// queued, o's blocks are given back here.
func (c *Comm) start(ctx context.Context, what string, o *op, post func(e *Engine)) error {
	if err := c.w.eng.submit(ctx, func() { post(c.w.eng) }); err != nil {
		o.unposted()
		return c.errorf(what, err)
	}
	return c.wait(ctx, what, o)
}

// wait waits for o, a context or a lost peer. On success the caller reads
// o's blocks and then calls o.release.
func (c *Comm) wait(ctx context.Context, what string, o *op) error {
	select {
	case <-o.done:
		if o.err != nil {
			o.release()
			return c.errorf(what, o.err)
		}
		return nil
	case <-ctx.Done():
		o.abandon()
		return c.errorf(what, ctx.Err())
	case <-c.w.lost:
		o.abandon()
		return c.errorf(what, c.w.lostErr)
	}
}

// posted finishes o with MPI's error, or tracks its request.
func posted(e *Engine, o *op, call string, rc C.int, r C.MPI_Request) {
	if rc != C.MPI_SUCCESS {
		o.finish(mpiError(call, rc))
		return
	}
	e.track(r, o)
}

// Send sends data: it is copied to a C block (stage.go) and the call
// returns once MPI has the message (the send is posted), as the comm
// contract lets it; the request completes in the engine, during this SCR
// call or a later one, and Close discards what no peer received. So no
// algorithm deadlocks on two ranks sending large messages to each other
// first, as over TCP.
func (c *Comm) Send(ctx context.Context, dst, tag int, data []byte) error {
	return c.send(ctx, dst, tag, data, false)
}

// send posts data to dst: staged in C memory, or, when owned (see
// SendOwned), as it is, given back to comm's pool once sent.
func (c *Comm) send(ctx context.Context, dst, tag int, data []byte, owned bool) error {
	n, err := c.sendable(dst, tag, len(data))
	if err != nil {
		if owned {
			comm.Release(data)
		}
		return err
	}
	o := newOp() // completes when MPI completes the send
	switch {
	case owned:
		o.sent = data
	case n > 0:
		o.free = []*cbuf{staged(data)}
	}
	p := newOp() // completes when the send is posted
	if err := c.w.eng.submit(ctx, func() {
		var r C.MPI_Request
		if rc := C.scrgo_mpi_isend(o.msgPtr(), n, C.int(dst), C.int(tag), c.h, &r); rc != C.MPI_SUCCESS {
			o.finish(nil)
			p.finish(mpiError("MPI_Isend", rc))
			return
		}
		c.w.eng.track(r, o)
		p.finish(nil)
	}); err != nil {
		o.unposted()
		return c.errorf("send", err)
	}
	return c.wait(ctx, "send", p)
}

// sendable checks a send to dst with tag of size bytes and returns its
// MPI count.
func (c *Comm) sendable(dst, tag, size int) (C.int, error) {
	if err := c.check("send", dst); err != nil {
		return 0, err
	}
	if err := c.checkTag("send", tag); err != nil {
		return 0, err
	}
	n, err := count(size)
	if err != nil {
		return 0, c.errorf("send", err)
	}
	return n, nil
}

// msgPtr is the address of a send's data: staged, or the owned buffer.
func (o *op) msgPtr() unsafe.Pointer {
	if o.sent != nil {
		return unsafe.Pointer(unsafe.SliceData(o.sent))
	}
	if len(o.free) == 0 {
		return nil
	}
	return o.free[0].ptr()
}

// SendOwned is Send for a caller that gives data up. A buffer from comm's
// arena (comm.Unmanaged: outside the Go heap, never unmapped) goes to MPI
// as it is and back to comm's pool when the send completes; any other is
// staged in C memory as by Send and goes back to the pool at once.
func (c *Comm) SendOwned(ctx context.Context, dst, tag int, data []byte) error {
	if len(data) == 0 || !comm.Unmanaged(data) {
		err := c.Send(ctx, dst, tag, data)
		comm.Release(data)
		return err
	}
	return c.send(ctx, dst, tag, data, true)
}

// Recv receives the next message from src with tag, of any size.
func (c *Comm) Recv(ctx context.Context, src, tag int) ([]byte, error) {
	if err := c.check("recv", src); err != nil {
		return nil, err
	}
	if err := c.checkTag("recv", tag); err != nil {
		return nil, err
	}
	o := newOp()
	p := &probe{src: C.int(src), tag: C.int(tag), comm: c.h, o: o}
	if err := c.start(ctx, "recv", o, func(e *Engine) { e.probes = append(e.probes, p) }); err != nil {
		return nil, err
	}
	if b := o.got; b != nil { // received in place
		o.got = nil
		o.release()
		return b, nil
	}
	out := comm.Buffer(o.n) // recycled: the caller may comm.Release it
	if o.n > 0 {
		copy(out, o.msg.b[:o.n])
	}
	o.release()
	return out, nil
}

func (c *Comm) collective(what string) error {
	if c.isClosed() {
		return c.errorf(what, comm.ErrClosed)
	}
	select {
	case <-c.w.lost:
		return c.errorf(what, c.w.lostErr)
	default:
	}
	return nil
}

func (c *Comm) Barrier(ctx context.Context) error {
	if err := c.collective("barrier"); err != nil {
		return err
	}
	o := newOp()
	return c.start(ctx, "barrier", o, func(e *Engine) {
		var r C.MPI_Request
		posted(e, o, "MPI_Ibarrier", C.scrgo_mpi_ibarrier(c.h, &r), r)
	})
}

// ibcast broadcasts buf (the same length on every rank) from root, in
// place.
func (c *Comm) ibcast(ctx context.Context, root int, buf []byte) error {
	n, err := count(len(buf))
	if err != nil {
		return c.errorf("bcast", err)
	}
	if n == 0 {
		return nil
	}
	o := newOp()
	s := getStage(len(buf))
	if c.rank == root {
		copy(s.b, buf)
	}
	o.keep = []*cbuf{s}
	if err := c.start(ctx, "bcast", o, func(e *Engine) {
		var r C.MPI_Request
		posted(e, o, "MPI_Ibcast", C.scrgo_mpi_ibcast(s.ptr(), n, C.int(root), c.h, &r), r)
	}); err != nil {
		return err
	}
	if c.rank != root {
		copy(buf, s.b[:n])
	}
	o.release()
	return nil
}

// bcastInline is the size of the first broadcast of Bcast: the length and
// up to this many bytes less 8 of the data, so small messages (the
// library's decisions and records) take one collective.
const bcastInline = 4096

// Bcast broadcasts root's data: one MPI_Ibcast of a fixed-size head with
// the length, and a second for the rest of a long message.
func (c *Comm) Bcast(ctx context.Context, root int, data []byte) ([]byte, error) {
	if err := c.collective("bcast"); err != nil {
		return nil, err
	}
	if root < 0 || root >= c.size {
		return nil, c.errorf("bcast", fmt.Errorf("root %d out of range [0,%d)", root, c.size))
	}
	head := make([]byte, bcastInline)
	if c.rank == root {
		binary.LittleEndian.PutUint64(head, uint64(len(data)))
		copy(head[8:], data)
	}
	if err := c.ibcast(ctx, root, head); err != nil {
		return nil, err
	}
	if c.rank == root {
		if len(data) > bcastInline-8 {
			if err := c.ibcast(ctx, root, data[bcastInline-8:]); err != nil {
				return nil, err
			}
		}
		return data, nil
	}
	n := binary.LittleEndian.Uint64(head)
	if n > 1<<40 {
		return nil, c.errorf("bcast", fmt.Errorf("bad length %d from root %d", n, root))
	}
	out := make([]byte, n)
	copy(out, head[8:])
	if n > bcastInline-8 {
		if err := c.ibcast(ctx, root, out[bcastInline-8:]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lengths allgathers (or gathers to root, root >= 0) every rank's int64s.
func (c *Comm) lengths(ctx context.Context, what string, root int, mine []int64) ([]int64, error) {
	k := len(mine)
	in, out := getStage(8*k), getStage(8*k*c.size)
	copy(in.i64(k), mine)
	o := newOp()
	o.free, o.keep = []*cbuf{in}, []*cbuf{out}
	err := c.start(ctx, what, o, func(e *Engine) {
		var r C.MPI_Request
		if root < 0 {
			rc := C.scrgo_mpi_iallgather_i64((*C.int64_t)(in.ptr()), C.int(k), (*C.int64_t)(out.ptr()), c.h, &r)
			posted(e, o, "MPI_Iallgather", rc, r)
			return
		}
		rc := C.scrgo_mpi_igather_i64((*C.int64_t)(in.ptr()), (*C.int64_t)(out.ptr()), C.int(root), c.h, &r)
		posted(e, o, "MPI_Igather", rc, r)
	})
	if err != nil {
		return nil, err
	}
	all := slices.Clone(out.i64(k * c.size))
	o.release()
	return all, nil
}

// layout stages MPI's counts and displacements of the lengths ls and
// returns the total.
func layout(ls []int64) (counts, displs *cbuf, total int, err error) {
	counts, displs = getStage(4*len(ls)), getStage(4*len(ls))
	cs, ds := counts.ints(len(ls)), displs.ints(len(ls))
	for i, l := range ls {
		if l < 0 || total+int(l) > 1<<31-1 {
			putStage(counts)
			putStage(displs)
			return nil, nil, 0, fmt.Errorf("the gathered data (%d bytes so far, %d more from rank %d) is over MPI's count limit", total, l, i)
		}
		cs[i], ds[i] = C.int(l), C.int(total)
		total += int(l)
	}
	return counts, displs, total, nil
}

// split copies the gathered data out of its block, one part per rank.
func split(buf *cbuf, ls []int64) [][]byte {
	total := 0
	for _, l := range ls {
		total += int(l)
	}
	all := make([]byte, total)
	if total > 0 {
		copy(all, buf.b[:total])
	}
	out := make([][]byte, len(ls))
	off := 0
	for i, l := range ls {
		out[i] = all[off : off+int(l) : off+int(l)]
		off += int(l)
	}
	return out
}

// Gather collects every rank's data on root (others get nil).
func (c *Comm) Gather(ctx context.Context, root int, data []byte) ([][]byte, error) {
	if err := c.collective("gather"); err != nil {
		return nil, err
	}
	if root < 0 || root >= c.size {
		return nil, c.errorf("gather", fmt.Errorf("root %d out of range [0,%d)", root, c.size))
	}
	n, err := count(len(data))
	if err != nil {
		return nil, c.errorf("gather", err)
	}
	ls, err := c.lengths(ctx, "gather", root, []int64{int64(len(data))})
	if err != nil {
		return nil, err
	}
	o := newOp()
	var counts, displs, buf *cbuf
	if c.rank == root {
		var total int
		if counts, displs, total, err = layout(ls); err != nil {
			return nil, c.errorf("gather", err)
		}
		buf = getStage(total)
		o.free, o.keep = []*cbuf{counts, displs}, []*cbuf{buf}
	}
	var mine *cbuf
	if n > 0 {
		mine = staged(data)
		o.free = append(o.free, mine)
	}
	err = c.start(ctx, "gather", o, func(e *Engine) {
		var r C.MPI_Request
		rc := C.scrgo_mpi_igatherv(mine.ptr(), n, buf.ptr(), (*C.int)(counts.ptr()), (*C.int)(displs.ptr()), C.int(root), c.h, &r)
		posted(e, o, "MPI_Igatherv", rc, r)
	})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	if c.rank == root {
		out = split(buf, ls)
	}
	o.release()
	return out, nil
}

// Allgather returns every rank's data on every rank.
func (c *Comm) Allgather(ctx context.Context, data []byte) ([][]byte, error) {
	if err := c.collective("allgather"); err != nil {
		return nil, err
	}
	n, err := count(len(data))
	if err != nil {
		return nil, c.errorf("allgather", err)
	}
	ls, err := c.lengths(ctx, "allgather", -1, []int64{int64(len(data))})
	if err != nil {
		return nil, err
	}
	counts, displs, total, err := layout(ls)
	if err != nil {
		return nil, c.errorf("allgather", err)
	}
	buf := getStage(total)
	o := newOp()
	o.free, o.keep = []*cbuf{counts, displs}, []*cbuf{buf}
	var mine *cbuf
	if n > 0 {
		mine = staged(data)
		o.free = append(o.free, mine)
	}
	err = c.start(ctx, "allgather", o, func(e *Engine) {
		var r C.MPI_Request
		rc := C.scrgo_mpi_iallgatherv(mine.ptr(), n, buf.ptr(), (*C.int)(counts.ptr()), (*C.int)(displs.ptr()), c.h, &r)
		posted(e, o, "MPI_Iallgatherv", rc, r)
	})
	if err != nil {
		return nil, err
	}
	out := split(buf, ls)
	o.release()
	return out, nil
}

// Allreduce combines vals over all ranks. The ranks first check that they
// pass the same number of values (MPI would hang or read past a buffer).
func (c *Comm) Allreduce(ctx context.Context, op comm.Op, vals []int64) ([]int64, error) {
	if err := c.collective("allreduce"); err != nil {
		return nil, err
	}
	code, err := opCode(op)
	if err != nil {
		return nil, c.errorf("allreduce", err)
	}
	lens, err := c.reduce(ctx, 1, []int64{int64(len(vals)), -int64(len(vals))}) // MPI_MIN
	if err != nil {
		return nil, err
	}
	if lens[0] != -lens[1] {
		return nil, c.errorf("allreduce", fmt.Errorf("ranks pass between %d and %d values; every rank must pass the same number", lens[0], -lens[1]))
	}
	if len(vals) == 0 {
		return []int64{}, nil
	}
	return c.reduce(ctx, code, vals)
}

func (c *Comm) reduce(ctx context.Context, code C.int, vals []int64) ([]int64, error) {
	k := len(vals)
	in, out := getStage(8*k), getStage(8*k)
	copy(in.i64(k), vals)
	o := newOp()
	o.free, o.keep = []*cbuf{in}, []*cbuf{out}
	err := c.start(ctx, "allreduce", o, func(e *Engine) {
		var r C.MPI_Request
		rc := C.scrgo_mpi_iallreduce_i64((*C.int64_t)(in.ptr()), (*C.int64_t)(out.ptr()), C.int(k), code, c.h, &r)
		posted(e, o, "MPI_Iallreduce", rc, r)
	})
	if err != nil {
		return nil, err
	}
	res := slices.Clone(out.i64(k))
	o.release()
	return res, nil
}

// Split forms sub-communicators by color, ordered by (key, old rank). The
// members are learnt from a non-blocking allgather first, so the blocking
// MPI_Comm_split only starts once every member has arrived.
func (c *Comm) Split(ctx context.Context, color, key int) (comm.Comm, error) {
	if err := c.collective("split"); err != nil {
		return nil, err
	}
	all, err := c.lengths(ctx, "split", -1, []int64{int64(color), int64(key)})
	if err != nil {
		return nil, err
	}
	return c.child(ctx, all, color, key)
}

// SplitString forms sub-communicators of the ranks with equal colors, in
// their old order.
func (c *Comm) SplitString(ctx context.Context, color string) (comm.Comm, error) {
	if err := c.collective("split"); err != nil {
		return nil, err
	}
	colors, err := c.Allgather(ctx, []byte(color))
	if err != nil {
		return nil, err
	}
	// The color number of a string is the first rank that has it.
	first := map[string]int{}
	all := make([]int64, 0, 2*c.size)
	for r, b := range colors {
		f, ok := first[string(b)]
		if !ok {
			f = r
			first[string(b)] = r
		}
		all = append(all, int64(f), 0)
	}
	return c.child(ctx, all, first[color], 0)
}

// child splits c with the (color, key) pairs every rank passed. MPI gets
// small colors and keys: a color's number is its first member, a rank's
// key its place in the order computed here.
func (c *Comm) child(ctx context.Context, all []int64, color, key int) (comm.Comm, error) {
	var members []int // ranks of c in the child, in child order
	if color >= 0 {
		for r := range c.size {
			if all[2*r] == int64(color) {
				members = append(members, r)
			}
		}
		slices.SortStableFunc(members, func(a, b int) int { return cmp.Compare(all[2*a+1], all[2*b+1]) })
	}
	mpiColor, mpiKey := -1, 0
	if color >= 0 {
		mpiColor = slices.Min(members)
		mpiKey = slices.Index(members, c.rank)
	}
	var h C.MPI_Comm
	var splitErr error
	o := newOp()
	if err := c.w.eng.submit(ctx, func() {
		if rc := C.scrgo_mpi_split(c.h, C.int(mpiColor), C.int(mpiKey), &h); rc != C.MPI_SUCCESS {
			splitErr = mpiError("MPI_Comm_split", rc)
		}
		o.finish(nil)
	}); err != nil {
		return nil, c.errorf("split", err)
	}
	if err := c.wait(ctx, "split", o); err != nil {
		return nil, err
	}
	if splitErr != nil {
		return nil, c.errorf("split", splitErr)
	}
	if color < 0 {
		return nil, nil
	}
	ch := &Comm{w: c.w, h: h, rank: mpiKey, size: len(members), parent: c, ranks: make([]int, len(members))}
	for i, r := range members {
		ch.ranks[i] = c.ranks[r]
	}
	c.mu.Lock()
	c.children = append(c.children, ch)
	c.mu.Unlock()
	return ch, nil
}

// drainFor bounds how long Close of a world waits for the sends of every
// rank to complete (see Engine.drain).
const drainFor = 2 * time.Second

// drain completes this world's outstanding sends and discards every
// message sent to this rank that nobody received, on every communicator of
// the world, until every closing rank is done (Engine.drain). It needs a
// thread serving the engine.
func (c *Comm) drain() {
	var hs []C.MPI_Comm
	var walk func(x *Comm)
	walk = func(x *Comm) {
		hs = append(hs, x.h)
		x.mu.Lock()
		kids := slices.Clone(x.children)
		x.mu.Unlock()
		for _, k := range kids {
			if !k.closed.Load() { // a freed handle must not reach MPI
				walk(k)
			}
		}
	}
	walk(c)
	ctx, cancel := context.WithTimeout(context.Background(), drainFor+time.Second)
	defer cancel()
	o := newOp()
	if c.w.eng.submit(ctx, func() { c.w.eng.drain(hs, time.Now().Add(drainFor)); o.finish(nil) }) == nil {
		select {
		case <-o.done:
		case <-ctx.Done():
		}
	}
}

// Close frees the communicator and its children; closing the world also
// says goodbye on the heartbeat ring, so the other ranks do not take this
// rank's exit for a loss. It needs a thread serving the engine for MPI
// (bounded: a few seconds).
func (c *Comm) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	if c.parent == nil {
		// The ring first (its goodbyes wait on the peers), then the drain,
		// whose barrier is the last thing the ranks do together: they
		// leave it, and reach MPI_Finalize, at nearly the same time.
		// (MPICH 4.0's MPI_Finalize can hang when one rank waits in its
		// PMI barrier while another still disconnects from it: fixed in
		// MPICH by pmodels/mpich#6596; doc/capi.md.)
		if c.w.hb != nil {
			if err := c.w.hb.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		c.drain()
	} else {
		// Off the parent's list: the world's drain walks the list, and
		// must not meet a freed handle (MPI aborts on it).
		c.parent.mu.Lock()
		c.parent.children = slices.DeleteFunc(c.parent.children, func(k *Comm) bool { return k == c })
		c.parent.mu.Unlock()
	}
	c.mu.Lock()
	kids := c.children
	c.children = nil
	c.mu.Unlock()
	for _, k := range kids {
		if err := k.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.freeHandle(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Comm) freeHandle() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o := newOp()
	var err error
	if e := c.w.eng.submit(ctx, func() {
		if rc := C.scrgo_mpi_comm_free(c.h); rc != C.MPI_SUCCESS {
			err = mpiError("MPI_Comm_free", rc)
		}
		o.finish(nil)
	}); e != nil {
		return c.errorf("close", e)
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		return c.errorf("close", ctx.Err())
	}
	if err != nil {
		return c.errorf("close", err)
	}
	return nil
}

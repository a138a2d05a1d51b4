//go:build scrmpi

package mpicomm

// #include "mpicomm.h"
import "C"

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/scr-go/scr/comm"
)

// Engine runs MPI operations on one thread. Goroutines submit them; the
// thread that calls Serve runs them and polls the outstanding requests
// until its done channel closes. Requests still outstanding then (their
// waiters gave up) are polled again by the next Serve.
//
// Everything but submit runs on the serving thread, so the engine's state
// needs no lock.
type Engine struct {
	ops chan func()

	reqs   []C.MPI_Request // outstanding requests (contiguous for MPI_Testsome)
	owners []*op           // the op each request completes
	idx    []C.int
	probes []*probe // receives waiting for a matching message, in order
}

// NewEngine returns an engine; nothing runs until Serve.
func NewEngine() *Engine {
	return &Engine{ops: make(chan func(), 64)}
}

// op is one MPI operation a goroutine waits for. Its C blocks (stage.go)
// are given back exactly once: free when the request completes; msg and
// keep, which hold what the waiter reads (a message, a collective's
// result), by the waiter once it read them, or by the engine at completion
// if the waiter gave up first.
type op struct {
	done chan struct{}
	err  error
	msg  *cbuf // a receive's message
	n    int   // its length
	keep []*cbuf
	free []*cbuf
	// A comm buffer MPI works on directly (comm.Unmanaged: no staging):
	// a SendOwned's data, given back when the send completes, or a
	// receive's message, which the waiter takes.
	sent, got []byte
	state     atomic.Int32 // opPending, opFinished, opAbandoned
}

const (
	opPending = iota
	opFinished
	opAbandoned
)

func newOp() *op { return &op{done: make(chan struct{})} }

// finish completes o on the serving thread.
func (o *op) finish(err error) {
	o.err = err
	for _, c := range o.free {
		putStage(c)
	}
	o.free = nil
	if o.sent != nil {
		comm.Release(o.sent)
		o.sent = nil
	}
	if !o.state.CompareAndSwap(opPending, opFinished) {
		o.release() // the waiter gave up
	}
	close(o.done)
}

// release gives back the blocks the waiter reads.
func (o *op) release() {
	putStage(o.msg)
	for _, c := range o.keep {
		putStage(c)
	}
	if o.got != nil {
		comm.Release(o.got)
	}
	o.msg, o.keep, o.got = nil, nil, nil
}

// abandon: the waiter gives up. A receive not yet matched is then
// withdrawn; a posted request still completes, and the engine gives its
// blocks back then (or the waiter now, if it completed already).
func (o *op) abandon() {
	if !o.state.CompareAndSwap(opPending, opAbandoned) {
		o.release()
	}
}

func (o *op) abandoned() bool { return o.state.Load() == opAbandoned }

// unposted gives every block back: the operation never reached MPI.
func (o *op) unposted() {
	for _, c := range o.free {
		putStage(c)
	}
	o.free = nil
	if o.sent != nil {
		comm.Release(o.sent)
		o.sent = nil
	}
	o.release()
}

// probe is a receive waiting for its message (MPI_Improbe, then
// MPI_Imrecv into a buffer of the message's size).
type probe struct {
	src, tag C.int
	comm     C.MPI_Comm
	o        *op
}

// submit queues f to run on the serving thread. It waits for room while
// no thread serves (between two SCR calls, say), bounded by ctx.
func (e *Engine) submit(ctx context.Context, f func()) error {
	select {
	case e.ops <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// track adds a posted request whose completion finishes o.
func (e *Engine) track(r C.MPI_Request, o *op) {
	e.reqs = append(e.reqs, r)
	e.owners = append(e.owners, o)
}

// busy says whether requests or receives are outstanding.
func (e *Engine) busy() bool { return len(e.reqs) > 0 || len(e.probes) > 0 }

// Serve runs submitted operations and polls MPI on the calling goroutine,
// which it locks to its thread, until done is closed. Call it on the thread
// the application calls MPI from.
func (e *Engine) Serve(done <-chan struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	C.scrgo_mpi_set_thread()
	idle := 0
	for {
		ran := e.runQueued()
		if e.busy() && e.progress() {
			idle = 0
			continue
		}
		if ran {
			idle = 0
			continue
		}
		select {
		case <-done:
			return
		default:
		}
		if !e.busy() {
			select {
			case f := <-e.ops:
				f()
			case <-done:
				return
			}
			continue
		}
		// Requests are outstanding but none completed: poll again at once
		// for a while (a message is usually close), then back off a little
		// so a waiting rank leaves the CPU to the ranks computing.
		// The waits are C calls: a Go yield or timer on this locked thread
		// hands its P over and back through futexes every time (most of a
		// waiting rank's CPU in a profile). An operation submitted
		// meanwhile waits at most one nap (100 µs).
		idle++
		if idle < 200 {
			C.scrgo_yield()
			continue
		}
		C.scrgo_nap(C.int(min(idle-199, 100)))
	}
}

// runQueued runs every operation queued now.
func (e *Engine) runQueued() bool {
	ran := false
	for {
		select {
		case f := <-e.ops:
			f()
			ran = true
		default:
			return ran
		}
	}
}

// progress matches waiting receives and completes finished requests; it
// says whether anything happened.
func (e *Engine) progress() bool {
	moved := false
	kept := e.probes[:0]
	for _, p := range e.probes {
		if p.o.abandoned() {
			p.o.finish(context.Canceled)
			moved = true
			continue
		}
		var flag, n C.int
		var msg C.MPI_Message
		if rc := C.scrgo_mpi_improbe(p.src, p.tag, p.comm, &flag, &msg, &n); rc != C.MPI_SUCCESS {
			p.o.finish(mpiError("MPI_Improbe", rc))
			moved = true
			continue
		}
		if flag == 0 {
			kept = append(kept, p)
			continue
		}
		moved = true
		p.o.n = int(n)
		var at unsafe.Pointer
		if n > 0 {
			// Large messages land in a comm buffer MPI may use directly
			// (the caller gets it without a copy); others are staged.
			if b := comm.Buffer(int(n)); comm.Unmanaged(b) {
				p.o.got, at = b, unsafe.Pointer(unsafe.SliceData(b))
			} else {
				comm.Release(b)
				p.o.msg = getStage(int(n))
				at = p.o.msg.ptr()
			}
		}
		var r C.MPI_Request
		if rc := C.scrgo_mpi_imrecv(at, n, &msg, &r); rc != C.MPI_SUCCESS {
			p.o.finish(mpiError("MPI_Imrecv", rc))
			continue
		}
		e.track(r, p.o)
	}
	clear(e.probes[len(kept):])
	e.probes = kept

	if len(e.reqs) == 0 {
		return moved
	}
	if cap(e.idx) < len(e.reqs) {
		e.idx = make([]C.int, len(e.reqs))
	}
	idx := e.idx[:len(e.reqs)]
	var n C.int
	if rc := C.scrgo_mpi_testsome(C.int(len(e.reqs)), &e.reqs[0], &n, &idx[0]); rc != C.MPI_SUCCESS {
		// MPI could not say which request failed: fail them all.
		err := mpiError("MPI_Testsome", rc)
		for _, o := range e.owners {
			o.finish(err)
		}
		clear(e.owners)
		e.reqs, e.owners = e.reqs[:0], e.owners[:0]
		return true
	}
	if n == 0 {
		return moved
	}
	for _, i := range idx[:n] {
		e.owners[i].finish(nil)
		e.owners[i] = nil
	}
	j := 0
	for i, o := range e.owners {
		if o != nil {
			e.reqs[j], e.owners[j] = e.reqs[i], o
			j++
		}
	}
	clear(e.owners[j:])
	e.reqs, e.owners = e.reqs[:j], e.owners[:j]
	return true
}

// drain runs on the serving thread at the close of a world (hs: its
// communicators, world first): it receives and drops every message sent to
// this rank that nobody received, until this rank's requests completed and
// then until every rank said so (an MPI_Ibarrier on the world posted once
// this rank's requests completed). So every send of every closing rank
// completes before MPI_Finalize, which could otherwise wait on a peer's
// rendezvous send that this rank never matched. Bounded by deadline (a
// rank that does not close).
func (e *Engine) drain(hs []C.MPI_Comm, deadline time.Time) {
	var all *op
	for time.Now().Before(deadline) {
		moved := e.progress()
		for _, h := range hs {
			for e.dropOne(h) {
				moved = true
			}
		}
		if all == nil && len(e.reqs) == 0 {
			all = newOp()
			var r C.MPI_Request
			if C.scrgo_mpi_ibarrier(hs[0], &r) != C.MPI_SUCCESS {
				return
			}
			e.track(r, all)
		}
		if all != nil && len(e.reqs) == 0 {
			return // the barrier completed too
		}
		if !moved {
			C.scrgo_yield() // not runtime.Gosched: see Serve
		}
	}
}

// dropOne receives one message nobody received on h, into a buffer that is
// dropped; it says whether there was one.
func (e *Engine) dropOne(h C.MPI_Comm) bool {
	var flag, n C.int
	var msg C.MPI_Message
	if C.scrgo_mpi_improbe(C.scrgo_mpi_any_source(), C.scrgo_mpi_any_tag(), h, &flag, &msg, &n) != C.MPI_SUCCESS || flag == 0 {
		return false
	}
	o := newOp()
	o.abandon() // nobody reads it: the engine gives the block back
	if n > 0 {
		o.msg = getStage(int(n))
	}
	var r C.MPI_Request
	if C.scrgo_mpi_imrecv(o.msg.ptr(), n, &msg, &r) != C.MPI_SUCCESS {
		o.finish(nil)
		return false
	}
	e.track(r, o)
	return true
}

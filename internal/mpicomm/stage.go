//go:build scrmpi

package mpicomm

// #include <stdlib.h>
import "C"

import (
	"math/bits"
	"sync"
	"unsafe"
)

// No buffer MPI sees lives in the Go heap: redundancy pieces come from
// comm's arena (comm.Unmanaged: mapped outside the heap, never unmapped)
// and go to MPI as they are; every other message is staged in C memory
// (malloc) here. On an RDMA network MPI registers the buffers of large messages with the
// network card and caches the registration, relying on hooks in libc to
// learn when memory is unmapped or given back. The Go runtime gives memory
// back with its own system calls (madvise), unseen by those hooks: a
// cached registration could then outlive the pages behind a Go buffer and
// a later message at the same address would carry stale data. Staging
// costs one copy on each side (measured in doc/performance.md) and keeps
// the Go heap out of MPI altogether, which also spares pinning.

// cbuf is a block of C memory.
type cbuf struct {
	p unsafe.Pointer
	b []byte // the whole block; len = capacity
}

// stages keeps released blocks by size class (power of two, at least 4 KiB)
// for reuse: the pool grows to the peak of bytes in flight and stays there.
var stages struct {
	mu    sync.Mutex
	free  map[int][]*cbuf
	inUse int // blocks handed out and not given back
}

// StagedBlocks is how many C blocks are in use: 0 once every operation
// completed and gave its blocks back (tests check it).
func StagedBlocks() int {
	stages.mu.Lock()
	defer stages.mu.Unlock()
	return stages.inUse
}

const minClass = 12 // 4 KiB

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// getStage returns a block of at least n bytes (contents undefined).
func getStage(n int) *cbuf {
	k := class(n)
	stages.mu.Lock()
	stages.inUse++
	if l := stages.free[k]; len(l) > 0 {
		c := l[len(l)-1]
		stages.free[k] = l[:len(l)-1]
		stages.mu.Unlock()
		return c
	}
	stages.mu.Unlock()
	size := 1 << k
	p := C.malloc(C.size_t(size))
	if p == nil {
		panic("mpicomm: out of memory for a message buffer")
	}
	return &cbuf{p: p, b: unsafe.Slice((*byte)(p), size)}
}

// putStage gives a block back (nil is ignored).
func putStage(c *cbuf) {
	if c == nil {
		return
	}
	k := class(len(c.b))
	stages.mu.Lock()
	if stages.free == nil {
		stages.free = map[int][]*cbuf{}
	}
	stages.free[k] = append(stages.free[k], c)
	stages.inUse--
	stages.mu.Unlock()
}

// staged copies b into a new block.
func staged(b []byte) *cbuf {
	c := getStage(len(b))
	copy(c.b, b)
	return c
}

// ptr is the block's address for MPI (nil: none).
func (c *cbuf) ptr() unsafe.Pointer {
	if c == nil {
		return nil
	}
	return c.p
}

// i64 views a block as int64s.
func (c *cbuf) i64(n int) []int64 { return unsafe.Slice((*int64)(c.p), n) }

// ints views a block as C ints.
func (c *cbuf) ints(n int) []C.int { return unsafe.Slice((*C.int)(c.p), n) }

package comm

import (
	"math/bits"
	"sync"
)

// Message buffers of 64 KiB to 16 MiB are recycled, one free list per
// power-of-two capacity (a buffer has up to twice the capacity asked for). Fresh memory costs a page fault per 4 KiB on first
// touch (and the kernel zeroes it), which for a program moving gigabytes
// through a few megabytes of pieces costs more than copying the data. The
// TCP transport receives messages into recycled buffers; SendOwned and
// Release give buffers back; Buffer takes one.
//
// The free lists keep up to keptMax bytes whatever the garbage collector
// does, so an application that checkpoints now and then (and collects
// garbage in between) finds its pieces still mapped; beyond that, buffers
// go to a sync.Pool, which a collection empties.
const (
	minPooledShift = 16 // 64 KiB
	maxPooledShift = 24 // 16 MiB: larger messages get exactly their size
	keptMax        = 32 << 20
)

var bufs struct {
	mu   sync.Mutex
	kept int // bytes in free
	free [maxPooledShift - minPooledShift + 1][][]byte
	pool [maxPooledShift - minPooledShift + 1]sync.Pool // of *[]byte
}

// Buffer returns a byte slice of length n, with undefined contents, for a
// message the caller fills and then gives up with SendOwned or Release.
// It may be memory that an earlier message used.
func Buffer(n int) []byte {
	if n < 1<<minPooledShift || n > 1<<maxPooledShift {
		return make([]byte, n)
	}
	c := bits.Len(uint(n-1)) - minPooledShift // smallest class with 1<<c >= n
	bufs.mu.Lock()
	// A kept buffer of the next class up serves too (the short last
	// piece of a chunk then takes no fresh memory); Release files it back
	// under its own capacity.
	for cc := c; cc <= min(c+1, maxPooledShift-minPooledShift); cc++ {
		if l := len(bufs.free[cc]); l > 0 {
			b := bufs.free[cc][l-1]
			bufs.free[cc][l-1] = nil
			bufs.free[cc] = bufs.free[cc][:l-1]
			bufs.kept -= cap(b)
			bufs.mu.Unlock()
			return b[:n]
		}
	}
	bufs.mu.Unlock()
	if p, ok := bufs.pool[c].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	b := make([]byte, 1<<(c+minPooledShift))
	populate(b)
	return b[:n]
}

// Release gives b back for reuse by later messages (Buffer, and the TCP
// transport's receives): a buffer returned by Recv, or one from Buffer,
// that the caller is done with. The caller must neither read nor write b
// (nor any slice sharing its memory) afterwards. Releasing is optional:
// a buffer that is not released is collected as garbage.
func Release(b []byte) {
	s := bits.Len(uint(cap(b))) - 1 // largest class with 1<<s <= cap(b)
	if s < minPooledShift {
		return
	}
	s = min(s, maxPooledShift)
	b = b[: 1<<s : 1<<s]
	c := s - minPooledShift
	bufs.mu.Lock()
	if bufs.kept+cap(b) <= keptMax {
		bufs.free[c] = append(bufs.free[c], b)
		bufs.kept += cap(b)
		bufs.mu.Unlock()
		return
	}
	bufs.mu.Unlock()
	p := new([]byte) // b itself stays on the stack on the path above
	*p = b
	bufs.pool[c].Put(p)
}

// Reserve makes sure count buffers that serve messages of n bytes are
// kept mapped and touched (within the bytes the free lists keep, 32 MiB),
// so the first operation that needs them does not pay for fresh memory: a
// program calls it where a delay is expected (the library's Init) for the
// pieces its redundancy scheme keeps in flight. It reports how many
// buffers it made.
//
// Mapping alone (populate) is not enough where a hypervisor shadows the
// guest's page tables: the first access of every page then still exits to
// the hypervisor. On the virtual machines measured (doc/performance.md),
// XOR, CRC and the socket copies of a run's first checkpoint took 1.5-4x
// their time in later checkpoints until the pieces were touched here.
func Reserve(n, count int) int {
	if n < 1<<minPooledShift || n > 1<<maxPooledShift || count < 1 {
		return 0
	}
	c := bits.Len(uint(n-1)) - minPooledShift
	size := 1 << (c + minPooledShift)
	made := 0
	for {
		bufs.mu.Lock()
		if len(bufs.free[c]) >= count || bufs.kept+size > keptMax {
			bufs.mu.Unlock()
			return made
		}
		bufs.kept += size // claimed before the allocation, outside the lock
		bufs.mu.Unlock()
		b := make([]byte, size)
		populate(b)
		touch(b)
		bufs.mu.Lock()
		bufs.free[c] = append(bufs.free[c], b)
		bufs.mu.Unlock()
		made++
	}
}

// touch writes a byte of every page of b (which must hold zeros), so that
// what a virtual machine's hypervisor does on a page's first access is done
// now.
func touch(b []byte) {
	for i := 0; i < len(b); i += pageSize {
		b[i] = 0
	}
}

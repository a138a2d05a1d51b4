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
	if l := len(bufs.free[c]); l > 0 {
		b := bufs.free[c][l-1]
		bufs.free[c][l-1] = nil
		bufs.free[c] = bufs.free[c][:l-1]
		bufs.kept -= cap(b)
		bufs.mu.Unlock()
		return b[:n]
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
	bufs.pool[c].Put(&b)
}

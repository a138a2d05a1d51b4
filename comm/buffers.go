package comm

import (
	"math/bits"
	"sync"
)

// Message buffers of 64 KiB and more are recycled through pools, one per
// power-of-two capacity. Fresh memory costs a page fault per 4 KiB on
// first touch (and the kernel zeroes it), which for a program moving
// gigabytes through a few megabytes of pieces is more than the copies of
// the data themselves. The TCP transport receives messages into pooled
// buffers; SendOwned and Release give buffers back; Buffer takes one.
const (
	minPooledShift = 16 // 64 KiB
	maxPooledShift = 30 // 1 GiB
)

var bufPools [maxPooledShift - minPooledShift + 1]sync.Pool // of *[]byte

// Buffer returns a byte slice of length n, with undefined contents, for a
// message the caller fills and then gives up with SendOwned or Release.
// It may be memory that an earlier message used.
func Buffer(n int) []byte {
	if n < 1<<minPooledShift || n > 1<<maxPooledShift {
		return make([]byte, n)
	}
	c := bits.Len(uint(n - 1)) // smallest c with 1<<c >= n
	if p, ok := bufPools[c-minPooledShift].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<c)
}

// Release gives b back for reuse by later messages (Buffer, and the TCP
// transport's receives): a buffer returned by Recv, or one from Buffer,
// that the caller is done with. The caller must neither read nor write b
// (nor any slice sharing its memory) afterwards. Releasing is optional:
// a buffer that is not released is collected as garbage.
func Release(b []byte) {
	c := bits.Len(uint(cap(b))) - 1 // largest c with 1<<c <= cap(b)
	if c < minPooledShift {
		return
	}
	c = min(c, maxPooledShift)
	b = b[:1<<c]
	bufPools[c-minPooledShift].Put(&b)
}

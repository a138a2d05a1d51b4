package comm

import (
	"math/bits"
	"sync"
	"unsafe"
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
	// The arena: memory for buffers of arenaMinShift and up, mapped
	// outside the Go heap in transparent huge pages, up to keptMax bytes.
	// First touch costs per page, and where a hypervisor shadows the
	// guest's page tables each 4 KiB page's first access exits to it
	// (mapping 64 MiB and touching it: 98 ms of CPU in 4 KiB pages, 3.4
	// ms in huge pages, on the VM of doc/performance.md). Its buffers are
	// never garbage: Release keeps them whatever keptMax says.
	arena      [][2]uintptr // [start, end) of each mapping
	arenaBytes int
}

// arenaMinShift: smaller classes come from the heap (a 2 MiB mapping
// carved into 64 KiB buffers would mostly sit unused).
const arenaMinShift = 19 // 512 KiB

// fresh makes new buffers of class c: from a new arena mapping (as many
// as fill it: the caller keeps the rest), else one from the heap, mapped
// in one call. Called without bufs.mu.
func fresh(c int) [][]byte {
	size := 1 << (c + minPooledShift)
	if c+minPooledShift >= arenaMinShift {
		chunk := max(size, hugePage)
		bufs.mu.Lock()
		ok := bufs.arenaBytes+chunk <= keptMax
		if ok {
			bufs.arenaBytes += chunk // claimed; given back if the mapping fails
		}
		bufs.mu.Unlock()
		if ok {
			if m := mapHuge(chunk); m != nil {
				start := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
				bufs.mu.Lock()
				bufs.arena = append(bufs.arena, [2]uintptr{start, start + uintptr(chunk)})
				bufs.mu.Unlock()
				out := make([][]byte, 0, chunk/size)
				for o := 0; o < chunk; o += size {
					out = append(out, m[o:o+size:o+size])
				}
				return out
			}
			bufs.mu.Lock()
			bufs.arenaBytes -= chunk
			bufs.mu.Unlock()
		}
	}
	b := make([]byte, size)
	populate(b)
	return [][]byte{b}
}

// Unmanaged says whether b's memory is outside the Go heap and stays
// mapped, unmoved by the Go runtime, for the life of the process: a buffer
// from Buffer that came from the arena. Such memory can be handed to a
// library that keeps its address beyond the call (an MPI request, an RDMA
// registration) without staging a copy in C memory.
func Unmanaged(b []byte) bool {
	if cap(b) == 0 {
		return false
	}
	bufs.mu.Lock()
	defer bufs.mu.Unlock()
	return inArena(b[:1])
}

// inArena says whether b's memory belongs to the arena (bufs.mu held).
func inArena(b []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for _, r := range bufs.arena {
		if p >= r[0] && p < r[1] {
			return true
		}
	}
	return false
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
	made := fresh(c)
	if len(made) > 1 {
		bufs.mu.Lock()
		for _, b := range made[1:] {
			bufs.free[c] = append(bufs.free[c], b)
			bufs.kept += cap(b)
		}
		bufs.mu.Unlock()
	}
	return made[0][:n]
}

// Release gives b back for reuse by later messages (Buffer, and the TCP
// transport's receives): a buffer returned by Recv, or one from Buffer,
// that the caller is done with. The caller must neither read nor write b
// (nor any slice sharing its memory) afterwards. Releasing is optional:
// a buffer that is not released is collected as garbage, or, from the
// arena, is lost to it (the arena is bounded; the heap serves beyond).
func Release(b []byte) {
	s := bits.Len(uint(cap(b))) - 1 // largest class with 1<<s <= cap(b)
	if s < minPooledShift {
		return
	}
	s = min(s, maxPooledShift)
	b = b[: 1<<s : 1<<s]
	c := s - minPooledShift
	bufs.mu.Lock()
	if bufs.kept+cap(b) <= keptMax || inArena(b) {
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
		bs := fresh(c)
		for _, b := range bs {
			touch(b)
		}
		bufs.mu.Lock()
		bufs.free[c] = append(bufs.free[c], bs...)
		bufs.kept += (len(bs) - 1) * size
		bufs.mu.Unlock()
		made += len(bs)
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

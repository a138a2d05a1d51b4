package comm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// mapHuge maps size bytes (a multiple of hugePage) of anonymous memory at
// a hugePage boundary, asks for transparent huge pages and maps them in,
// or returns nil. The memory is never unmapped: it belongs to the arena.
func mapHuge(size int) []byte {
	m, err := unix.MmapPtr(-1, 0, nil, uintptr(size+hugePage), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	head := int(-uintptr(m) & (hugePage - 1)) // bytes up to the first boundary
	start := unsafe.Add(m, head)
	// Give the unaligned slack back; what stays is exactly [start, start+size).
	if head > 0 {
		unix.MunmapPtr(m, uintptr(head))
	}
	if tail := hugePage - head; tail > 0 {
		unix.MunmapPtr(unsafe.Add(start, size), uintptr(tail))
	}
	b := unsafe.Slice((*byte)(start), size)
	// Without transparent huge pages (or with them off) the advice does
	// nothing and the memory is mapped in 4 KiB pages, as from the heap.
	unix.Madvise(b, unix.MADV_HUGEPAGE)
	unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	return b
}

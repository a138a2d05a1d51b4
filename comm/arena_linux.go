package comm

import (
	"syscall"
	"unsafe"
)

const (
	hugePage       = 2 << 20
	madvHugepage   = 14 // MADV_HUGEPAGE
	madvPopulateWr = madvPopulateWrite
)

// mapHuge maps size bytes (a multiple of hugePage) of anonymous memory at
// a hugePage boundary, asks for transparent huge pages and maps them in,
// or returns nil. The memory is never unmapped: it belongs to the arena.
func mapHuge(size int) []byte {
	m, err := syscall.Mmap(-1, 0, size+hugePage, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(m)))
	head := int((p+hugePage-1)&^(hugePage-1) - p)
	b := m[head : head+size : head+size]
	// Give the unaligned slack back; what stays is exactly b.
	if head > 0 {
		syscall.Syscall(syscall.SYS_MUNMAP, p, uintptr(head), 0)
	}
	if tail := hugePage - head; tail > 0 {
		syscall.Syscall(syscall.SYS_MUNMAP, p+uintptr(head+size), uintptr(tail), 0)
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	// Without transparent huge pages (or with them off) the advice does
	// nothing and the memory is mapped in 4 KiB pages, as from the heap.
	syscall.Syscall(syscall.SYS_MADVISE, start, uintptr(size), madvHugepage)
	syscall.Syscall(syscall.SYS_MADVISE, start, uintptr(size), madvPopulateWr)
	return b
}

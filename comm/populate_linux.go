package comm

import (
	"syscall"
	"unsafe"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

// populate maps the pages of a fresh buffer in one call instead of one
// page fault per 4 KiB on first touch (half the cost where faults are
// dear, e.g. in virtual machines). Contents are unchanged; kernels without
// MADV_POPULATE_WRITE refuse it and the buffer faults in as usual.
func populate(b []byte) {
	if len(b) < 2*pageSize {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (p + pageSize - 1) &^ (pageSize - 1)
	end := (p + uintptr(len(b))) &^ (pageSize - 1)
	if end > start {
		syscall.Syscall(syscall.SYS_MADVISE, start, end-start, madvPopulateWrite)
	}
}

const pageSize = 4096

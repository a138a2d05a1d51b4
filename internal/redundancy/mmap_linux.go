package redundancy

import (
	"os"
	"syscall"
)

// mapFile maps the first size bytes of f read-only, or returns nil (the
// caller then reads with pread).
func mapFile(f *os.File, size int64) []byte {
	if size <= 0 || int64(int(size)) != size {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Size() < size {
		return nil // pread reports the short file
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil
	}
	return b
}

func unmapFile(b []byte) {
	if b != nil {
		syscall.Munmap(b)
	}
}

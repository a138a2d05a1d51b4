package scr

import (
	"fmt"
	"syscall"
)

// spaceHint says when the file system holding dir is (nearly) full, so an
// invalid dataset's error names the likely cause.
func spaceHint(dir string) string {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return ""
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	total := int64(st.Blocks) * int64(st.Bsize)
	if free < 1<<20 || free*100 < total {
		return fmt.Sprintf("cache filesystem of %s is full (%d of %d bytes free): raise its size, lower SCR_CACHE_SIZE, or set SCR_CACHE_BASE", dir, free, total)
	}
	return ""
}

// freeBytes is the space an unprivileged writer may still use on the file
// system holding dir.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

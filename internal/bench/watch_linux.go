package bench

import (
	"context"
	"os"
	"syscall"
)

// watchReports returns a channel closed once out holds the reports of
// ranks 0..n-1, told by inotify as each report is closed after writing or
// renamed into place; nil (never ready) if out cannot be watched. The
// watch ends with ctx.
func watchReports(ctx context.Context, out string, n int) <-chan struct{} {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	if _, err := syscall.InotifyAddWatch(fd, out, syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		return nil
	}
	// Non-blocking: Go's poller waits for it, and Close ends a Read.
	f := os.NewFile(uintptr(fd), "inotify "+out)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	done := make(chan struct{})
	// Owner: the caller's ctx; stop: ctx ends (f closed) or all reports are there.
	go func() {
		defer stop()
		defer f.Close()
		buf := make([]byte, 4096)
		for !reportsDone(out, n) {
			if _, err := f.Read(buf); err != nil {
				return
			}
		}
		close(done)
	}()
	return done
}

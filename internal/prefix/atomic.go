package prefix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrCorrupt is wrapped by every error about a file that exists but cannot be
// decoded (truncated, not JSON, wrong version, inconsistent fields).
var ErrCorrupt = errors.New("corrupt file")

// CorruptError says which prefix file is damaged and why. It wraps ErrCorrupt
// and the decoding error.
type CorruptError struct {
	Path   string // the damaged file
	Reason string // what is wrong with it
	Err    error  // the decoding error, if any
}

func (e *CorruptError) Error() string {
	msg := fmt.Sprintf("%s is corrupt: %s", e.Path, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg + " (repair or remove the file by hand; scr-go will not treat it as empty)"
}

// Unwrap returns ErrCorrupt and the decoding error.
func (e *CorruptError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrCorrupt, e.Err}
	}
	return []error{ErrCorrupt}
}

// WriteFileAtomic replaces path with data so that readers see either the old
// or the new content, never a mix, and the new content survives a crash once
// WriteFileAtomic returns: temp file in the same directory, write, fsync,
// rename over path, fsync the directory. The directory is created if needed.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := ensureMetaFor(path); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: create temp file: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(fmt.Errorf("write %s: %w", tmp, err))
	}
	if err := f.Chmod(perm); err != nil {
		return fail(fmt.Errorf("write %s: chmod: %w", tmp, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("write %s: fsync: %w", tmp, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: close: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: rename: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		// EINVAL: the file system cannot sync directories; nothing more to do.
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// versioned is the envelope every JSON file starts with.
type versioned struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// writeJSON writes v (which must carry Format and Version) atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// readJSON decodes path into v after checking its format name and version.
// It returns (false, nil) if the file does not exist, and a *CorruptError
// if it exists but is empty, not JSON, of another format or a newer version.
func readJSON(path, format string, maxVersion int, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) == 0 {
		return false, &CorruptError{Path: path, Reason: "empty file"}
	}
	var hdr versioned
	if err := json.Unmarshal(b, &hdr); err != nil {
		return false, &CorruptError{Path: path, Reason: "not valid JSON (truncated?)", Err: err}
	}
	if hdr.Format != format {
		return false, &CorruptError{Path: path, Reason: fmt.Sprintf("format is %q, want %q", hdr.Format, format)}
	}
	if hdr.Version < 1 || hdr.Version > maxVersion {
		return false, &CorruptError{Path: path, Reason: fmt.Sprintf("version %d is not supported (this scr-go reads versions 1..%d)", hdr.Version, maxVersion)}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, &CorruptError{Path: path, Reason: "bad field", Err: err}
	}
	return true, nil
}

// lockPoll is how often a blocked lock attempt is retried.
const lockPoll = 10 * time.Millisecond

// withLock runs fn while holding an exclusive flock on lockPath (created if
// needed). The lock lives on its own file because the data files are
// replaced by rename, which would leave a lock on the old inode. It waits
// for the lock until ctx ends.
func withLock(ctx context.Context, lockPath string, fn func() error) error {
	if err := ensureMetaFor(lockPath); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return fmt.Errorf("create directory for lock %s: %w", lockPath, err)
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock %s: %w", lockPath, err)
	}
	defer f.Close()
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("lock %s: %w (does the file system support flock?)", lockPath, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: still held by another process: %w", lockPath, ctx.Err())
		case <-t.C:
		}
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// Package safefs keeps scr-go safe on storage it shares with other users
// (/dev/shm on a node, the parallel file system of the prefix):
//
//   - directories scr-go creates or reuses there must be its own: owned by
//     the effective user, not a symbolic link, not writable by group or
//     others (Private, Ensure); a world-writable directory they live in
//     must have the sticky bit and belong to root or to us (Shared), so no
//     one else can rename them away after the check;
//   - paths read from metadata (filemaps, rank2file, cache indexes) must be
//     local paths that stay inside the directory they belong to (Rel,
//     Join); below a directory others may write, such paths are opened
//     through an os.Root so that no symbolic link leads outside either
//     (internal/prefix.Files).
//
// A refusal is an *UnsafeError (errors.Is ErrUnsafe) that names the path,
// what is wrong and what to do.
package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrUnsafe is wrapped by every *UnsafeError.
var ErrUnsafe = errors.New("unsafe path")

// UnsafeError says why a directory or a path is refused.
type UnsafeError struct {
	Path    string
	Problem string // what is wrong
	Fix     string // what the user can do
}

func (e *UnsafeError) Error() string {
	s := e.Path + ": " + e.Problem
	if e.Fix != "" {
		s += " (" + e.Fix + ")"
	}
	return s
}

// Unwrap returns ErrUnsafe.
func (e *UnsafeError) Unwrap() error { return ErrUnsafe }

// owner returns the uid owning st.
func owner(st fs.FileInfo) (int, bool) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(sys.Uid), true
}

// Private checks that dir exists and is ours: a real directory (not a
// symbolic link), owned by the effective uid, not writable by group or
// others. Anything else may have been planted by another user.
func Private(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	return privateInfo(dir, st)
}

func privateInfo(dir string, st fs.FileInfo) error {
	fix := "remove it, or choose another directory (SCR_CACHE_BASE, SCR_CNTL_BASE, SCR_PREFIX)"
	if st.Mode()&fs.ModeSymlink != 0 {
		return &UnsafeError{Path: dir, Problem: "is a symbolic link, not a directory of ours", Fix: fix}
	}
	if !st.IsDir() {
		return &UnsafeError{Path: dir, Problem: "is not a directory", Fix: fix}
	}
	uid, ok := owner(st)
	if !ok {
		return &UnsafeError{Path: dir, Problem: "its owner cannot be read", Fix: fix}
	}
	if me := os.Geteuid(); uid != me {
		return &UnsafeError{Path: dir, Problem: fmt.Sprintf("is owned by uid %d, not by us (uid %d): another user may have created it to read or plant data", uid, me), Fix: fix}
	}
	if m := st.Mode().Perm(); m&0o022 != 0 {
		return &UnsafeError{Path: dir, Problem: fmt.Sprintf("is writable by group or others (mode %04o)", m), Fix: "chmod go-w " + dir + ", after checking its content"}
	}
	return nil
}

// Shared checks a directory that other users may share with us and in
// which we keep directories of our own (/dev/shm, a prefix): if everybody
// may write it, it must carry the sticky bit and belong to root or to us,
// otherwise anyone could rename our directories away and put theirs in
// place after we checked them. Symbolic links are followed (an
// administrator's choice, e.g. /dev/shm -> /run/shm).
func Shared(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return &UnsafeError{Path: dir, Problem: "is not a directory"}
	}
	m := st.Mode()
	if m.Perm()&0o002 == 0 {
		return nil
	}
	if m&fs.ModeSticky == 0 {
		return &UnsafeError{Path: dir, Problem: fmt.Sprintf("is writable by every user and has no sticky bit (mode %04o): others can replace the directories we keep in it", m.Perm()),
			Fix: "chmod +t " + dir + ", or use another directory"}
	}
	if uid, ok := owner(st); !ok || (uid != 0 && uid != os.Geteuid()) {
		return &UnsafeError{Path: dir, Problem: fmt.Sprintf("is writable by every user and owned by uid %d, who may rename anything in it", uid),
			Fix: "use a directory owned by root or by you"}
	}
	return nil
}

// Mkdir creates dir with perm, or checks (Private) the directory already
// there. Its parent must exist. Either way dir is ours when Mkdir returns
// nil.
func Mkdir(dir string, perm os.FileMode) error {
	err := os.Mkdir(dir, perm)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// Checked even when we created it: the mode after the umask, and a
	// directory that appeared between a failed Mkdir and the check.
	return Private(dir)
}

// Ensure returns base/names[0]/names[1]/... after making sure every
// directory below base is ours (Mkdir with perm), base being a directory
// we may share with others (Shared). A missing base is created (with its
// parents, mode perm). Each name must be one path component.
func Ensure(base string, perm os.FileMode, names ...string) (string, error) {
	if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(base, perm); err != nil {
			return "", err
		}
	}
	if err := Shared(base); err != nil {
		return "", err
	}
	dir := base
	for _, n := range names {
		if err := Component(n); err != nil {
			return "", err
		}
		dir = filepath.Join(dir, n)
		if err := Mkdir(dir, perm); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// EnsureDir is Ensure(parent of dir, perm, base name of dir).
func EnsureDir(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	_, err := Ensure(filepath.Dir(dir), perm, filepath.Base(dir))
	return err
}

// Component checks that name is usable as one path component of a
// directory we create (a user name, a job id, a node name).
func Component(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return &UnsafeError{Path: name, Problem: "is not a usable directory name"}
	case strings.ContainsAny(name, "/\x00"):
		return &UnsafeError{Path: name, Problem: "contains '/' or NUL: it must be one directory name"}
	case len(name) > 255:
		return &UnsafeError{Path: name[:32] + "...", Problem: fmt.Sprintf("is %d bytes long, more than a directory name may be", len(name))}
	}
	return nil
}

// Rel checks a path read from metadata that must lie inside the directory
// it is relative to: not empty, not absolute, no NUL, no ".." component
// leading out. It returns it cleaned, in the OS's form. Names such as
// "..data" are fine: only a ".." component leaves.
func Rel(rel string) (string, error) {
	bad := func(why string) (string, error) {
		return "", &UnsafeError{Path: fmt.Sprintf("%q", rel), Problem: why}
	}
	if rel == "" || strings.ContainsRune(rel, 0) {
		return bad("is empty or contains NUL")
	}
	slash := filepath.ToSlash(rel)
	if path.IsAbs(slash) || filepath.IsAbs(rel) {
		return bad("is absolute: a path from metadata must be relative")
	}
	clean := path.Clean(slash)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return bad("leaves its directory")
	}
	return filepath.FromSlash(clean), nil
}

// Join is dir joined with rel after Rel's check.
func Join(dir, rel string) (string, error) {
	r, err := Rel(rel)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, r), nil
}

// Within reports whether p (absolute, clean) is dir or below it.
func Within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}

// CreateTemp creates a new file in dir with a random name made from
// pattern (as os.CreateTemp: O_EXCL, so never a file someone else
// prepared) and gives it its final mode perm before any byte is written.
func CreateTemp(dir, pattern string, perm os.FileMode) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

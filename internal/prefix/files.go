package prefix

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/scr-go/scr/internal/safefs"
)

// EnsureMetaDir creates <prefix>/.scr (mode 0700), or checks the one
// there: it must be ours, a real directory, not writable by others
// (internal/safefs), so nobody else can plant or read our metadata. The
// prefix is created when missing; if everybody may write it, it needs
// the sticky bit. Every write under .scr goes through it.
func EnsureMetaDir(prefixDir string) error {
	if _, err := safefs.Ensure(prefixDir, 0o700, ".scr"); err != nil {
		return fmt.Errorf("prefix metadata directory %s: %w", MetaDir(prefixDir), err)
	}
	return nil
}

// ensureMetaFor runs EnsureMetaDir for the prefix of a path under
// <prefix>/.scr (the outermost .scr component); other paths pass.
func ensureMetaFor(path string) error {
	top := ""
	for d := filepath.Dir(filepath.Clean(path)); d != filepath.Dir(d); d = filepath.Dir(d) {
		if filepath.Base(d) == ".scr" {
			top = filepath.Dir(d)
		}
	}
	if top == "" {
		return nil
	}
	return EnsureMetaDir(top)
}

// FilePath checks a dataset file's path as rank2file or a filemap records
// it (relative to the prefix, slash-separated) and returns it in the OS's
// form: a local path (internal/safefs.Rel: no "..", not absolute, not
// empty) outside the .scr metadata directory. It is the containment check
// every path read from metadata passes before it is opened, written or
// removed; OpenRoot then keeps symbolic links from leading outside.
func FilePath(rel string) (string, error) {
	r, err := safefs.Rel(rel)
	if err != nil {
		return "", fmt.Errorf("path %w: it must stay inside the prefix", err)
	}
	if first, _, _ := strings.Cut(filepath.ToSlash(r), "/"); first == ".scr" {
		return "", &safefs.UnsafeError{Path: fmt.Sprintf("%q", rel), Problem: "is inside the prefix's .scr metadata directory, which holds no dataset files"}
	}
	return r, nil
}

// PrefixFilePath turns a rank2file path into a path under prefixDir after
// FilePath's check.
func PrefixFilePath(prefixDir, rel string) (string, error) {
	r, err := FilePath(rel)
	if err != nil {
		return "", err
	}
	return filepath.Join(prefixDir, r), nil
}

// OpenRoot opens the prefix as an os.Root: files opened, created, renamed
// or removed through it cannot be outside the prefix, through ".." or
// through a symbolic link (a link inside the prefix that points outside
// makes the operation fail). The caller closes it.
func OpenRoot(prefixDir string) (*os.Root, error) {
	r, err := os.OpenRoot(prefixDir)
	if err != nil {
		return nil, fmt.Errorf("open the prefix %s: %w", prefixDir, err)
	}
	return r, nil
}

// Escaped reports whether err is an os.Root refusal: the path led outside
// the root (".." or a symbolic link).
func Escaped(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// RemoveFile removes the dataset file rel (a FilePath) from the prefix
// through root, then the directories it leaves empty, up to the prefix
// and never above it. A missing file is no error.
func RemoveFile(root *os.Root, rel string) error {
	err := root.Remove(rel)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for d := filepath.Dir(rel); d != "." && d != string(filepath.Separator); d = filepath.Dir(d) {
		if root.Remove(d) != nil {
			break // not empty (or not ours to remove): stop
		}
	}
	return nil
}

// CreateTemp creates a new file next to rel inside root, named
// .<base>.scr-partial.<random> (O_EXCL: never a file someone prepared),
// with mode perm (less the umask), creating the parent directories (mode
// dirPerm). It returns the file and its name relative to root; the caller
// renames it over rel when complete, or removes it.
func CreateTemp(root *os.Root, rel string, perm, dirPerm os.FileMode) (*os.File, string, error) {
	dir := filepath.Dir(rel)
	if dir != "." {
		if err := root.MkdirAll(dir, dirPerm); err != nil {
			return nil, "", err
		}
	}
	for range 10 {
		var b [8]byte
		rand.Read(b[:])
		tmp := filepath.Join(dir, "."+filepath.Base(rel)+".scr-partial."+hex.EncodeToString(b[:]))
		f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return f, tmp, nil
	}
	return nil, "", fmt.Errorf("create a temporary file next to %s: every name tried exists", rel)
}

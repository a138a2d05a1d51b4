package flush

import (
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"time"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
)

// sourceError is a copy that failed on the reading side: the source is
// missing, unreadable, of another size or damaged (its CRC32C differs).
// For a fetch it is the dataset's fault, not the cache's.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// copyFile copies srcRel inside src to dstRel inside dst (both os.Roots,
// so no path and no symbolic link leads outside either): a new temporary
// file next to dstRel (random name, O_EXCL, mode 0600, or a new file's
// mode when meta has none), the bytes, fsync, meta's mode and modification
// time, then a rename over dstRel. The bytes
// must number meta.Size; when meta.CRC is set their CRC32C must match it.
// It returns the CRC32C of the content when crc is true or meta.CRC is
// set (0 otherwise). Nothing is left behind on failure. dirPerm is the
// mode of parent directories it creates.
func copyFile(src *os.Root, srcRel string, dst *os.Root, dstRel string, meta cache.File, buf []byte, crc bool, dirPerm os.FileMode) (uint32, error) {
	in, err := src.Open(srcRel)
	if err != nil {
		return 0, &sourceError{fmt.Errorf("open %s: %w", srcRel, err)}
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil || !st.Mode().IsRegular() {
		return 0, &sourceError{fmt.Errorf("%s is not a regular file", srcRel)}
	}
	// Private while it is written when a mode is to be copied; a new file's
	// mode (0666 less the umask) without it (SCR_COPY_METADATA=0).
	perm := os.FileMode(0o600)
	if meta.Mode == 0 {
		perm = 0o666
	}
	out, tmp, err := prefix.CreateTemp(dst, dstRel, perm, dirPerm)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", dstRel, err)
	}
	var w io.Writer = out
	var h hash.Hash32
	if crc || meta.CRC != nil {
		h = crc32.New(castagnoli)
		w = io.MultiWriter(out, h)
	}
	n, err := copyBuffer(w, in, buf)
	var sum uint32
	if h != nil {
		sum = h.Sum32()
	}
	switch {
	case err != nil:
	case n != meta.Size:
		err = &sourceError{fmt.Errorf("copy %s: %d bytes, the metadata says %d (the file changed after it was recorded)", srcRel, n, meta.Size)}
	case meta.CRC != nil && sum != *meta.CRC:
		err = &sourceError{fmt.Errorf("copy %s: crc32c %08x, the metadata says %08x (damaged)", srcRel, sum, *meta.CRC)}
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && meta.Mode != 0 {
		err = dst.Chmod(tmp, os.FileMode(meta.Mode))
	}
	if err == nil && !meta.ModTime.IsZero() {
		err = dst.Chtimes(tmp, time.Now(), meta.ModTime)
	}
	if err == nil {
		err = dst.Rename(tmp, dstRel)
	}
	if err != nil {
		dst.Remove(tmp)
		var se *sourceError
		if errors.As(err, &se) {
			return 0, err
		}
		return 0, fmt.Errorf("copy %s to %s: %w", srcRel, dstRel, err)
	}
	return sum, nil
}

// copyBuffer is io.CopyBuffer that marks read errors as the source's.
func copyBuffer(w io.Writer, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			m, werr := w.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, &sourceError{rerr}
		}
	}
}

// prefixFile is the rank2file record of a copied file.
func prefixFile(rel string, size int64, sum uint32, have bool) prefix.File {
	f := prefix.File{Path: rel, Size: size}
	if have {
		f.CRC32C = prefix.FormatCRC(sum)
	}
	return f
}

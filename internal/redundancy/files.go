package redundancy

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

// FileInfo describes one file of a rank, relative to the rank's directory.
// The redundancy header keeps it, so a lost rank's file list survives.
type FileInfo struct {
	Name    string      // slash-separated path relative to the rank directory
	Size    int64       // bytes
	Mode    os.FileMode // permission bits
	ModTime time.Time   // re-applied on rebuild
	ATime   time.Time   // re-applied on rebuild (zero: use ModTime)
	CRC32C  *uint32     // CRC32C of the content when known: checked on rebuild
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StatFiles describes the named files of dir (with their CRC32C when crc
// is true), the input of Encode.
func StatFiles(dir string, names []string, crc bool) ([]FileInfo, error) {
	out := make([]FileInfo, 0, len(names))
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("redundancy: %w", err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("redundancy: %s is not a regular file", p)
		}
		fi := FileInfo{Name: n, Size: st.Size(), Mode: st.Mode().Perm(), ModTime: st.ModTime(), ATime: atime(st)}
		if crc {
			c, err := fileCRC(p)
			if err != nil {
				return nil, err
			}
			fi.CRC32C = &c
		}
		out = append(out, fi)
	}
	return out, nil
}

func fileCRC(p string) (uint32, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("redundancy: %w", err)
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	buf := getPiece(256 << 10)
	defer putPiece(buf)
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return 0, fmt.Errorf("redundancy: read %s: %w", p, err)
	}
	return h.Sum32(), nil
}

// checkName refuses names that would leave the rank directory.
func checkName(n string) error {
	if n == "" || !filepath.IsLocal(filepath.FromSlash(n)) {
		return fmt.Errorf("redundancy: file name %q is not a local path inside the rank directory", n)
	}
	return nil
}

// verify says why the files of dir do not match their description, or nil.
func verify(dir string, files []FileInfo) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Size() != f.Size {
			return fmt.Errorf("%s: size %d, want %d", p, st.Size(), f.Size)
		}
		if f.CRC32C != nil {
			c, err := fileCRC(p)
			if err != nil {
				return err
			}
			if c != *f.CRC32C {
				return fmt.Errorf("%s: crc32c %#08x, want %#08x", p, c, *f.CRC32C)
			}
		}
	}
	return nil
}

// mapReads says whether openLogical maps the files it reads instead of
// reading them with pread into a piece-sized buffer. Off: with scr_bench
// (4 ranks x 64 MB in tmpfs) pread took less CPU and wall time, for the
// encode and even more for the rebuild, than the mapping's page faults and
// munmap (whose TLB shootdowns and mmap_lock grow with the threads of the
// process); the extra copy into a buffer that stays in cache is cheaper.
var mapReads = false

// logical is a rank's files concatenated in list order: the byte stream the
// codecs cut into chunks. Reads past the end give zeros; writes past the
// end are dropped (chunk padding).
type logical struct {
	files []*os.File
	maps  [][]byte // read-only mappings of the files (nil: use pread)
	start []int64  // offset of file i in the stream
	size  []int64
	total int64
}

func totalSize(files []FileInfo) int64 {
	var t int64
	for _, f := range files {
		t += f.Size
	}
	return t
}

// openLogical opens the files for reading, or, with create, creates them
// (and their directories) at their recorded sizes for rebuilding.
func openLogical(dir string, files []FileInfo, create bool) (*logical, error) {
	l := &logical{}
	for _, f := range files {
		if err := checkName(f.Name); err != nil {
			l.close()
			return nil, err
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		var h *os.File
		var err error
		if create {
			if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
				h, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
			}
			if err == nil {
				err = h.Truncate(f.Size)
			}
		} else {
			h, err = os.Open(p)
		}
		if err != nil {
			if h != nil {
				h.Close()
			}
			l.close()
			return nil, fmt.Errorf("redundancy: %w", err)
		}
		l.files = append(l.files, h)
		var m []byte
		if !create && mapReads {
			m = mapFile(h, f.Size)
		}
		l.maps = append(l.maps, m)
		l.start = append(l.start, l.total)
		l.size = append(l.size, f.Size)
		l.total += f.Size
	}
	return l, nil
}

func (l *logical) close() error {
	for _, m := range l.maps {
		unmapFile(m)
	}
	l.maps = nil
	var first error
	for _, f := range l.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	l.files = nil
	return first
}

// scratch returns a buffer for addAt's reads of n bytes (a piece: give it
// back with putPiece), or nil when every file is mapped (addAt then never
// reads).
func (l *logical) scratch(n int) []byte {
	for i := range l.files {
		if i >= len(l.maps) || l.maps[i] == nil {
			return getPiece(n)
		}
	}
	return nil
}

// readAt fills p with the stream's bytes at off, zeros past the end.
func (l *logical) readAt(p []byte, off int64) error {
	// Only the padding and gaps of empty files need zeros: clear what no
	// file covers instead of all of p.
	done := 0
	err := l.addAt(off, len(p), p, func(lo int, src []byte) error {
		clear(p[done:lo])
		if &src[0] != &p[lo] {
			copy(p[lo:], src)
		}
		done = lo + len(src)
		return nil
	})
	clear(p[done:])
	return err
}

// addAt hands the stream's bytes in [off, off+n) to add, span by span
// (lo = offset of src in the range); zero padding is skipped. Mapped files
// are handed over without a copy; others are read into tmp[lo:] first
// (tmp must hold n bytes).
func (l *logical) addAt(off int64, n int, tmp []byte, add func(lo int, src []byte) error) error {
	end := off + int64(n)
	for i, f := range l.files {
		s, e := l.start[i], l.start[i]+l.size[i]
		if e <= off || s >= end || s == e {
			continue
		}
		lo, hi := max(s, off), min(e, end)
		var err error
		if i < len(l.maps) && l.maps[i] != nil {
			err = guard(func() error { return add(int(lo-off), l.maps[i][lo-s:hi-s]) })
		} else {
			b := tmp[lo-off : hi-off]
			if _, err = f.ReadAt(b, lo-s); errors.Is(err, io.EOF) {
				err = fmt.Errorf("%s shorter than its recorded size", f.Name())
			}
			if err == nil {
				err = add(int(lo-off), b)
			}
		}
		if err != nil {
			return fmt.Errorf("redundancy: %w", err)
		}
	}
	return nil
}

// guard turns a memory fault while touching a mapped file (the file was
// truncated under us) into an error instead of a crash.
func guard(f func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = fmt.Errorf("memory fault reading a mapped file (was it truncated?): %v", r)
		}
	}()
	return f()
}

// writeAt stores p at off, dropping what falls past the end.
func (l *logical) writeAt(p []byte, off int64) error {
	return l.span(p, off, func(f *os.File, b []byte, at int64) error {
		_, err := f.WriteAt(b, at)
		return err
	})
}

func (l *logical) span(p []byte, off int64, do func(*os.File, []byte, int64) error) error {
	end := off + int64(len(p))
	for i, f := range l.files {
		s, e := l.start[i], l.start[i]+l.size[i]
		if e <= off || s >= end || s == e {
			continue
		}
		lo, hi := max(s, off), min(e, end)
		if err := do(f, p[lo-off:hi-off], lo-s); err != nil {
			return fmt.Errorf("redundancy: %w", err)
		}
	}
	return nil
}

// applyMeta restores mode and times of rebuilt files.
func applyMeta(dir string, files []FileInfo) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			return fmt.Errorf("redundancy: %w", err)
		}
		at := f.ATime
		if at.IsZero() {
			at = f.ModTime
		}
		if !f.ModTime.IsZero() {
			if err := os.Chtimes(p, at, f.ModTime); err != nil {
				return fmt.Errorf("redundancy: %w", err)
			}
		}
	}
	return nil
}

// xorKernel adds input chunks into one parity chunk: XOR's kernel (every
// coefficient is 1), in the shape of the RS kernel.
type xorKernel struct{}

func (xorKernel) add(in []byte, _ int, out [][]byte) error {
	subtle.XORBytes(out[0], out[0], in)
	return nil
}

// kernel is what the codec engine needs: out[j] += coef(j, idx) * in.
type kernel interface {
	add(in []byte, idx int, out [][]byte) error
}

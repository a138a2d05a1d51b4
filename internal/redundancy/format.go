package redundancy

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of this package inside a rank directory (doc/redundancy.md).
const (
	DataFile  = ".scr/red.data"  // header + redundancy payload
	StateFile = ".scr/red.state" // "encoding\n" or "encoded\n"

	metaDir   = ".scr"
	redName   = "red.data"
	stateName = "red.state"
)

// Dirs says where one rank's files are (Data: file names are relative to
// it) and where its redundancy files are (Meta: red.data, red.state).
// Encode and Rebuild use RankDirs(dir); RebuildOffline takes any.
type Dirs struct {
	Data string
	Meta string
}

// RankDirs is the layout of a rank directory in the cache: files in dir,
// redundancy files in dir/.scr.
func RankDirs(dir string) Dirs { return Dirs{Data: dir, Meta: filepath.Join(dir, metaDir)} }

const (
	magic         = "SCRRED01"
	formatVersion = 1
	maxHeader     = 64 << 20
)

// fileRec is FileInfo as stored: times in Unix nanoseconds so a rebuilt
// header is byte-identical to the lost one.
type fileRec struct {
	Name   string  `json:"name"`
	Size   int64   `json:"size"`
	Mode   uint32  `json:"mode"`
	MTime  int64   `json:"mtime_ns"`
	ATime  int64   `json:"atime_ns,omitempty"`
	CRC32C *uint32 `json:"crc32c,omitempty"`
}

// desc is the file list of one member.
type desc struct {
	Rank  int       `json:"rank"` // world rank
	Files []fileRec `json:"files"`
}

// header is the first part of DataFile.
type header struct {
	Version  int    `json:"version"`
	Scheme   string `json:"scheme"`
	Failures int    `json:"failures"` // k: parity chunks per row (XOR 1, RS k)
	Set      int    `json:"set"`
	Members  []int  `json:"members"` // world ranks of the set
	Index    int    `json:"index"`   // this member's position
	Chunk    int64  `json:"chunk"`   // C: bytes per chunk (XOR, RS)
	Segments int    `json:"segments"`
	SegSize  int64  `json:"segment_size"`
	Self     desc   `json:"self"`
	Lefts    []desc `json:"lefts,omitempty"` // files of the nearest left neighbours, nearest first
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func toDesc(rank int, files []FileInfo) desc {
	d := desc{Rank: rank, Files: make([]fileRec, len(files))}
	for i, f := range files {
		d.Files[i] = fileRec{Name: f.Name, Size: f.Size, Mode: uint32(f.Mode.Perm()), MTime: unixNano(f.ModTime), ATime: unixNano(f.ATime), CRC32C: f.CRC32C}
	}
	return d
}

func (d desc) infos() []FileInfo {
	out := make([]FileInfo, len(d.Files))
	for i, f := range d.Files {
		fi := FileInfo{Name: f.Name, Size: f.Size, Mode: os.FileMode(f.Mode).Perm(), CRC32C: f.CRC32C}
		if f.MTime != 0 {
			fi.ModTime = time.Unix(0, f.MTime)
		}
		if f.ATime != 0 {
			fi.ATime = time.Unix(0, f.ATime)
		}
		out[i] = fi
	}
	return out
}

func (d desc) check() error {
	for _, f := range d.Files {
		if err := checkName(f.Name); err != nil {
			return err
		}
		if f.Size < 0 {
			return fmt.Errorf("redundancy: file %q has negative size %d", f.Name, f.Size)
		}
	}
	return nil
}

// redWriter writes DataFile: magic, header length, header, header CRC,
// then Segments segments of SegSize bytes written front to back, then one
// CRC32C per segment. It writes a temporary file and renames it into place
// on finish, so DataFile is either complete or absent.
type redWriter struct {
	f     *os.File
	path  string
	base  int64
	h     *header
	crc   []hash.Hash32
	done  []int64
	state error
}

func createRed(meta string, h *header) (*redWriter, error) {
	p := filepath.Join(meta, redName)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, fmt.Errorf("redundancy: %w", err)
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("redundancy: header: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(magic)
	binary.Write(&b, binary.LittleEndian, uint32(len(js)))
	b.Write(js)
	binary.Write(&b, binary.LittleEndian, crc32.Checksum(js, castagnoli))
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("redundancy: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return nil, fmt.Errorf("redundancy: write %s: %w", tmp, err)
	}
	w := &redWriter{f: f, path: p, base: int64(b.Len()), h: h, crc: make([]hash.Hash32, h.Segments), done: make([]int64, h.Segments)}
	for i := range w.crc {
		w.crc[i] = crc32.New(castagnoli)
	}
	return w, nil
}

// write appends b to segment seg; segments fill front to back.
func (w *redWriter) write(seg int, b []byte) error {
	if w.done[seg]+int64(len(b)) > w.h.SegSize {
		return fmt.Errorf("redundancy: %s: segment %d overflows %d bytes", w.path, seg, w.h.SegSize)
	}
	if _, err := w.f.WriteAt(b, w.base+int64(seg)*w.h.SegSize+w.done[seg]); err != nil {
		return fmt.Errorf("redundancy: write %s: %w", w.path, err)
	}
	w.crc[seg].Write(b)
	w.done[seg] += int64(len(b))
	return nil
}

// finish writes the trailer and renames the file into place.
func (w *redWriter) finish() error {
	defer w.f.Close()
	var b bytes.Buffer
	for i, c := range w.crc {
		if w.done[i] != w.h.SegSize {
			return fmt.Errorf("redundancy: %s: segment %d has %d of %d bytes", w.path, i, w.done[i], w.h.SegSize)
		}
		binary.Write(&b, binary.LittleEndian, c.Sum32())
	}
	if _, err := w.f.WriteAt(b.Bytes(), w.base+int64(w.h.Segments)*w.h.SegSize); err != nil {
		return fmt.Errorf("redundancy: write %s: %w", w.path, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("redundancy: close %s: %w", w.path, err)
	}
	if err := os.Rename(w.path+".tmp", w.path); err != nil {
		return fmt.Errorf("redundancy: %w", err)
	}
	return nil
}

func (w *redWriter) abort() {
	w.f.Close()
	os.Remove(w.path + ".tmp")
}

// redFile is an opened DataFile with a checked header. Its payload is
// checked as it is read: readAt feeds each segment's CRC32C while reads
// come front to back, and checkPayload finishes the job (reading whatever
// was not read in order).
type redFile struct {
	f       *os.File
	base    int64
	h       header
	trailer []uint32
	crc     []hash.Hash32
	pos     []int64 // bytes of each segment read in order so far; -1: out of order
	used    []bool  // segments readAt touched
}

// openRed opens DataFile and checks its header and size. With payload, it
// also reads every segment and checks its CRC32C.
func openRed(meta string, payload bool) (*redFile, error) {
	p := filepath.Join(meta, redName)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	r, err := readRed(f)
	if err == nil && payload {
		err = r.checkPayload(false)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

func readRed(f *os.File) (*redFile, error) {
	pre := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(f, pre); err != nil {
		return nil, fmt.Errorf("short header: %w", err)
	}
	if string(pre[:len(magic)]) != magic {
		return nil, errors.New("not a redundancy file (bad magic)")
	}
	n := binary.LittleEndian.Uint32(pre[len(magic):])
	if n > maxHeader {
		return nil, fmt.Errorf("header length %d too large", n)
	}
	js := make([]byte, n+4)
	if _, err := io.ReadFull(f, js); err != nil {
		return nil, fmt.Errorf("short header: %w", err)
	}
	if crc32.Checksum(js[:n], castagnoli) != binary.LittleEndian.Uint32(js[n:]) {
		return nil, errors.New("header CRC mismatch")
	}
	r := &redFile{f: f, base: int64(len(pre)) + int64(n) + 4}
	if err := json.Unmarshal(js[:n], &r.h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	h := &r.h
	if h.Version != formatVersion {
		return nil, fmt.Errorf("format version %d, this build reads %d", h.Version, formatVersion)
	}
	if h.Segments < 0 || h.Segments > 256 || h.SegSize < 0 || h.Chunk < 0 || h.Index < 0 || h.Index >= len(h.Members) {
		return nil, errors.New("header out of range")
	}
	if err := h.Self.check(); err != nil {
		return nil, err
	}
	for _, l := range h.Lefts {
		if err := l.check(); err != nil {
			return nil, err
		}
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	want := r.base + int64(h.Segments)*h.SegSize + 4*int64(h.Segments)
	if h.SegSize > st.Size() || st.Size() != want {
		return nil, fmt.Errorf("size %d, want %d", st.Size(), want)
	}
	tb := make([]byte, 4*h.Segments)
	if _, err := f.ReadAt(tb, want-int64(len(tb))); err != nil {
		return nil, err
	}
	r.trailer = make([]uint32, h.Segments)
	r.crc = make([]hash.Hash32, h.Segments)
	r.pos = make([]int64, h.Segments)
	r.used = make([]bool, h.Segments)
	for i := range r.trailer {
		r.trailer[i] = binary.LittleEndian.Uint32(tb[4*i:])
		r.crc[i] = crc32.New(castagnoli)
	}
	return r, nil
}

// checkPayload verifies every segment's CRC32C, from what readAt saw in
// order, else by reading the segment. With usedOnly, segments readAt never
// touched are skipped.
func (r *redFile) checkPayload(usedOnly bool) error {
	var buf []byte
	for s := range r.h.Segments {
		if usedOnly && !r.used[s] {
			continue
		}
		if r.pos[s] != r.h.SegSize {
			if buf == nil {
				buf = make([]byte, 256<<10)
			}
			c := crc32.New(castagnoli)
			if _, err := io.CopyBuffer(c, io.NewSectionReader(r.f, r.base+int64(s)*r.h.SegSize, r.h.SegSize), buf); err != nil {
				return err
			}
			r.crc[s], r.pos[s] = c, r.h.SegSize
		}
		if r.crc[s].Sum32() != r.trailer[s] {
			return fmt.Errorf("segment %d CRC mismatch", s)
		}
	}
	return nil
}

func (r *redFile) readAt(seg int, b []byte, off int64) error {
	if off+int64(len(b)) > r.h.SegSize {
		return fmt.Errorf("redundancy: %s: read past segment %d", r.f.Name(), seg)
	}
	if _, err := r.f.ReadAt(b, r.base+int64(seg)*r.h.SegSize+off); err != nil {
		return fmt.Errorf("redundancy: %w", err)
	}
	r.used[seg] = true
	if r.pos[seg] == off {
		r.crc[seg].Write(b)
		r.pos[seg] += int64(len(b))
	} else {
		r.pos[seg] = -1
	}
	return nil
}

func (r *redFile) close() { r.f.Close() }

// matches says whether a header belongs to this group and scheme.
func (h *header) matches(g *Group, s Scheme) error {
	switch {
	case h.Scheme != s.Type.String():
		return fmt.Errorf("scheme %s, want %s", h.Scheme, s.Type)
	case h.Failures != s.k():
		return fmt.Errorf("failures %d, want %d", h.Failures, s.k())
	case h.Set != g.Set.ID || !slices.Equal(h.Members, g.Set.Ranks) || h.Index != g.Index:
		return fmt.Errorf("written for set %d %v position %d, now set %d %v position %d (the rank layout changed)", h.Set, h.Members, h.Index, g.Set.ID, g.Set.Ranks, g.Index)
	case h.Self.Rank != g.World.Rank():
		return fmt.Errorf("written by rank %d, this is rank %d", h.Self.Rank, g.World.Rank())
	}
	return nil
}

// Encode states (StateFile). A dataset's redundancy is usable only when
// every rank's state is encoded.
const (
	stateEncoding = "encoding"
	stateEncoded  = "encoded"
	stateDamaged  = "damaged" // a rebuild found the payload's CRC wrong
)

func writeState(meta, state string) error {
	p := filepath.Join(meta, stateName)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("redundancy: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(state+"\n"), 0o600); err != nil {
		return fmt.Errorf("redundancy: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("redundancy: %w", err)
	}
	return nil
}

// State returns the encode state of a rank directory: "encoded",
// "encoding" (an encode or rebuild started and did not finish: the
// redundancy data must not be trusted), "damaged" (a rebuild found the
// redundancy data corrupt) or "" (none).
func State(dir string) string { return stateAt(filepath.Join(dir, metaDir)) }

func stateAt(meta string) string {
	b, err := os.ReadFile(filepath.Join(meta, stateName))
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

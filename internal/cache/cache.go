// Package cache owns the node-local side of scr-go: where a node keeps its
// control state and its cached datasets, the per-rank file metadata
// (filemaps), the node's cache index, and which datasets to evict.
//
// Layout (doc/seams.md, section 3):
//
//	<cntl base>/<user>/scr.<jobid>/cindex.json          cache index (node leader)
//	<cache base>/<user>/scr.<jobid>/scr.dataset.<id>/   one dataset
//	    rank.<r>/<path relative to the prefix>          rank r's files
//	    rank.<r>/.scr/filemap.json                      rank r's file metadata
//	    rank.<r>/.scr/...                               rank r's redundancy data
//
// Files of a rank live in the rank's own directory, keeping the path they
// have under the prefix, so two ranks never collide on a basename and a
// rank's whole state moves to another node as one directory. Directories
// are created with mode 0700. Every metadata file is written atomically
// (temp file, fsync, rename). The package does no communication: the
// library decides which rank writes what.
package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/jobid"
	"github.com/scr-go/scr/internal/safefs"
)

// Lookup reads one environment-style parameter (os.LookupEnv's shape).
type Lookup func(key string) (string, bool)

// DirMode is the mode of every directory the cache creates.
const DirMode = 0o700

// Layout says where one node keeps its control state and its cache.
type Layout struct {
	CntlDir  string // <SCR_CNTL_BASE>/<user>/scr.<jobid>
	CacheDir string // <SCR_CACHE_BASE>/<user>/scr.<jobid>
}

// UserName is SCR_USER_NAME, else USER, else the name of the current uid.
func UserName(get Lookup) string {
	if v, ok := get("SCR_USER_NAME"); ok && v != "" {
		return v
	}
	if v, ok := get("USER"); ok && v != "" {
		return v
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

// JobID is the allocation's id: SCR_JOB_ID, else the allocation the
// resource manager names (a Flux job's enclosing instance, not the job
// itself), else "defjobid" (internal/jobid).
func JobID(get Lookup) string { return jobid.FromEnv(jobid.Lookup(get)) }

// NewLayout computes the layout from SCR_CNTL_BASE and SCR_CACHE_BASE
// (default /dev/shm), the user name and the job id.
func NewLayout(get Lookup) Layout {
	base := func(k string) string {
		if v, ok := get(k); ok && v != "" {
			return v
		}
		return "/dev/shm"
	}
	return LayoutOf(base("SCR_CNTL_BASE"), base("SCR_CACHE_BASE"), UserName(get), JobID(get))
}

// LayoutOf is the layout below the given control and cache bases.
func LayoutOf(cntlBase, cacheBase, user, job string) Layout {
	sub := filepath.Join(user, "scr."+job)
	return Layout{CntlDir: filepath.Join(cntlBase, sub), CacheDir: filepath.Join(cacheBase, sub)}
}

// DatasetDir is the cache directory of dataset id.
func (l Layout) DatasetDir(id int) string {
	return filepath.Join(l.CacheDir, "scr.dataset."+strconv.Itoa(id))
}

// RankDir is rank r's directory inside dataset id.
func (l Layout) RankDir(id, rank int) string {
	return RankDir(l.DatasetDir(id), rank)
}

// RankDir is rank r's directory inside a dataset directory.
func RankDir(datasetDir string, rank int) string {
	return filepath.Join(datasetDir, "rank."+strconv.Itoa(rank))
}

// MetaDir is the hidden metadata directory of a rank directory.
func MetaDir(rankDir string) string { return filepath.Join(rankDir, ".scr") }

// FilemapName is the filemap's path relative to a rank directory.
const FilemapName = ".scr/filemap.json"

// IndexPath is the node's cache index.
func (l Layout) IndexPath() string { return filepath.Join(l.CntlDir, "cindex.json") }

// Create makes the control and cache directories (mode 0700), or checks
// the ones already there: the base (/dev/shm) is shared with every user of
// the node, so <base>/<user> and <base>/<user>/scr.<jobid> must be ours,
// real directories, not writable by others (internal/safefs); a directory
// another user prepared is refused, never used.
func (l Layout) Create() error {
	for _, d := range []string{l.CntlDir, l.CacheDir} {
		userDir := filepath.Dir(d)
		if _, err := safefs.Ensure(filepath.Dir(userDir), DirMode, filepath.Base(userDir), filepath.Base(d)); err != nil {
			return fmt.Errorf("cache: create %s: %w", d, err)
		}
	}
	return nil
}

// Check verifies, without creating anything, that the control and cache
// directories that exist are ours (see Create). Commands that only read a
// node's cache (scr_postrun's scavenge) use it.
func (l Layout) Check() error {
	for _, d := range []string{l.CntlDir, l.CacheDir} {
		for _, p := range []string{filepath.Dir(d), d} {
			if err := safefs.Private(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cache: %w", err)
			}
		}
	}
	return nil
}

// CheckDatasetPath says whether path may be the directory of dataset id of
// this layout's job, as a cache index records it: an absolute, clean
// <store>/<user>/scr.<jobid>/scr.dataset.<id> whose two job directories,
// when they exist, are ours. The store may differ from this layout's (a
// CKPT descriptor's STORE), the user and job may not. A cache index is
// metadata: a path in it is checked before anything below it is read,
// written or removed.
func (l Layout) CheckDatasetPath(path string, id int) error {
	bad := func(why string) error {
		return &safefs.UnsafeError{Path: path, Problem: fmt.Sprintf("is not the directory of dataset %d of this job: %s", id, why)}
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return bad("not an absolute, clean path")
	}
	jobDir := filepath.Dir(path)
	userDir := filepath.Dir(jobDir)
	switch {
	case filepath.Base(path) != "scr.dataset."+strconv.Itoa(id):
		return bad("its name is not scr.dataset." + strconv.Itoa(id))
	case filepath.Base(jobDir) != filepath.Base(l.CacheDir):
		return bad("not below " + filepath.Base(l.CacheDir))
	case filepath.Base(userDir) != filepath.Base(filepath.Dir(l.CacheDir)):
		return bad("not below the user's directory " + filepath.Base(filepath.Dir(l.CacheDir)))
	}
	for _, d := range []string{userDir, jobDir} {
		if err := safefs.Private(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if st, err := os.Lstat(path); err == nil && !st.IsDir() {
		return bad("not a directory")
	}
	return nil
}

// ReadIndex reads the node's cache index and checks every entry: its key
// is its dataset's id and its path passes CheckDatasetPath. A bad entry
// makes the whole index damaged (an error): the caller treats the node's
// cache as lost rather than trusting any path in it.
func (l Layout) ReadIndex() (*Index, error) {
	ix, err := ReadIndex(l.IndexPath())
	if err != nil {
		return nil, err
	}
	for id, e := range ix.Datasets {
		if e == nil || e.Dataset.ID != id {
			return nil, fmt.Errorf("cache: %s is damaged: entry %d does not describe dataset %d; delete it to drop this node's cached state", l.IndexPath(), id, id)
		}
		if e.Path == "" {
			continue
		}
		if err := l.CheckDatasetPath(e.Path, id); err != nil {
			return nil, fmt.Errorf("cache: %s is damaged or planted: entry %d: %w; delete it to drop this node's cached state", l.IndexPath(), id, err)
		}
	}
	return ix, nil
}

// DatasetPath is where the index says dataset id lives, else the layout's
// own directory for it.
func (l Layout) DatasetPath(ix *Index, id int) string {
	if ix != nil {
		if e := ix.Datasets[id]; e != nil && e.Path != "" {
			return e.Path
		}
	}
	return l.DatasetDir(id)
}

// Flags say what a dataset is.
type Flags int

const (
	FlagCheckpoint Flags = 1 << iota // the dataset can be restarted from
	FlagOutput                       // the dataset must reach the prefix
)

func (f Flags) String() string {
	var s []string
	if f&FlagCheckpoint != 0 {
		s = append(s, "checkpoint")
	}
	if f&FlagOutput != 0 {
		s = append(s, "output")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "|")
}

// Dataset is the record of one dataset, identical on every rank.
type Dataset struct {
	ID       int       `json:"id"`             // counts from 1 across the SCR job
	Name     string    `json:"name"`           // name given at StartOutput
	Flags    Flags     `json:"flags"`          // checkpoint and/or output
	CkptID   int       `json:"ckpt,omitempty"` // checkpoint id, 0 for pure output
	Created  time.Time `json:"created"`
	User     string    `json:"user,omitempty"`
	JobID    string    `json:"jobid,omitempty"`
	Ranks    int       `json:"ranks"`           // world size of the run that wrote it
	Files    int64     `json:"files,omitempty"` // total over ranks, set at Complete
	Bytes    int64     `json:"bytes,omitempty"` // total over ranks, set at Complete
	Complete bool      `json:"complete"`
	Scheme   string    `json:"scheme,omitempty"`   // redundancy: SINGLE, PARTNER, XOR, RS
	SetSize  int       `json:"set_size,omitempty"` // minimum ranks per redundancy set
	Failures int       `json:"failures,omitempty"` // RS: members a set may lose
	Group    string    `json:"group,omitempty"`    // failure group: NODE, WORLD or a GROUPS name
	Bypass   bool      `json:"bypass,omitempty"`   // files were written to the prefix directly
	Store    string    `json:"store,omitempty"`    // its store: "" = SCR_CACHE_BASE, "CKPT=<n>" = that descriptor's STORE
	JobName  string    `json:"job_name,omitempty"` // SCR_JOB_NAME
	Cluster  string    `json:"cluster,omitempty"`  // SCR_CLUSTER_NAME
}

// IsCheckpoint says whether the dataset carries the checkpoint flag.
func (d Dataset) IsCheckpoint() bool { return d.Flags&FlagCheckpoint != 0 }

// IsOutput says whether the dataset carries the output flag.
func (d Dataset) IsOutput() bool { return d.Flags&FlagOutput != 0 }

// File is the metadata of one file of one rank.
type File struct {
	Orig     string    `json:"orig"`             // absolute path under the prefix
	Rel      string    `json:"rel"`              // path relative to the prefix (and to the rank dir)
	Size     int64     `json:"size"`             // bytes, at Complete
	Mode     uint32    `json:"mode"`             // permission bits
	ModTime  time.Time `json:"mtime"`            // at Complete
	CRC      *uint32   `json:"crc32c,omitempty"` // CRC32C of the content, when computed
	Complete bool      `json:"complete"`         // the rank declared it valid
}

// Filemap is one rank's list of files in one dataset.
type Filemap struct {
	Version int     `json:"version"`
	Rank    int     `json:"rank"`
	Dataset Dataset `json:"dataset"`
	Files   []File  `json:"files"`
}

// FilemapVersion is the version written into new filemaps.
const FilemapVersion = 1

// WriteFilemap writes rank's filemap into its rank directory atomically.
func WriteFilemap(rankDir string, fm Filemap) error {
	fm.Version = FilemapVersion
	return WriteJSON(filepath.Join(rankDir, FilemapName), fm)
}

// ReadFilemap reads the filemap of a rank directory.
func ReadFilemap(rankDir string) (Filemap, error) {
	var fm Filemap
	err := ReadJSON(filepath.Join(rankDir, FilemapName), &fm)
	if err == nil && fm.Version != FilemapVersion {
		err = fmt.Errorf("cache: filemap %s: version %d, this build reads %d", filepath.Join(rankDir, FilemapName), fm.Version, FilemapVersion)
	}
	return fm, err
}

// Entry is one dataset in a node's cache index.
type Entry struct {
	Dataset Dataset `json:"dataset"`
	Path    string  `json:"path"`              // dataset directory
	Flushed bool    `json:"flushed,omitempty"` // a copy is complete on the prefix
}

// Index is a node's cache index: which datasets the node holds.
type Index struct {
	Version  int            `json:"version"`
	Current  string         `json:"current,omitempty"`
	Datasets map[int]*Entry `json:"datasets"`
}

// IndexVersion is the version written into new cache indexes.
const IndexVersion = 1

// ReadIndex reads a cache index; a missing file is an empty index.
func ReadIndex(path string) (*Index, error) {
	ix := &Index{Version: IndexVersion, Datasets: map[int]*Entry{}}
	err := ReadJSON(path, ix)
	if errors.Is(err, os.ErrNotExist) {
		return &Index{Version: IndexVersion, Datasets: map[int]*Entry{}}, nil
	}
	if err != nil {
		return nil, err
	}
	if ix.Version != IndexVersion {
		return nil, fmt.Errorf("cache: index %s: version %d, this build reads %d", path, ix.Version, IndexVersion)
	}
	if ix.Datasets == nil {
		ix.Datasets = map[int]*Entry{}
	}
	return ix, nil
}

// Write stores the index atomically.
func (ix *Index) Write(path string) error {
	ix.Version = IndexVersion
	return WriteJSON(path, ix)
}

// IDs returns the dataset ids in ascending order.
func (ix *Index) IDs() []int {
	ids := make([]int, 0, len(ix.Datasets))
	for id := range ix.Datasets {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// EvictionPlan returns the datasets to delete, oldest first, so that one
// more dataset fits in a store that keeps count datasets. Datasets for
// which busy returns true (being flushed) are never chosen; if they keep
// the store full, the plan is short and ok is false: the caller must wait
// for the flush and ask again.
func EvictionPlan(ids []int, count int, busy func(id int) bool) (evict []int, ok bool) {
	if count < 1 {
		count = 1
	}
	sorted := append([]int(nil), ids...)
	sort.Ints(sorted)
	keep := len(sorted)
	for _, id := range sorted {
		if keep < count {
			break
		}
		if busy != nil && busy(id) {
			continue
		}
		evict = append(evict, id)
		keep--
	}
	return evict, keep < count
}

// WriteJSON writes v as JSON to path atomically: temp file in the same
// directory, fsync, rename, fsync of the directory. Parent directories are
// created with mode 0700.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("cache: encode %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(b, '\n'))
}

// WriteFileAtomic writes data to path atomically (see WriteJSON).
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("cache: create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("cache: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("cache: write %s: %w", path, werr)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ReadJSON reads a JSON file into v.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cache: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("cache: %s is damaged (%v); delete it to drop this node's cached state", path, err)
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FileCRC returns the CRC32C of a file's content.
func FileCRC(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readCRC(f, path)
}

func readCRC(f *os.File, path string) (uint32, error) {
	h := crc32.New(castagnoli)
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return 0, fmt.Errorf("cache: read %s: %w", path, err)
	}
	return h.Sum32(), nil
}

// CorruptError says that a cached file does not match its metadata.
type CorruptError struct {
	Path   string
	Reason string // e.g. "size 10, want 12", "crc32c 0x..., want 0x..."
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("cache: %s: %s", e.Path, e.Reason)
}

// ErrCorrupt is wrapped by every *CorruptError.
var ErrCorrupt = errors.New("cached file does not match its metadata")

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Verify checks every file of a filemap inside dir (a rank directory, or
// the prefix for a bypass dataset): a path that stays inside dir (".." and
// symbolic links leading out are refused: dir is opened as an os.Root),
// present, complete, the recorded size and, when recorded, the CRC32C.
// The first mismatch is returned as a *CorruptError.
func Verify(dir string, fm Filemap) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return &CorruptError{Path: dir, Reason: err.Error()}
	}
	defer root.Close()
	for _, f := range fm.Files {
		rel, err := safefs.Rel(filepath.ToSlash(f.Rel))
		if err != nil {
			return &CorruptError{Path: filepath.Join(dir, FilemapName), Reason: "file " + err.Error()}
		}
		p := filepath.Join(dir, rel)
		if !f.Complete {
			return &CorruptError{Path: p, Reason: "marked incomplete"}
		}
		st, err := root.Stat(rel)
		if err != nil {
			return &CorruptError{Path: p, Reason: err.Error()}
		}
		if !st.Mode().IsRegular() {
			return &CorruptError{Path: p, Reason: "not a regular file"}
		}
		if st.Size() != f.Size {
			return &CorruptError{Path: p, Reason: fmt.Sprintf("size %d, want %d", st.Size(), f.Size)}
		}
		if f.CRC != nil {
			fh, err := root.Open(rel)
			if err != nil {
				return &CorruptError{Path: p, Reason: err.Error()}
			}
			c, err := readCRC(fh, p)
			fh.Close()
			if err != nil {
				return &CorruptError{Path: p, Reason: err.Error()}
			}
			if c != *f.CRC {
				return &CorruptError{Path: p, Reason: fmt.Sprintf("crc32c %#08x, want %#08x", c, *f.CRC)}
			}
		}
	}
	return nil
}

// Stat fills in size, mode and time of a file (and the CRC when crc is
// true) for the file at path.
func Stat(path string, crc bool) (File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return File{}, err
	}
	if !st.Mode().IsRegular() {
		return File{}, fmt.Errorf("%s is not a regular file", path)
	}
	f := File{Size: st.Size(), Mode: uint32(st.Mode().Perm()), ModTime: st.ModTime()}
	if crc {
		c, err := FileCRC(path)
		if err != nil {
			return File{}, err
		}
		f.CRC = &c
	}
	return f, nil
}

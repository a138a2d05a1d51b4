package prefix

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// IndexFile is the dataset index under <prefix>/.scr (SCR's index.scr).
const (
	IndexFile    = "index.json"
	indexLock    = "index.lock"
	indexFormat  = "scr-index"
	IndexVersion = 1
)

// ErrNoDataset is wrapped when a dataset name or id is not in the index.
var ErrNoDataset = errors.New("no such dataset in the index")

// IndexEntry is what the index knows about one dataset.
type IndexEntry struct {
	Dataset  Dataset     `json:"dataset"`
	Complete bool        `json:"complete"`          // every file reached the prefix
	Flushed  time.Time   `json:"flushed,omitzero"`  // when the flush (or scavenge) finished
	Fetched  []time.Time `json:"fetched,omitempty"` // each time it was fetched for a restart
	Failed   time.Time   `json:"failed,omitzero"`   // when a restart from it failed; zero = never
}

// Valid reports whether the entry may be chosen automatically for a restart:
// complete and never failed.
func (e *IndexEntry) Valid() bool { return e.Complete && e.Failed.IsZero() }

// Index is the dataset index of a prefix: every dataset flushed (or being
// flushed) there, and the CURRENT checkpoint name restarts start from.
type Index struct {
	Format   string                 `json:"format"`
	Version  int                    `json:"version"`
	Current  string                 `json:"current,omitempty"`
	Datasets map[string]*IndexEntry `json:"datasets"` // key: decimal dataset id
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{Format: indexFormat, Version: IndexVersion, Datasets: map[string]*IndexEntry{}}
}

// IndexPath is the index file of a prefix.
func IndexPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), IndexFile) }

// ReadIndex reads the index of a prefix. A missing index is an empty one; a
// damaged one is a *CorruptError.
func ReadIndex(prefixDir string) (*Index, error) {
	path := IndexPath(prefixDir)
	idx := NewIndex()
	ok, err := readJSON(path, indexFormat, IndexVersion, idx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return NewIndex(), nil
	}
	if idx.Datasets == nil {
		idx.Datasets = map[string]*IndexEntry{}
	}
	names := map[string]int64{}
	for k, e := range idx.Datasets {
		id, err := strconv.ParseInt(k, 10, 64)
		if err != nil || e == nil || id != e.Dataset.ID {
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("dataset key %q does not match its record", k)}
		}
		if other, dup := names[e.Dataset.Name]; dup {
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("name %q used by datasets %d and %d", e.Dataset.Name, other, id)}
		}
		names[e.Dataset.Name] = id
	}
	return idx, nil
}

// WriteIndex replaces the index atomically. Use UpdateIndex when another
// process may write the index at the same time.
func WriteIndex(prefixDir string, idx *Index) error {
	idx.Format, idx.Version = indexFormat, IndexVersion
	return writeJSON(IndexPath(prefixDir), idx)
}

// UpdateIndex reads the index under an exclusive lock, calls fn, and writes
// the result back if fn returns nil. The lock is waited for until ctx ends.
func UpdateIndex(ctx context.Context, prefixDir string, fn func(*Index) error) error {
	return withLock(ctx, filepath.Join(MetaDir(prefixDir), indexLock), func() error {
		idx, err := ReadIndex(prefixDir)
		if err != nil {
			return err
		}
		if err := fn(idx); err != nil {
			return err
		}
		return WriteIndex(prefixDir, idx)
	})
}

// Entries returns the entries ordered by dataset id, newest (highest) first.
func (x *Index) Entries() []*IndexEntry {
	out := make([]*IndexEntry, 0, len(x.Datasets))
	for _, e := range x.Datasets {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dataset.ID > out[j].Dataset.ID })
	return out
}

// Get returns the entry of a dataset id, or nil.
func (x *Index) Get(id int64) *IndexEntry { return x.Datasets[strconv.FormatInt(id, 10)] }

// ByName returns the entry with that dataset name, or nil.
func (x *Index) ByName(name string) *IndexEntry {
	for _, e := range x.Datasets {
		if e.Dataset.Name == name {
			return e
		}
	}
	return nil
}

// Put adds or replaces the entry of ds.ID, keeping flush, fetch and failure
// marks of an existing entry. A name already used by another id is an error.
func (x *Index) Put(ds Dataset) (*IndexEntry, error) {
	if err := CheckName(ds.Name); err != nil {
		return nil, fmt.Errorf("index: dataset %d: %w", ds.ID, err)
	}
	if other := x.ByName(ds.Name); other != nil && other.Dataset.ID != ds.ID {
		return nil, fmt.Errorf("index: name %q is already used by dataset %d", ds.Name, other.Dataset.ID)
	}
	e := x.Get(ds.ID)
	if e == nil {
		e = &IndexEntry{}
		x.Datasets[strconv.FormatInt(ds.ID, 10)] = e
	}
	e.Dataset = ds
	return e, nil
}

// MarkFlushed records that dataset id reached the prefix at t, with complete
// telling whether every file made it. A successful flush clears a failure
// mark (SCR does the same).
func (x *Index) MarkFlushed(id int64, complete bool, t time.Time) error {
	e := x.Get(id)
	if e == nil {
		return fmt.Errorf("index: mark dataset %d flushed: %w", id, ErrNoDataset)
	}
	e.Complete = complete
	e.Dataset.Complete = complete
	e.Flushed = t
	if complete {
		e.Failed = time.Time{}
	}
	return nil
}

// MarkFetched appends a fetch time to dataset id.
func (x *Index) MarkFetched(id int64, t time.Time) error {
	e := x.Get(id)
	if e == nil {
		return fmt.Errorf("index: mark dataset %d fetched: %w", id, ErrNoDataset)
	}
	e.Fetched = append(e.Fetched, t)
	return nil
}

// MarkFailed records that a restart from dataset id failed at t, and unsets
// CURRENT if it named that dataset, so the next search picks an older one.
func (x *Index) MarkFailed(id int64, t time.Time) error {
	e := x.Get(id)
	if e == nil {
		return fmt.Errorf("index: mark dataset %d failed: %w", id, ErrNoDataset)
	}
	e.Failed = t
	if x.Current == e.Dataset.Name {
		x.Current = ""
	}
	return nil
}

// SetCurrent makes name the checkpoint the next restart starts from. The
// name must be a checkpoint in the index. Unlike the automatic search, an
// explicit CURRENT is used even if incomplete or failed (as in SCR).
func (x *Index) SetCurrent(name string) error {
	e := x.ByName(name)
	if e == nil {
		return fmt.Errorf("index: set current %q: %w", name, ErrNoDataset)
	}
	if !e.Dataset.Checkpoint {
		return fmt.Errorf("index: set current %q: dataset %d is not a checkpoint", name, e.Dataset.ID)
	}
	x.Current = name
	return nil
}

// Drop removes the entry called name (its files stay on disk). Dropping the
// CURRENT entry unsets CURRENT.
func (x *Index) Drop(name string) error {
	e := x.ByName(name)
	if e == nil {
		return fmt.Errorf("index: drop %q: %w", name, ErrNoDataset)
	}
	delete(x.Datasets, strconv.FormatInt(e.Dataset.ID, 10))
	if x.Current == name {
		x.Current = ""
	}
	return nil
}

// DropAfter removes every entry newer (higher id) than the one called name
// and returns the dropped ids, newest first.
func (x *Index) DropAfter(name string) ([]int64, error) {
	e := x.ByName(name)
	if e == nil {
		return nil, fmt.Errorf("index: drop after %q: %w", name, ErrNoDataset)
	}
	var dropped []int64
	for _, o := range x.Entries() {
		if o.Dataset.ID > e.Dataset.ID {
			dropped = append(dropped, o.Dataset.ID)
			delete(x.Datasets, strconv.FormatInt(o.Dataset.ID, 10))
			if x.Current == o.Dataset.Name {
				x.Current = ""
			}
		}
	}
	return dropped, nil
}

// FetchCandidate chooses the checkpoint to fetch for a restart. below is the
// id of the last one tried (0 or negative: none yet). If CURRENT is set and
// its id is below that bound, it is chosen whatever its state (an explicit
// choice); otherwise the newest checkpoint with id < below that is complete
// and not failed. It returns nil when there is none.
func (x *Index) FetchCandidate(below int64) *IndexEntry {
	inRange := func(e *IndexEntry) bool { return below <= 0 || e.Dataset.ID < below }
	if x.Current != "" {
		if e := x.ByName(x.Current); e != nil && e.Dataset.Checkpoint && inRange(e) {
			return e
		}
	}
	for _, e := range x.Entries() {
		if e.Dataset.Checkpoint && e.Valid() && inRange(e) {
			return e
		}
	}
	return nil
}

// PrefixSizeVictims is the SCR_PREFIX_SIZE decision: with keep > 0, the
// checkpoints to delete from the prefix so that only the keep newest valid
// checkpoints remain. Only checkpoints older than the keep-th newest valid
// one are chosen; datasets with the OUTPUT flag and the CURRENT checkpoint
// are never chosen. keep <= 0 keeps everything. Newest first.
func (x *Index) PrefixSizeVictims(keep int) []*IndexEntry {
	if keep <= 0 {
		return nil
	}
	var out []*IndexEntry
	valid := 0
	for _, e := range x.Entries() {
		if !e.Dataset.Checkpoint {
			continue
		}
		if valid >= keep && !e.Dataset.Output && e.Dataset.Name != x.Current {
			out = append(out, e)
			continue
		}
		if e.Valid() {
			valid++
		}
	}
	return out
}

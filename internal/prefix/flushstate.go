package prefix

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
)

// FlushFile is the flush state under <prefix>/.scr (SCR's flush.scr).
const (
	FlushFile    = "flush.json"
	flushLock    = "flush.lock"
	flushFormat  = "scr-flush"
	FlushVersion = 1
)

// Locations of a dataset in the flush state.
const (
	LocCache    = "CACHE"    // in cache on the nodes
	LocPFS      = "PFS"      // completely in the prefix
	LocFlushing = "FLUSHING" // a flush (sync or async) is in progress
)

// FlushEntry is the flush state of one dataset.
type FlushEntry struct {
	ID         int64    `json:"id"`
	Name       string   `json:"name"`
	Checkpoint bool     `json:"checkpoint"`
	Output     bool     `json:"output"`
	Locations  []string `json:"locations"`
}

// Has reports whether the dataset is at location loc.
func (e *FlushEntry) Has(loc string) bool { return slices.Contains(e.Locations, loc) }

// NeedsFlush reports whether the dataset is in cache but not in the prefix.
func (e *FlushEntry) NeedsFlush() bool { return e.Has(LocCache) && !e.Has(LocPFS) }

// Set adds or removes location loc.
func (e *FlushEntry) Set(loc string, on bool) {
	i := slices.Index(e.Locations, loc)
	switch {
	case on && i < 0:
		e.Locations = append(e.Locations, loc)
		sort.Strings(e.Locations)
	case !on && i >= 0:
		e.Locations = slices.Delete(e.Locations, i, i+1)
	}
}

// FlushState is where each cached dataset is: cache, prefix, or in flight.
type FlushState struct {
	Format   string                 `json:"format"`
	Version  int                    `json:"version"`
	Datasets map[string]*FlushEntry `json:"datasets"` // key: decimal dataset id
}

// FlushPath is the flush state file of a prefix.
func FlushPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), FlushFile) }

// ReadFlush reads the flush state; a missing file is an empty state.
func ReadFlush(prefixDir string) (*FlushState, error) {
	path := FlushPath(prefixDir)
	fs := &FlushState{}
	ok, err := readJSON(path, flushFormat, FlushVersion, fs)
	if err != nil {
		return nil, err
	}
	if !ok || fs.Datasets == nil {
		fs.Format, fs.Version, fs.Datasets = flushFormat, FlushVersion, map[string]*FlushEntry{}
	}
	for k, e := range fs.Datasets {
		if e == nil || k != strconv.FormatInt(e.ID, 10) {
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("dataset key %q does not match its record", k)}
		}
	}
	return fs, nil
}

// UpdateFlush reads the flush state under a lock, calls fn, and writes it
// back if fn returns nil.
func UpdateFlush(ctx context.Context, prefixDir string, fn func(*FlushState) error) error {
	return withLock(ctx, filepath.Join(MetaDir(prefixDir), flushLock), func() error {
		fs, err := ReadFlush(prefixDir)
		if err != nil {
			return err
		}
		if err := fn(fs); err != nil {
			return err
		}
		fs.Format, fs.Version = flushFormat, FlushVersion
		return writeJSON(FlushPath(prefixDir), fs)
	})
}

// Get returns the entry of dataset id, or nil.
func (s *FlushState) Get(id int64) *FlushEntry { return s.Datasets[strconv.FormatInt(id, 10)] }

// Ensure returns the entry of dataset id, creating it if needed.
func (s *FlushState) Ensure(id int64, name string, ckpt, output bool) *FlushEntry {
	e := s.Get(id)
	if e == nil {
		e = &FlushEntry{ID: id}
		s.Datasets[strconv.FormatInt(id, 10)] = e
	}
	e.Name, e.Checkpoint, e.Output = name, ckpt, output
	return e
}

// Remove forgets dataset id.
func (s *FlushState) Remove(id int64) { delete(s.Datasets, strconv.FormatInt(id, 10)) }

// Entries returns the entries in ascending id order.
func (s *FlushState) Entries() []*FlushEntry {
	out := make([]*FlushEntry, 0, len(s.Datasets))
	for _, e := range s.Datasets {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

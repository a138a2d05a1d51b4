package flush

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
)

// FetchOptions say where a fetch reads and writes.
type FetchOptions struct {
	Prefix  string
	RankDir func(id int) string // this rank's directory of dataset id in the cache
	Below   int64               // fetch only datasets with a smaller id; 0 = any
	BufSize int
	CRC     bool // record a CRC32C of each fetched file in the filemap
	// NoMetadata: the copies get a new file's mode and times instead of
	// the prefix file's (SCR_COPY_METADATA=0).
	NoMetadata bool
	// Bypass says whether a dataset is read in place: its files are not
	// copied, the filemap points at them in the prefix, where the restart
	// reads them (SCR_FETCH_BYPASS, or a bypass descriptor). nil = never.
	Bypass func(cache.Dataset) bool
	// CheckCRC checks each file against the CRC32C rank2file records
	// (SCR_CRC_ON_FLUSH); a mismatch makes the checkpoint unusable.
	CheckCRC bool
	// Bad, if set, is called on rank 0 for every checkpoint the fetch
	// gives up on (marked failed in the index) before it tries an older
	// one, with the reason: the caller says so on stderr and in the
	// timeline, so a fall-back is never silent.
	Bad func(ds prefix.Dataset, reason string)
}

type fetchPick struct {
	ID      int64           `json:"id"`
	Summary *prefix.Summary `json:"summary,omitempty"`
	Err     string          `json:"err,omitempty"`
}

// Fetch copies the newest checkpoint of the prefix that can be restarted
// from (CURRENT, else the newest complete one never marked failed) into
// this rank's cache directory and writes its filemap (collective). A
// checkpoint that cannot be fetched because of its own state (summary or
// rank2file damaged or missing, a path leaving the prefix, a file
// missing, resized or with another CRC32C) is marked failed in the index,
// reported through Bad, and the next older one is tried. A failure of the
// cache side (full, unwritable) marks nothing and is returned. It returns
// nil when there is nothing to fetch.
func Fetch(ctx context.Context, c comm.Comm, o FetchOptions) (*cache.Dataset, error) {
	below := o.Below
	for {
		var pick fetchPick
		if c.Rank() == 0 {
			pick = choose(ctx, o, below)
		}
		b, _ := json.Marshal(pick)
		b, err := c.Bcast(ctx, 0, b)
		if err != nil {
			return nil, fmt.Errorf("fetch: rank %d: %w", c.Rank(), err)
		}
		if err := json.Unmarshal(b, &pick); err != nil {
			return nil, fmt.Errorf("fetch: rank %d: %w", c.Rank(), err)
		}
		if pick.Err != "" {
			return nil, fmt.Errorf("fetch: %s", pick.Err)
		}
		if pick.ID == 0 {
			return nil, nil
		}
		s := pick.Summary
		ds := FromPrefix(s.Dataset, s.Ranks)
		ds.Complete = true
		ds.Bypass = o.Bypass != nil && o.Bypass(ds)
		if s.Ranks != c.Size() {
			// Not the dataset's fault: try an older one, mark nothing.
			below = pick.ID
			continue
		}
		dir := o.RankDir(ds.ID)
		lerr := fetchRank(ctx, o, s, c.Rank(), dir, ds)
		var ce *cacheError
		local := errors.As(lerr, &ce)
		nc, cerr := c.Allreduce(ctx, comm.OpSum, []int64{b2i(local)})
		if cerr != nil {
			return nil, fmt.Errorf("fetch: rank %d: %w", c.Rank(), cerr)
		}
		err = agree(ctx, c, fmt.Sprintf("fetch dataset %d (%s)", ds.ID, ds.Name), lerr)
		if err == nil {
			return &ds, nil
		}
		os.RemoveAll(dir)
		if nc[0] > 0 {
			// The cache, not the dataset, failed (full, read-only, ...):
			// do not mark a good checkpoint failed for a node's fault.
			return nil, fmt.Errorf("%w (%d rank(s) could not write to their cache; the checkpoint on the prefix stays valid)", err, nc[0])
		}
		var merr error
		if c.Rank() == 0 {
			merr = giveUp(ctx, o, s.Dataset, err.Error())
		}
		if aerr := agree(ctx, c, "fetch: mark failed dataset", merr); aerr != nil {
			return nil, fmt.Errorf("%v; then: %w", err, aerr)
		}
		below = pick.ID
	}
}

// giveUp marks a checkpoint failed in the index and reports it (rank 0).
func giveUp(ctx context.Context, o FetchOptions, ds prefix.Dataset, reason string) error {
	err := prefix.UpdateIndex(ctx, o.Prefix, func(ix *prefix.Index) error {
		return ix.MarkFailed(ds.ID, time.Now())
	})
	if o.Bad != nil {
		o.Bad(ds, reason)
	}
	return err
}

// choose is rank 0's pick of the dataset to fetch.
func choose(ctx context.Context, o FetchOptions, below int64) fetchPick {
	ix, err := prefix.ReadIndex(o.Prefix)
	if err != nil {
		return fetchPick{Err: err.Error()}
	}
	for {
		e := ix.FetchCandidate(below)
		if e == nil {
			return fetchPick{}
		}
		s, err := prefix.ReadSummary(o.Prefix, e.Dataset.ID)
		if err == nil && !s.Complete {
			err = fmt.Errorf("its summary says incomplete")
		}
		if err != nil {
			// Unusable: mark it so no later search picks it again (if
			// the index cannot be written now, this search still moves
			// on to an older one).
			giveUp(ctx, o, e.Dataset, err.Error())
			below = e.Dataset.ID
			continue
		}
		prefix.UpdateIndex(ctx, o.Prefix, func(ix *prefix.Index) error {
			return ix.MarkFetched(e.Dataset.ID, time.Now())
		})
		return fetchPick{ID: e.Dataset.ID, Summary: s}
	}
}

// fetchRank copies one rank's files of a dataset into its cache directory.
// Errors of the cache side are *cacheError; everything else (metadata,
// paths, missing or damaged files) is the dataset's fault.
func fetchRank(ctx context.Context, o FetchOptions, s *prefix.Summary, rank int, dir string, ds cache.Dataset) error {
	files, err := prefix.RankFiles(o.Prefix, s, rank)
	if err != nil {
		return err
	}
	// Check every path before anything is copied: rank2file is metadata.
	rels := make([]string, len(files))
	for i, pf := range files {
		if rels[i], err = prefix.FilePath(pf.Path); err != nil {
			return fmt.Errorf("rank2file of rank %d: %w", rank, err)
		}
		if _, _, err := pf.CRC(); err != nil {
			return fmt.Errorf("rank2file of rank %d: %w", rank, err)
		}
	}
	src, err := prefix.OpenRoot(o.Prefix)
	if err != nil {
		return err
	}
	defer src.Close()
	os.RemoveAll(dir)
	if err := os.MkdirAll(cache.MetaDir(dir), cache.DirMode); err != nil {
		return &cacheError{err}
	}
	dst, err := os.OpenRoot(dir)
	if err != nil {
		return &cacheError{err}
	}
	defer dst.Close()
	bs := o.BufSize
	if bs <= 0 {
		bs = 1 << 20
	}
	var largest int64
	for _, pf := range files {
		largest = max(largest, pf.Size)
	}
	buf := make([]byte, max(min(int64(bs), largest), 4096))
	fm := cache.Filemap{Rank: rank, Dataset: ds}
	for i, pf := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		rel := rels[i]
		st, err := src.Stat(rel)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(o.Prefix, rel), err)
		}
		if st.Size() != pf.Size {
			return fmt.Errorf("%s has %d bytes, rank2file says %d", filepath.Join(o.Prefix, rel), st.Size(), pf.Size)
		}
		meta := cache.File{Size: pf.Size, Mode: uint32(st.Mode().Perm()), ModTime: st.ModTime()}
		want, hasCRC, _ := pf.CRC()
		if hasCRC && o.CheckCRC {
			meta.CRC = &want
		}
		got := cache.File{Orig: filepath.Join(o.Prefix, rel), Rel: rel, Size: pf.Size, Complete: true}
		if !o.NoMetadata {
			got.Mode, got.ModTime = meta.Mode, meta.ModTime
		}
		if ds.Bypass {
			// Read in place: the filemap records the prefix file, whose
			// CRC32C is checked (and recorded) when wanted.
			if o.CRC || meta.CRC != nil {
				sum, err := prefix.RootCRC(ctx, src, rel, buf)
				if err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(o.Prefix, rel), err)
				}
				if meta.CRC != nil && sum != *meta.CRC {
					return fmt.Errorf("%s: crc32c %08x, rank2file says %08x (damaged)", filepath.Join(o.Prefix, rel), sum, *meta.CRC)
				}
				got.CRC = &sum
			}
			fm.Files = append(fm.Files, got)
			continue
		}
		copyMeta := meta
		if o.NoMetadata {
			copyMeta.Mode, copyMeta.ModTime = 0, time.Time{}
		}
		sum, err := copyFile(src, rel, dst, rel, copyMeta, buf, o.CRC, cache.DirMode)
		var se *sourceError
		if errors.As(err, &se) {
			return fmt.Errorf("%s: %w", filepath.Join(o.Prefix, rel), err)
		}
		if err != nil {
			return &cacheError{err}
		}
		if o.CRC || meta.CRC != nil {
			got.CRC = &sum
		}
		fm.Files = append(fm.Files, got)
	}
	if err := cache.WriteFilemap(dir, fm); err != nil {
		return &cacheError{err}
	}
	return nil
}

// cacheError is a fetch failure on the cache side (the destination), not
// the dataset's fault.
type cacheError struct{ err error }

func (e *cacheError) Error() string { return "cache: " + e.err.Error() }
func (e *cacheError) Unwrap() error { return e.err }

package prefix

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rebuilder regenerates the missing files of a scavenged dataset from the
// redundancy files copied next to its metadata (scr_index --build). The
// redundancy package provides it; BuildDataset works without one and then
// only reports what is missing.
type Rebuilder interface {
	RebuildDataset(ctx context.Context, prefixDir string, id int64, missing []Missing) error
}

// BuildDataset is scr_index --build: check a dataset's files against its
// summary and rank2file, let rb rebuild missing files (if rb is not nil and
// files are missing), check again, then record the result: the summary's
// Complete flag, and a fresh index entry (no FAILED mark, FLUSHED = now,
// complete only if every file is there). It returns the final check; the
// dataset is usable for a restart only if check.Complete().
func BuildDataset(ctx context.Context, prefixDir string, id int64, rb Rebuilder, now time.Time) (*DatasetCheck, error) {
	chk, err := CheckDataset(ctx, prefixDir, id)
	if err != nil {
		return nil, err
	}
	if !chk.Complete() && rb != nil {
		if err := rb.RebuildDataset(ctx, prefixDir, id, chk.Missing); err != nil {
			return chk, fmt.Errorf("rebuild dataset %d (%d files missing): %w", id, len(chk.Missing), err)
		}
		if chk, err = CheckDataset(ctx, prefixDir, id); err != nil {
			return nil, err
		}
	}
	s := chk.Summary
	s.Complete = chk.Complete()
	s.Dataset.Complete = s.Complete
	if err := WriteSummary(prefixDir, s); err != nil {
		return chk, err
	}
	err = UpdateIndex(ctx, prefixDir, func(x *Index) error {
		if old := x.Get(id); old != nil {
			delete(x.Datasets, strconv.FormatInt(id, 10))
		}
		if _, err := x.Put(s.Dataset); err != nil {
			return err
		}
		return x.MarkFlushed(id, s.Complete, now)
	})
	return chk, err
}

// AddDataset is scr_index --add: put the dataset called name, found by its
// summary under <prefix>/.scr/scr.dataset.*, into the index, complete as
// its summary says.
func AddDataset(ctx context.Context, prefixDir, name string, now time.Time) (*Summary, error) {
	ids, err := DatasetIDs(prefixDir)
	if err != nil {
		return nil, err
	}
	var found *Summary
	for _, id := range ids {
		s, err := ReadSummary(prefixDir, id)
		if err != nil {
			continue // a damaged summary of another dataset does not matter here
		}
		if s.Dataset.Name == name {
			found = s
			break
		}
	}
	if found == nil {
		return nil, fmt.Errorf("add %q: no summary under %s names it: %w", name, MetaDir(prefixDir), ErrNoDataset)
	}
	err = UpdateIndex(ctx, prefixDir, func(x *Index) error {
		if _, err := x.Put(found.Dataset); err != nil {
			return err
		}
		return x.MarkFlushed(found.Dataset.ID, found.Complete, now)
	})
	return found, err
}

// DatasetIDs lists the ids of the dataset metadata directories of a prefix,
// newest first.
func DatasetIDs(prefixDir string) ([]int64, error) {
	ents, err := os.ReadDir(MetaDir(prefixDir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", MetaDir(prefixDir), err)
	}
	var ids []int64
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "scr.dataset.")
		if !ok || !e.IsDir() {
			continue
		}
		if id, err := strconv.ParseInt(rest, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] > ids[j] })
	return ids, nil
}

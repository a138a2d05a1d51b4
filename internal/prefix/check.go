package prefix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Missing is a file of a dataset that is not (correctly) in the prefix.
type Missing struct {
	Rank   int    // the rank that wrote it
	Path   string // relative to the prefix
	Reason string // "missing", "size 10, want 20", ...
}

// DatasetCheck is the result of CheckDataset.
type DatasetCheck struct {
	Summary *Summary
	Files   int64     // files listed in rank2file
	Bytes   int64     // their recorded total size
	Missing []Missing // files absent or of the wrong size, by rank
}

// Complete reports whether every listed file is present with its size.
func (c *DatasetCheck) Complete() bool { return len(c.Missing) == 0 }

// checkWorkers bounds parallel stat calls on the prefix file system.
const checkWorkers = 16

// CheckDataset checks that every file rank2file lists for dataset id is in
// the prefix with its recorded size. It needs the summary and every
// rank2file part; a missing or damaged part is an error (the dataset cannot
// be judged), a missing data file is a Missing entry. Files are checked by
// a bounded pool of workers; ctx stops the check.
func CheckDataset(ctx context.Context, prefixDir string, id int64) (*DatasetCheck, error) {
	s, err := ReadSummary(prefixDir, id)
	if err != nil {
		return nil, err
	}
	res := &DatasetCheck{Summary: s}
	type job struct {
		rank int
		f    File
	}
	jobs := make(chan job)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < checkWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				reason := checkFile(prefixDir, j.f)
				if reason != "" {
					mu.Lock()
					res.Missing = append(res.Missing, Missing{Rank: j.rank, Path: j.f.Path, Reason: reason})
					mu.Unlock()
				}
			}
		}()
	}
	var perr error
parts:
	for p := 0; p < s.Parts(); p++ {
		part, err := ReadRank2FilePart(prefixDir, s, p)
		if err != nil {
			perr = err
			break
		}
		for _, r := range part.Lost {
			mu.Lock()
			res.Missing = append(res.Missing, Missing{Rank: r, Reason: "the files of this rank were not recovered"})
			mu.Unlock()
		}
		for i, files := range part.Ranks {
			for _, f := range files {
				res.Files++
				res.Bytes += f.Size
				select {
				case jobs <- job{part.First + i, f}:
				case <-ctx.Done():
					perr = ctx.Err()
					break parts
				}
			}
		}
	}
	close(jobs)
	wg.Wait()
	if perr != nil {
		return nil, fmt.Errorf("check dataset %d: %w", id, perr)
	}
	sortMissing(res.Missing)
	return res, nil
}

func checkFile(prefixDir string, f File) string {
	p, err := PrefixFilePath(prefixDir, f.Path)
	if err != nil {
		return err.Error()
	}
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return "missing"
	}
	if err != nil {
		return err.Error()
	}
	if !st.Mode().IsRegular() {
		return "not a regular file"
	}
	if st.Size() != f.Size {
		return fmt.Sprintf("size %d, want %d", st.Size(), f.Size)
	}
	return ""
}

// PrefixFilePath turns a rank2file path (relative, slash-separated) into a
// path under prefixDir, refusing paths that leave the prefix.
func PrefixFilePath(prefixDir, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if rel == "" || path.IsAbs(rel) || strings.HasPrefix(path.Clean(rel), "..") || clean == "/" {
		return "", fmt.Errorf("path %q is not inside the prefix", rel)
	}
	return filepath.Join(prefixDir, filepath.FromSlash(clean[1:])), nil
}

func sortMissing(m []Missing) {
	// workers append in random order; order by rank, then path
	sort.Slice(m, func(i, j int) bool {
		if m[i].Rank != m[j].Rank {
			return m[i].Rank < m[j].Rank
		}
		return m[i].Path < m[j].Path
	})
}

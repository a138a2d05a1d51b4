package prefix

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
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
// the prefix with its recorded size and, when one was recorded, its
// CRC32C (the content is read). It needs the summary and every rank2file
// part; a missing or damaged part is an error (the dataset cannot be
// judged), a missing, damaged or misplaced data file is a Missing entry: a
// path that would leave the prefix (".." or a symbolic link pointing
// outside) is never followed. Files are checked by a bounded pool of
// workers; ctx stops the check.
func CheckDataset(ctx context.Context, prefixDir string, id int64) (*DatasetCheck, error) {
	s, err := ReadSummary(prefixDir, id)
	if err != nil {
		return nil, err
	}
	root, err := OpenRoot(prefixDir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
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
			buf := make([]byte, 1<<20)
			for j := range jobs {
				reason := checkFile(ctx, root, j.f, buf)
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

// checkFile says what is wrong with one listed file, or "".
func checkFile(ctx context.Context, root *os.Root, f File, buf []byte) string {
	rel, err := FilePath(f.Path)
	if err != nil {
		return err.Error()
	}
	want, hasCRC, err := f.CRC()
	if err != nil {
		return err.Error()
	}
	st, err := root.Stat(rel)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "missing"
	case Escaped(err):
		return "its path leads outside the prefix through a symbolic link"
	case err != nil:
		return err.Error()
	case !st.Mode().IsRegular():
		return "not a regular file"
	case st.Size() != f.Size:
		return fmt.Sprintf("size %d, want %d", st.Size(), f.Size)
	case !hasCRC:
		return ""
	}
	got, err := RootCRC(ctx, root, rel, buf)
	if err != nil {
		return err.Error()
	}
	if got != want {
		return fmt.Sprintf("damaged: crc32c %08x, rank2file says %08x", got, want)
	}
	return ""
}

// castagnoli is the CRC32C table (rank2file's checksum).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RootCRC is the CRC32C of the file rel inside root (read with buf).
func RootCRC(ctx context.Context, root *os.Root, rel string, buf []byte) (uint32, error) {
	fh, err := root.Open(rel)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	h := crc32.New(castagnoli)
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := fh.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return h.Sum32(), nil
		}
		if err != nil {
			return 0, err
		}
	}
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

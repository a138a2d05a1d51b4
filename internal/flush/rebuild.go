package flush

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/redundancy"
)

// ErrNoRedundancy is wrapped by RebuildScavenged when no rank's redundancy
// data reached the prefix (the dataset was not protected, or every node
// holding it is gone).
var ErrNoRedundancy = errors.New("no scavenged redundancy data")

// viewWorkers bounds the parallel metadata operations on the prefix file
// system while the rebuild view is set up.
const viewWorkers = 16

// RebuildScavenged regenerates, in the prefix, the files of the ranks of
// dataset id that its rank2file marks lost (or whose files are missing or
// damaged), from the redundancy files a scavenge copied (Scavenge,
// redundancy.PrefixRedDir), then records their file lists in rank2file
// (clearing Lost). It returns the rebuilt ranks, ascending, and their
// files. The summary and index are left to the caller (CommitScavenged, or
// prefix.BuildDataset through ScavengeRebuilder).
//
// The redundancy data protects each rank's filemap (.scr/filemap.json)
// besides its files, so every rank gets a directory of its own in a
// temporary view under the dataset's metadata directory: symbolic links to
// its files in the prefix and to its scavenged filemap. The view is
// rebuilt with redundancy.RebuildOffline; rebuilt files are then moved to
// their places in the prefix and the view is removed. When a set lost more
// than its scheme tolerates, the error wraps redundancy.ErrUnrecoverable
// (its *UnrecoverableError names the sets and ranks) and nothing in the
// prefix changed.
func RebuildScavenged(ctx context.Context, prefixDir string, id int64, bufSize int) ([]int, map[int][]prefix.File, error) {
	return rebuildScavenged(ctx, prefixDir, id, bufSize, nil)
}

// rebuildScavenged is RebuildScavenged; the files named in damaged
// (prefix paths, e.g. a CRC32C mismatch found by scr_index --build) are
// left out of the view, so their ranks count as lost and are rebuilt.
func rebuildScavenged(ctx context.Context, prefixDir string, id int64, bufSize int, damaged map[string]bool) ([]int, map[int][]prefix.File, error) {
	s, err := prefix.ReadSummary(prefixDir, id)
	if err != nil {
		return nil, nil, err
	}
	n := s.Ranks
	if n <= 0 {
		return nil, nil, fmt.Errorf("dataset %d: the summary lists no ranks", id)
	}
	parts := make([]*prefix.Rank2FilePart, s.Parts())
	known := make([][]prefix.File, n)
	for p := range parts {
		if parts[p], err = prefix.ReadRank2FilePart(prefixDir, s, p); err != nil {
			return nil, nil, err
		}
		for i, fs := range parts[p].Ranks {
			known[parts[p].First+i] = fs
		}
	}
	protected := 0
	for r := range n {
		if _, err := os.Stat(filepath.Join(redundancy.PrefixRedDir(prefixDir, id, r), filepath.Base(redundancy.DataFile))); err == nil {
			protected++
		}
	}
	if protected == 0 {
		return nil, nil, fmt.Errorf("dataset %d: %w for any of its %d ranks in %s (was it written with a redundancy scheme?)",
			id, ErrNoRedundancy, n, filepath.Dir(redundancy.PrefixRedDir(prefixDir, id, 0)))
	}

	view := filepath.Join(prefix.DatasetDir(prefixDir, id), "rebuild")
	if err := os.RemoveAll(view); err != nil {
		return nil, nil, fmt.Errorf("dataset %d: remove the old rebuild view: %w", id, err)
	}
	defer os.RemoveAll(view)
	vdir := func(r int) string { return filepath.Join(view, "rank."+strconv.Itoa(r)) }
	root, err := prefix.OpenRoot(prefixDir)
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	if err := eachRank(ctx, n, func(r int) error { return linkRank(root, prefixDir, id, r, vdir(r), known[r], damaged) }); err != nil {
		return nil, nil, fmt.Errorf("dataset %d: set up the rebuild view in %s: %w", id, view, err)
	}
	dirs := make([]redundancy.Dirs, n)
	for r := range dirs {
		dirs[r] = redundancy.Dirs{Data: vdir(r), Meta: redundancy.PrefixRedDir(prefixDir, id, r)}
	}
	res, err := redundancy.RebuildOffline(ctx, dirs, bufSize)
	if ue := (*redundancy.UnrecoverableError)(nil); errors.As(err, &ue) {
		return nil, nil, &LossError{ID: id, Err: ue}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dataset %d: rebuild from the scavenged redundancy data: %w", id, err)
	}

	var rebuilt []int
	for r := range res {
		if res[r].Rebuilt {
			rebuilt = append(rebuilt, r)
		}
	}
	files := make(map[int][]prefix.File, len(rebuilt))
	var mu sync.Mutex
	err = eachRank(ctx, len(rebuilt), func(i int) error {
		r := rebuilt[i]
		fs, err := placeRank(root, prefixDir, id, r, vdir(r))
		if err != nil {
			return fmt.Errorf("rank %d: %w", r, err)
		}
		mu.Lock()
		files[r] = fs
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dataset %d: move the rebuilt files into the prefix: %w", id, err)
	}
	for p, part := range parts {
		changed := false
		for i := range part.Ranks {
			if fs, ok := files[part.First+i]; ok {
				part.Ranks[i] = fs
				changed = true
			}
		}
		lost := part.Lost[:0:0]
		for _, r := range part.Lost {
			if _, ok := files[r]; !ok {
				lost = append(lost, r)
			}
		}
		if len(lost) != len(part.Lost) {
			part.Lost, changed = lost, true
		}
		if len(lost) > 0 {
			return nil, nil, fmt.Errorf("dataset %d: ranks %v are still lost after the rebuild", id, lost)
		}
		if changed {
			if err := prefix.WriteRank2FilePart(prefixDir, id, p, part); err != nil {
				return nil, nil, err
			}
		}
	}
	return rebuilt, files, nil
}

// LossError says that a scavenged dataset lost more ranks than its
// redundancy tolerates. It unwraps to the *redundancy.UnrecoverableError
// (errors.Is redundancy.ErrUnrecoverable).
type LossError struct {
	ID  int64
	Err *redundancy.UnrecoverableError
}

func (e *LossError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dataset %d cannot be rebuilt: %d redundancy set(s) lost more than %v tolerates:", e.ID, e.Err.Total, e.Err.Scheme.Type)
	for i, s := range e.Err.Sets {
		if i > 0 {
			b.WriteString(";")
		}
		if s.Set < 0 {
			b.WriteString(" ranks in no known set (no surviving member's redundancy data names them):")
		} else {
			fmt.Fprintf(&b, " set %d lost", s.Set)
		}
		for j, r := range s.Lost {
			if j == 10 {
				fmt.Fprintf(&b, " and %d more", len(s.Lost)-10)
				break
			}
			fmt.Fprintf(&b, " rank %d (%s)", r, s.Reasons[j])
		}
	}
	if e.Err.Total > len(e.Err.Sets) {
		fmt.Fprintf(&b, "; and %d more set(s)", e.Err.Total-len(e.Err.Sets))
	}
	b.WriteString("; restart from an older checkpoint")
	return b.String()
}

func (e *LossError) Unwrap() error { return e.Err }

// linkRank makes rank r's view: links to its scavenged filemap and to those
// of its files that are in the prefix (and not damaged). A lost rank gets
// an empty view. Paths come from rank2file: each is checked
// (prefix.FilePath) and must lead to a regular file inside the prefix
// without leaving it through a symbolic link.
func linkRank(root *os.Root, prefixDir string, id int64, r int, dir string, files []prefix.File, damaged map[string]bool) error {
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(filepath.FromSlash(cache.FilemapName))), 0o700); err != nil {
		return err
	}
	fm := ScavengedFilemap(prefixDir, id, r)
	if _, err := os.Stat(fm); err == nil {
		if err := os.Symlink(fm, filepath.Join(dir, filepath.FromSlash(cache.FilemapName))); err != nil {
			return err
		}
	}
	for _, f := range files {
		rel, err := prefix.FilePath(f.Path)
		if err != nil {
			return fmt.Errorf("rank %d: %w", r, err)
		}
		target := filepath.Join(prefixDir, rel)
		if st, err := root.Lstat(rel); err != nil || !st.Mode().IsRegular() || damaged[f.Path] {
			continue // missing, damaged or not a plain file: the rebuild will write it into the view
		}
		l := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(l), 0o700); err != nil {
			return err
		}
		if err := os.Symlink(target, l); err != nil {
			return err
		}
	}
	return nil
}

// placeRank moves rank r's rebuilt filemap and files from its view to the
// prefix and returns its file list (from the rebuilt filemap). Files the
// rebuild wrote through a link are in place already.
func placeRank(root *os.Root, prefixDir string, id int64, r int, dir string) ([]prefix.File, error) {
	fm, err := cache.ReadFilemap(dir)
	if err != nil {
		return nil, fmt.Errorf("read the rebuilt filemap: %w", err)
	}
	view := prefixRel(prefixDir, dir)
	if err := moveRegular(root, filepath.Join(view, filepath.FromSlash(cache.FilemapName)), prefixRel(prefixDir, ScavengedFilemap(prefixDir, id, r))); err != nil {
		return nil, err
	}
	out := make([]prefix.File, 0, len(fm.Files))
	buf := make([]byte, 1<<20)
	for _, f := range fm.Files {
		slash := filepath.ToSlash(f.Rel)
		rel, err := prefix.FilePath(slash) // the rebuilt filemap is metadata too
		if err != nil {
			return nil, err
		}
		if err := moveRegular(root, filepath.Join(view, rel), rel); err != nil {
			return nil, err
		}
		sum, err := prefix.RootCRC(context.Background(), root, rel, buf)
		if err != nil {
			return nil, err
		}
		out = append(out, prefixFile(slash, f.Size, sum, true))
	}
	// Every file must now be in the prefix with its size (a bypass
	// dataset's files were there all along: only its filemap was rebuilt).
	if err := cache.Verify(prefixDir, withoutCRC(fm)); err != nil {
		return nil, err
	}
	return out, nil
}

// moveRegular renames src to dst (both relative to the prefix root) when
// src is a regular file (rebuilt in the view); a link (rebuilt through it,
// in place) or nothing is left alone.
func moveRegular(root *os.Root, src, dst string) error {
	st, err := root.Lstat(src)
	if errors.Is(err, os.ErrNotExist) || (err == nil && !st.Mode().IsRegular()) {
		return nil
	}
	if err != nil {
		return err
	}
	if d := filepath.Dir(dst); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return root.Rename(src, dst)
}

// eachRank runs fn(0..n-1) on up to viewWorkers goroutines and returns the
// first error (lowest index); it stops handing out work on error or when
// ctx ends.
func eachRank(ctx context.Context, n int, fn func(int) error) error {
	errs := make([]error, n)
	next := make(chan int)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range min(viewWorkers, n) {
		wg.Go(func() {
			for i := range next {
				if errs[i] = fn(i); errs[i] != nil {
					failed.Store(true)
				}
			}
		})
	}
	var stop error
feed:
	for i := range n {
		if failed.Load() {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			stop = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		return errs[i]
	}
	return stop
}

// ScavengeRebuilder is the prefix.Rebuilder of scr_index --build: it
// regenerates a scavenged dataset's missing ranks with RebuildScavenged.
type ScavengeRebuilder struct {
	BufSize int // piece size of the rebuild; 0 = the redundancy default
}

var _ prefix.Rebuilder = ScavengeRebuilder{}

// RebuildDataset implements prefix.Rebuilder.
// Files reported damaged (present, but not as rank2file records them) are
// rebuilt too.
func (b ScavengeRebuilder) RebuildDataset(ctx context.Context, prefixDir string, id int64, missing []prefix.Missing) error {
	damaged := map[string]bool{}
	for _, m := range missing {
		if m.Path != "" {
			damaged[m.Path] = true
		}
	}
	_, _, err := rebuildScavenged(ctx, prefixDir, id, b.BufSize, damaged)
	return err
}

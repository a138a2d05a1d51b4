package flush

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/redundancy"
)

// RankResult is what Scavenge found for one rank directory.
type RankResult struct {
	Rank  int           `json:"rank"`
	Files []prefix.File `json:"files,omitempty"` // copied to the prefix
	Err   string        `json:"err,omitempty"`   // why the rank's files were not (all) copied
	// Redundancy says the rank's redundancy files (red.data, red.state)
	// were copied to redundancy.PrefixRedDir, so an offline rebuild can
	// use this rank's data.
	Redundancy bool `json:"redundancy,omitempty"`
}

// ScavengeResult is what Scavenge did on one node.
type ScavengeResult struct {
	Dataset cache.Dataset `json:"dataset"`
	Ranks   []RankResult  `json:"ranks"`
}

// Scavenge copies the valid cached files of dataset id held on one node to
// their original paths under the prefix, for scr_postrun after the last
// run. The node is given by its layout (cache.NewLayout with the node's
// SCR_CNTL_BASE / SCR_CACHE_BASE, user and job id). For every rank
// directory of the dataset with a readable filemap, every file is checked
// against its metadata (size, CRC32C when recorded) and copied; a rank with
// any bad file reports it in Err and contributes no file (nor redundancy
// data: the rank counts as lost). Each good rank's filemap is copied as is to
// ScavengedFilemap, and its redundancy files, when the dataset has any, to
// redundancy.PrefixRedDir, for RebuildScavenged.
// Scavenge writes no summary or index: when every node is done, the
// caller passes the per-rank files to CommitScavenged.
func Scavenge(ctx context.Context, l cache.Layout, id int, prefixDir string) (ScavengeResult, error) {
	var res ScavengeResult
	if err := l.Check(); err != nil {
		return res, fmt.Errorf("scavenge: %w", err)
	}
	ix, err := l.ReadIndex()
	if err != nil {
		return res, err
	}
	e := ix.Datasets[id]
	if e == nil {
		return res, fmt.Errorf("scavenge: dataset %d is not in the cache index %s", id, l.IndexPath())
	}
	if !e.Dataset.Complete {
		return res, fmt.Errorf("scavenge: dataset %d (%s) never completed on this node", id, e.Dataset.Name)
	}
	res.Dataset = e.Dataset
	dsDir := l.DatasetPath(ix, id) // the dataset's store (a CKPT descriptor may name another than SCR_CACHE_BASE), checked by ReadIndex
	ents, err := os.ReadDir(dsDir)
	if err != nil {
		return res, fmt.Errorf("scavenge: %w", err)
	}
	if err := prefix.EnsureMetaDir(prefixDir); err != nil {
		return res, fmt.Errorf("scavenge: %w", err)
	}
	root, err := prefix.OpenRoot(prefixDir)
	if err != nil {
		return res, fmt.Errorf("scavenge: %w", err)
	}
	defer root.Close()
	buf := make([]byte, 1<<20)
	for _, de := range ents {
		r, err := strconv.Atoi(strings.TrimPrefix(de.Name(), "rank."))
		if err != nil || !de.IsDir() || !strings.HasPrefix(de.Name(), "rank.") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		rr := RankResult{Rank: r}
		dir := cache.RankDir(dsDir, r)
		rr.Files, rr.Redundancy, err = scavengeRank(root, prefixDir, e.Dataset, id, r, dir, buf)
		if err != nil {
			rr.Err, rr.Files, rr.Redundancy = err.Error(), nil, false
		}
		res.Ranks = append(res.Ranks, rr)
	}
	sort.Slice(res.Ranks, func(i, j int) bool { return res.Ranks[i].Rank < res.Ranks[j].Rank })
	return res, nil
}

// scavengeRank copies one rank directory's files, filemap and redundancy
// files to the prefix (through root: paths from the filemap stay inside
// it) and returns the rank's rank2file records, each with its CRC32C.
func scavengeRank(root *os.Root, prefixDir string, ds cache.Dataset, id, r int, dir string, buf []byte) ([]prefix.File, bool, error) {
	src, err := os.OpenRoot(dir)
	if err != nil {
		return nil, false, err
	}
	defer src.Close()
	fm, err := cache.ReadFilemap(dir)
	if err != nil {
		return nil, false, err
	}
	// Presence, completeness and sizes first; the CRC32C (when recorded)
	// is checked during the copy, reading each file once.
	where := dir
	if ds.Bypass {
		where = prefixDir // the files were written there directly
	}
	if err := cache.Verify(where, withoutCRC(fm)); err != nil {
		return nil, false, err
	}
	var files []prefix.File
	for _, f := range fm.Files {
		slash := filepath.ToSlash(f.Rel)
		rel, err := prefix.FilePath(slash)
		if err != nil {
			return nil, false, fmt.Errorf("filemap of rank %d: %w", r, err)
		}
		if ds.Bypass {
			files = append(files, prefix.File{Path: slash, Size: f.Size})
			continue
		}
		sum, err := copyFile(src, rel, root, rel, f, buf, true, 0o755)
		if err != nil {
			return nil, false, err
		}
		files = append(files, prefixFile(slash, f.Size, sum, true))
	}
	// The filemap's own bytes: the redundancy data protects the filemap
	// file, so an offline rebuild needs it unchanged.
	if err := copyRaw(src, filepath.FromSlash(cache.FilemapName), root, prefixRel(prefixDir, ScavengedFilemap(prefixDir, int64(id), r)), buf); err != nil {
		return nil, false, err
	}
	red, err := copyRedundancy(src, root, prefixRel(prefixDir, redundancy.PrefixRedDir(prefixDir, int64(id), r)), buf)
	if err != nil {
		return nil, false, err
	}
	return files, red, nil
}

// prefixRel is p (a path under prefixDir that we computed, not metadata)
// relative to the prefix.
func prefixRel(prefixDir, p string) string {
	rel, err := filepath.Rel(prefixDir, p)
	if err != nil {
		return p
	}
	return rel
}

// ErrIncomplete is returned by CommitScavenged when some rank's files are
// missing; the index entry is then written with complete=false.
var ErrIncomplete = errors.New("scavenge: dataset incomplete")

// CommitScavenged writes the rank2file map, summary and index entry of a
// scavenged dataset from the results of every node. perRank[r] is nil for a
// rank whose files were not recovered (recovered[r] false): rank2file marks
// it Lost, the dataset is recorded incomplete (never chosen for a restart)
// and ErrIncomplete is returned. RebuildScavenged may then regenerate the
// lost ranks from the scavenged redundancy data, after which the caller
// commits again with every rank recovered.
func CommitScavenged(ctx context.Context, prefixDir string, ds cache.Dataset, perRank [][]prefix.File, recovered []bool) error {
	n := len(perRank)
	for first := 0; first < n; first += ranksPerPart {
		last := min(first+ranksPerPart, n)
		p := &prefix.Rank2FilePart{First: first, Ranks: perRank[first:last]}
		for r := first; r < last; r++ {
			if r >= len(recovered) || !recovered[r] {
				p.Lost = append(p.Lost, r) // unknown, not "no files"
			}
		}
		if err := prefix.WriteRank2FilePart(prefixDir, int64(ds.ID), first/ranksPerPart, p); err != nil {
			return err
		}
	}
	complete := len(recovered) == n
	for _, ok := range recovered {
		complete = complete && ok
	}
	pd := ToPrefix(ds)
	pd.Complete = complete
	if err := prefix.WriteSummary(prefixDir, &prefix.Summary{Dataset: pd, Complete: complete, Ranks: n, RanksPerPart: ranksPerPart}); err != nil {
		return err
	}
	if complete {
		return commitMeta(ctx, prefixDir, ds, n, timeNow())
	}
	err := prefix.UpdateIndex(ctx, prefixDir, func(ix *prefix.Index) error {
		if _, err := ix.Put(pd); err != nil {
			return err
		}
		return ix.MarkFlushed(pd.ID, false, timeNow())
	})
	if err != nil {
		return err
	}
	return fmt.Errorf("dataset %d (%s): %w", ds.ID, ds.Name, ErrIncomplete)
}

// withoutCRC returns a copy of fm whose files carry no CRC.
func withoutCRC(fm cache.Filemap) cache.Filemap {
	out := fm
	out.Files = make([]cache.File, len(fm.Files))
	for i, f := range fm.Files {
		f.CRC = nil
		out.Files[i] = f
	}
	return out
}

// ScavengedFilemap is where Scavenge puts rank r's filemap of dataset id
// (byte for byte the cached .scr/filemap.json).
func ScavengedFilemap(prefixDir string, id int64, rank int) string {
	return filepath.Join(prefix.DatasetDir(prefixDir, id), "scavenge", "filemap."+strconv.Itoa(rank)+".json")
}

// copyRaw copies srcRel of src to dstRel of dst atomically, whatever its
// content.
func copyRaw(src *os.Root, srcRel string, dst *os.Root, dstRel string, buf []byte) error {
	st, err := src.Stat(srcRel)
	if err != nil {
		return err
	}
	_, err = copyFile(src, srcRel, dst, dstRel, cache.File{Size: st.Size(), Mode: uint32(st.Mode().Perm())}, buf, false, 0o700)
	return err
}

// copyRedundancy copies a cached rank directory's red.data and red.state
// to dstDir (relative to dst). A rank without red.data (a dataset encoded
// by no scheme) copies nothing and reports false. The files' own checks
// (header and payload CRCs, the "encoded" state) are made by the rebuild
// that reads them.
func copyRedundancy(src, dst *os.Root, dstDir string, buf []byte) (bool, error) {
	if _, err := src.Stat(filepath.FromSlash(redundancy.DataFile)); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	for _, n := range []string{redundancy.DataFile, redundancy.StateFile} {
		if err := copyRaw(src, filepath.FromSlash(n), dst, filepath.Join(dstDir, filepath.Base(n)), buf); err != nil {
			return false, fmt.Errorf("copy redundancy data: %w", err)
		}
	}
	return true, nil
}

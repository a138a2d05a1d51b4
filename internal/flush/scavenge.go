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
	ix, err := cache.ReadIndex(l.IndexPath())
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
	dsDir := e.Path // the dataset's store (a CKPT descriptor may name another than SCR_CACHE_BASE)
	if dsDir == "" {
		dsDir = l.DatasetDir(id)
	}
	ents, err := os.ReadDir(dsDir)
	if err != nil {
		return res, fmt.Errorf("scavenge: %w", err)
	}
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
		fm, err := cache.ReadFilemap(dir)
		if err == nil {
			// Presence, completeness and sizes first; the CRC32C (when
			// recorded) is checked during the copy, reading each file once.
			where := dir
			if e.Dataset.Bypass {
				where = prefixDir // the files were written there directly
			}
			err = cache.Verify(where, withoutCRC(fm))
		}
		if err == nil && !e.Dataset.Bypass {
			for _, f := range fm.Files {
				if err = copyFile(filepath.Join(dir, f.Rel), filepath.Join(prefixDir, f.Rel), f, buf); err != nil {
					break
				}
			}
		}
		if err == nil {
			// The filemap's own bytes: the redundancy data protects the
			// filemap file, so an offline rebuild needs it unchanged.
			err = copyRaw(filepath.Join(dir, cache.FilemapName), ScavengedFilemap(prefixDir, int64(id), r), buf)
		}
		if err == nil {
			rr.Redundancy, err = copyRedundancy(dir, redundancy.PrefixRedDir(prefixDir, int64(id), r), buf)
		}
		if err != nil {
			rr.Err = err.Error()
		} else {
			for _, f := range fm.Files {
				rr.Files = append(rr.Files, prefix.File{Path: filepath.ToSlash(f.Rel), Size: f.Size})
			}
		}
		res.Ranks = append(res.Ranks, rr)
	}
	sort.Slice(res.Ranks, func(i, j int) bool { return res.Ranks[i].Rank < res.Ranks[j].Rank })
	return res, nil
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

// copyRaw copies src to dst atomically, whatever its content.
func copyRaw(src, dst string, buf []byte) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	return copyFile(src, dst, cache.File{Size: st.Size(), Mode: uint32(st.Mode().Perm())}, buf)
}

// copyRedundancy copies a cached rank directory's red.data and red.state to
// dst. A rank without red.data (a dataset encoded by no scheme) copies
// nothing and reports false. The files' own checks (header and payload
// CRCs, the "encoded" state) are made by the rebuild that reads them.
func copyRedundancy(rankDir, dst string, buf []byte) (bool, error) {
	data := filepath.Join(rankDir, filepath.FromSlash(redundancy.DataFile))
	if _, err := os.Stat(data); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	for _, n := range []string{redundancy.DataFile, redundancy.StateFile} {
		src := filepath.Join(rankDir, filepath.FromSlash(n))
		if err := copyRaw(src, filepath.Join(dst, filepath.Base(n)), buf); err != nil {
			return false, fmt.Errorf("copy redundancy data: %w", err)
		}
	}
	return true, nil
}

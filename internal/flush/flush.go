// Package flush moves datasets between the node-local cache and the prefix:
// flush (cache -> prefix, each file to its original path, then the
// dataset's metadata: rank2file, summary, index entry, flush state),
// fetch (prefix -> cache, for a restart when the caches hold nothing), and
// scavenge (one node's cached files -> prefix, for scr_postrun after the
// last run).
//
// The copy of a rank's files (CopyRank) is local and may run in a goroutine
// (async flush); Commit, Fetch and the rest are collective over a comm.Comm
// and write the prefix metadata through internal/prefix only.
package flush

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/collective"
	"github.com/scr-go/scr/internal/prefix"
)

// ToPrefix converts a cache dataset record to the prefix's.
func ToPrefix(d cache.Dataset) prefix.Dataset {
	return prefix.Dataset{
		ID: int64(d.ID), Name: d.Name, Checkpoint: d.IsCheckpoint(), Output: d.IsOutput(),
		CkptID: int64(d.CkptID), Created: d.Created, User: d.User, JobID: d.JobID,
		JobName: d.JobName, Cluster: d.Cluster, Files: d.Files, Size: d.Bytes, Complete: d.Complete,
	}
}

// FromPrefix converts a prefix dataset record to the cache's.
func FromPrefix(d prefix.Dataset, ranks int) cache.Dataset {
	var f cache.Flags
	if d.Checkpoint {
		f |= cache.FlagCheckpoint
	}
	if d.Output {
		f |= cache.FlagOutput
	}
	return cache.Dataset{
		ID: int(d.ID), Name: d.Name, Flags: f, CkptID: int(d.CkptID), Created: d.Created,
		User: d.User, JobID: d.JobID, JobName: d.JobName, Cluster: d.Cluster, Ranks: ranks, Files: d.Files, Bytes: d.Size, Complete: d.Complete,
	}
}

// CopyRank copies the files of one rank's filemap from its cache directory
// to their original paths under the prefix (a new temporary file, fsync,
// rename), restoring mode and modification time. With bypass the files
// are already in place and are only checked. With crc (SCR_CRC_ON_FLUSH)
// the CRC32C of every file is computed during the copy and recorded in the
// returned rank2file records; a CRC32C in the filemap (SCR_CRC_ON_COPY) is
// checked during the copy and recorded too.
//
// Every path comes from the filemap, which is metadata: it must be a local
// path outside .scr (prefix.FilePath), and the prefix is written through an
// os.Root, so no ".." and no symbolic link in the prefix leads a flush
// outside it. On failure the files this call already put in place are
// removed again (with the directories left empty), so a full prefix keeps
// no partial dataset. CopyRank does no communication.
func CopyRank(ctx context.Context, prefixDir, rankDir string, fm cache.Filemap, bypass bool, bufSize int, crc bool) ([]prefix.File, error) {
	if bufSize <= 0 {
		bufSize = 1 << 20
	}
	if err := prefix.EnsureMetaDir(prefixDir); err != nil { // the prefix, created if missing
		return nil, fmt.Errorf("flush: rank %d: %w", fm.Rank, err)
	}
	root, err := prefix.OpenRoot(prefixDir)
	if err != nil {
		return nil, fmt.Errorf("flush: rank %d: %w", fm.Rank, err)
	}
	defer root.Close()
	var src *os.Root
	if !bypass {
		if src, err = os.OpenRoot(rankDir); err != nil {
			return nil, fmt.Errorf("flush: rank %d: %w", fm.Rank, err)
		}
		defer src.Close()
	}
	buf := make([]byte, bufSize)
	out := make([]prefix.File, 0, len(fm.Files))
	fail := func(err error) ([]prefix.File, error) {
		if !bypass {
			removeFiles(root, out)
		}
		return nil, fmt.Errorf("flush: rank %d: %w", fm.Rank, err)
	}
	for _, f := range fm.Files {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		slash := filepath.ToSlash(f.Rel)
		rel, err := prefix.FilePath(slash)
		if err != nil {
			return fail(fmt.Errorf("filemap %s: %w", filepath.Join(rankDir, cache.FilemapName), err))
		}
		if bypass {
			st, err := root.Stat(rel)
			if err != nil {
				return fail(err)
			}
			if st.Size() != f.Size {
				return fail(fmt.Errorf("%s has %d bytes, %d were written", filepath.Join(prefixDir, rel), st.Size(), f.Size))
			}
			var sum uint32
			if f.CRC != nil {
				sum = *f.CRC
			}
			out = append(out, prefixFile(slash, f.Size, sum, f.CRC != nil))
			continue
		}
		sum, err := copyFile(src, rel, root, rel, f, buf, crc, 0o755)
		if err != nil {
			return fail(err)
		}
		out = append(out, prefixFile(slash, f.Size, sum, crc || f.CRC != nil))
	}
	return out, nil
}

// removeFiles removes flushed files (and the directories they leave
// empty) from the prefix: the undo of a flush that did not complete.
func removeFiles(root *os.Root, files []prefix.File) {
	for _, f := range files {
		if rel, err := prefix.FilePath(f.Path); err == nil {
			prefix.RemoveFile(root, rel)
		}
	}
}

// undoFlush removes what a failed flush of ds put in the prefix: this
// rank's files (not for bypass datasets: the application wrote those) and,
// on rank 0, the dataset's metadata directory unless a complete summary
// says an earlier flush of it succeeded.
func undoFlush(prefixDir string, ds cache.Dataset, files []prefix.File, rank int) {
	if !ds.Bypass && len(files) > 0 {
		if root, err := prefix.OpenRoot(prefixDir); err == nil {
			removeFiles(root, files)
			root.Close()
		}
	}
	if rank == 0 {
		if s, err := prefix.ReadSummary(prefixDir, int64(ds.ID)); err != nil || !s.Complete {
			os.RemoveAll(prefix.DatasetDir(prefixDir, int64(ds.ID)))
		}
	}
}

// ranksPerPart is the rank2file block size: one writer per block.
var ranksPerPart = prefix.DefaultRanksPerPart

// Commit finishes a flush (collective): every rank passes the files it
// copied (or the error of its copy). If every rank succeeded, the first
// rank of each block of ranks writes that block of the rank2file map, and
// rank 0 writes the summary, the index entry (complete, flushed now,
// CURRENT if a checkpoint) and the flush state. The same error is returned
// on every rank.
func Commit(ctx context.Context, c comm.Comm, prefixDir string, ds cache.Dataset, files []prefix.File, local error) error {
	err := commit(ctx, c, prefixDir, ds, files, local)
	if err != nil && !errors.Is(err, comm.ErrPeerLost) {
		// Every rank knows the flush failed: leave nothing half-written
		// in the prefix (a full file system would otherwise keep the
		// files of a dataset no index entry lists).
		undoFlush(prefixDir, ds, files, c.Rank())
	}
	return err
}

func commit(ctx context.Context, c comm.Comm, prefixDir string, ds cache.Dataset, files []prefix.File, local error) error {
	if err := agree(ctx, c, fmt.Sprintf("flush dataset %d (%s)", ds.ID, ds.Name), local); err != nil {
		return err
	}
	// rank2file: gather within blocks of consecutive ranks.
	blk, err := c.Split(ctx, c.Rank()/ranksPerPart, c.Rank())
	if err != nil {
		return fmt.Errorf("flush: rank %d: %w", c.Rank(), err)
	}
	defer blk.Close()
	b, _ := json.Marshal(files)
	parts, err := blk.Gather(ctx, 0, b)
	if err != nil {
		return fmt.Errorf("flush: rank %d: gather rank2file: %w", c.Rank(), err)
	}
	var werr error
	if blk.Rank() == 0 {
		p := &prefix.Rank2FilePart{First: c.Rank(), Ranks: make([][]prefix.File, len(parts))}
		for i, x := range parts {
			if werr = json.Unmarshal(x, &p.Ranks[i]); werr != nil {
				break
			}
		}
		if werr == nil {
			werr = prefix.WriteRank2FilePart(prefixDir, int64(ds.ID), c.Rank()/ranksPerPart, p)
		}
	}
	if err := agree(ctx, c, fmt.Sprintf("flush dataset %d: write rank2file", ds.ID), werr); err != nil {
		return err
	}
	if c.Rank() == 0 {
		werr = commitMeta(ctx, prefixDir, ds, c.Size(), time.Now())
	}
	return agree(ctx, c, fmt.Sprintf("flush dataset %d: write summary and index", ds.ID), werr)
}

// commitMeta writes the summary and the index entry of a dataset whose files
// and rank2file map are in the prefix, and marks it PFS in the flush state.
func commitMeta(ctx context.Context, prefixDir string, ds cache.Dataset, ranks int, now time.Time) error {
	pd := ToPrefix(ds)
	pd.Complete = true
	if err := prefix.WriteSummary(prefixDir, &prefix.Summary{Dataset: pd, Complete: true, Ranks: ranks, RanksPerPart: ranksPerPart}); err != nil {
		return err
	}
	err := prefix.UpdateIndex(ctx, prefixDir, func(ix *prefix.Index) error {
		// A name reused after the application went back to an older
		// checkpoint replaces the old entry.
		if old := ix.ByName(pd.Name); old != nil && old.Dataset.ID != pd.ID {
			if err := ix.Drop(pd.Name); err != nil {
				return err
			}
		}
		if _, err := ix.Put(pd); err != nil {
			return err
		}
		if err := ix.MarkFlushed(pd.ID, true, now); err != nil {
			return err
		}
		if pd.Checkpoint {
			return ix.SetCurrent(pd.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return prefix.UpdateFlush(ctx, prefixDir, func(fs *prefix.FlushState) error {
		e := fs.Ensure(pd.ID, pd.Name, pd.Checkpoint, pd.Output)
		e.Set(prefix.LocPFS, true)
		e.Set(prefix.LocFlushing, false)
		return nil
	})
}

// MarkCached records in the flush state that a dataset is in cache (and,
// with flushing, that a flush started). Rank 0 calls it.
func MarkCached(ctx context.Context, prefixDir string, ds cache.Dataset, flushing bool) error {
	return prefix.UpdateFlush(ctx, prefixDir, func(fs *prefix.FlushState) error {
		e := fs.Ensure(int64(ds.ID), ds.Name, ds.IsCheckpoint(), ds.IsOutput())
		e.Set(prefix.LocCache, true)
		e.Set(prefix.LocFlushing, flushing)
		return nil
	})
}

// agree turns a per-rank error into one outcome on all ranks.
// Every rank's error names the first failing rank's cause.
func agree(ctx context.Context, c comm.Comm, what string, local error) error {
	f, err := collective.Agree(ctx, c, local)
	if err != nil {
		return fmt.Errorf("flush: rank %d: %s: %w", c.Rank(), what, err)
	}
	if local != nil {
		return fmt.Errorf("flush: rank %d: %s: %w", c.Rank(), what, local)
	}
	if f != nil {
		return fmt.Errorf("flush: %s %w", what, f)
	}
	return nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ErrNothingToFetch: the prefix holds no checkpoint that can be fetched.
var ErrNothingToFetch = errors.New("flush: no complete checkpoint in the prefix")

var timeNow = time.Now

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

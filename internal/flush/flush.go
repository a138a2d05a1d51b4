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
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
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
// to their original paths under the prefix (write to a temporary name,
// fsync, rename), restoring mode and modification time. With bypass the
// files are already in place and are only checked. It returns the files as
// rank2file records. CopyRank does no communication.
func CopyRank(ctx context.Context, prefixDir, rankDir string, fm cache.Filemap, bypass bool, bufSize int) ([]prefix.File, error) {
	if bufSize <= 0 {
		bufSize = 1 << 20
	}
	buf := make([]byte, bufSize)
	out := make([]prefix.File, 0, len(fm.Files))
	for _, f := range fm.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dst := filepath.Join(prefixDir, f.Rel)
		if bypass {
			st, err := os.Stat(dst)
			if err != nil {
				return nil, fmt.Errorf("flush: rank %d: %w", fm.Rank, err)
			}
			if st.Size() != f.Size {
				return nil, fmt.Errorf("flush: rank %d: %s has %d bytes, %d were written", fm.Rank, dst, st.Size(), f.Size)
			}
		} else if err := copyFile(filepath.Join(rankDir, f.Rel), dst, f, buf); err != nil {
			return nil, fmt.Errorf("flush: rank %d: %w", fm.Rank, err)
		}
		out = append(out, prefix.File{Path: filepath.ToSlash(f.Rel), Size: f.Size})
	}
	return out, nil
}

func copyFile(src, dst string, meta cache.File, buf []byte) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".scr-partial"
	// Private while it is written when a mode is to be copied; a new file's
	// mode (0666 less the umask) without it (SCR_COPY_METADATA=0).
	perm := os.FileMode(0o600)
	if meta.Mode == 0 {
		perm = 0o666
	}
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	var w io.Writer = out
	var h hash.Hash32
	if meta.CRC != nil {
		// Check the recorded CRC32C while copying: a file damaged in
		// cache is never published on the prefix.
		h = crc32.New(castagnoli)
		w = io.MultiWriter(out, h)
	}
	n, err := io.CopyBuffer(w, in, buf)
	if err == nil && n != meta.Size {
		err = fmt.Errorf("copy %s: %d bytes, the filemap says %d (the file changed after Complete)", src, n, meta.Size)
	}
	if err == nil && h != nil && h.Sum32() != *meta.CRC {
		err = fmt.Errorf("copy %s: crc32c %#08x, the filemap says %#08x (damaged in cache)", src, h.Sum32(), *meta.CRC)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && meta.Mode != 0 {
		err = os.Chmod(tmp, os.FileMode(meta.Mode))
	}
	if err == nil && !meta.ModTime.IsZero() {
		err = os.Chtimes(tmp, time.Now(), meta.ModTime)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
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
func agree(ctx context.Context, c comm.Comm, what string, local error) error {
	v, err := c.Allreduce(ctx, comm.OpSum, []int64{b2i(local != nil)})
	if err != nil {
		return fmt.Errorf("flush: rank %d: %s: %w", c.Rank(), what, err)
	}
	if local != nil {
		return fmt.Errorf("flush: rank %d: %s: %w", c.Rank(), what, local)
	}
	if v[0] > 0 {
		return fmt.Errorf("flush: %s failed on %d rank(s)", what, v[0])
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

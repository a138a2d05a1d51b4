package scr

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/flush"
	"github.com/scr-go/scr/internal/prefix"
)

// asyncFlush is a flush whose file copies run in a goroutine owned by the
// handle. The goroutine only copies this rank's files (no communication);
// the collective commit happens at the next poll point (StartOutput,
// Complete, eviction, Finalize), so it never races with eviction, restart
// or scavenge: the dataset it copies is marked busy until the commit.
type asyncFlush struct {
	ds     cache.Dataset
	start  time.Time
	done   chan struct{}
	files  []prefix.File
	err    error
	cancel context.CancelFunc
}

// flushing says whether dataset id is being flushed asynchronously.
func (h *Handle) flushing(id int) bool { return h.async != nil && h.async.ds.ID == id }

// flushSync flushes a cached dataset to the prefix (collective).
func (h *Handle) flushSync(ctx context.Context, ds cache.Dataset) error {
	if h.flushing(ds.ID) {
		return h.waitAsync(ctx)
	}
	start := time.Now()
	if h.rank == 0 {
		h.logEvent(prefix.LogRecord{Event: "FLUSH_START", Dset: int64(ds.ID), Name: ds.Name})
	}
	dir := h.rankDir(ds, h.rank)
	fm, err := cache.ReadFilemap(dir)
	var files []prefix.File
	if err == nil {
		fm, buf := h.copyPlan(fm)
		files, err = flush.CopyRank(ctx, h.prefix, dir, fm, ds.Bypass, buf, h.cfg.CRCOnFlush)
	}
	err = h.commit(ctx, ds, files, err)
	h.logFlush(ds, "FLUSH", "FLUSH_SYNC", dir, start, err)
	return err
}

// copyPlan prepares a rank's filemap for a copy to the prefix: without
// SCR_COPY_METADATA the files' mode and times are left to the copy (new
// files, default mode), and the copy buffer is SCR_FILE_BUF_SIZE, no larger
// than the largest file (it is used when the copy checks a CRC).
func (h *Handle) copyPlan(fm cache.Filemap) (cache.Filemap, int) {
	var largest int64
	for _, f := range fm.Files {
		largest = max(largest, f.Size)
	}
	if !h.cfg.CopyMetadata {
		files := make([]cache.File, len(fm.Files))
		for i, f := range fm.Files {
			f.Mode, f.ModTime = 0, time.Time{}
			files[i] = f
		}
		fm.Files = files
	}
	return fm, h.cfg.copyBuf(largest)
}

// logFlush reports a finished flush (rank 0): debug line and text log.
func (h *Handle) logFlush(ds cache.Dataset, event, xfer, dir string, start time.Time, err error) {
	if h.rank != 0 {
		return
	}
	d := time.Since(start)
	if err != nil {
		h.debugf(1, "flush of %s (dataset %d) failed after %.6f secs: %v", ds.Name, ds.ID, d.Seconds(), err)
		h.logEvent(prefix.LogRecord{Event: event + "_FAIL", Dset: int64(ds.ID), Name: ds.Name, Secs: secs(d)})
		return
	}
	h.debugf(1, "flushed %s (dataset %d) to %s: %d bytes in %.6f secs, %.3f MB/s", ds.Name, ds.ID, h.prefix, ds.Bytes, d.Seconds(), mbps(ds.Bytes, d))
	h.logEvent(prefix.LogRecord{Event: event + "_SUCCESS", Dset: int64(ds.ID), Name: ds.Name, Secs: secs(d)})
	h.logEvent(prefix.LogRecord{Time: start, Xfer: xfer, From: filepath.Dir(dir), To: h.prefix, Dset: int64(ds.ID), Name: ds.Name,
		Secs: secs(d), Bytes: prefix.Float(float64(ds.Bytes)), Files: prefix.Int(ds.Files)})
}

func (h *Handle) commit(ctx context.Context, ds cache.Dataset, files []prefix.File, local error) error {
	if err := flush.Commit(ctx, h.world, h.prefix, ds, files, local); err != nil {
		if errors.Is(err, comm.ErrPeerLost) {
			return err
		}
		return fmt.Errorf("%w: %s to %s (it stays in cache and is flushed again at Finalize): %w", ErrFlush, ds.Name, h.prefix, err)
	}
	h.flushed[ds.ID] = true
	var werr error
	if h.rank == 0 {
		h.timeline("flush", map[string]any{"name": ds.Name, "dataset": ds.ID})
		if ds.IsCheckpoint() && h.cfg.PrefixSize > 0 {
			werr = h.slidePrefixWindow(ctx)
		}
	}
	return h.agree(ctx, "flush: delete old checkpoints beyond SCR_PREFIX_SIZE", werr)
}

// slidePrefixWindow deletes the oldest checkpoints of the prefix beyond
// SCR_PREFIX_SIZE (rank 0). Datasets that are also outputs are never
// deleted, nor is CURRENT.
func (h *Handle) slidePrefixWindow(ctx context.Context) error {
	ix, err := prefix.ReadIndex(h.prefix)
	if err != nil {
		return err
	}
	n := 0
	var errs []error
	for _, e := range ix.Entries() { // newest first
		if !e.Dataset.Checkpoint || !e.Complete {
			continue
		}
		n++
		if n <= h.cfg.PrefixSize || e.Dataset.Output || e.Dataset.Name == ix.Current {
			continue
		}
		if _, err := deleteFromPrefix(ctx, h.prefix, e.Dataset.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startAsync starts copying this rank's files of ds to the prefix.
func (h *Handle) startAsync(ctx context.Context, ds cache.Dataset) error {
	if err := h.waitAsync(ctx); err != nil {
		return err
	}
	dir := h.rankDir(ds, h.rank)
	fm, ferr := cache.ReadFilemap(dir)
	if err := h.agree(ctx, "async flush: mark flushing", h.noteCached(ctx, ds, true)); err != nil {
		return err
	}
	actx, cancel := context.WithCancel(context.Background())
	a := &asyncFlush{ds: ds, start: time.Now(), done: make(chan struct{}), cancel: cancel}
	h.async = a
	if h.rank == 0 {
		h.logEvent(prefix.LogRecord{Event: "ASYNC_FLUSH_START", Dset: int64(ds.ID), Name: ds.Name})
	}
	fm, buf := h.copyPlan(fm)
	go func() {
		defer close(a.done)
		if ferr != nil {
			a.err = ferr
			return
		}
		a.files, a.err = flush.CopyRank(actx, h.prefix, dir, fm, false, buf, h.cfg.CRCOnFlush)
	}()
	return nil
}

// pollAsync finishes the async flush if every rank's copy is done
// (collective; with wait, it waits for the copies).
func (h *Handle) pollAsync(ctx context.Context, wait bool) error {
	a := h.async
	if a == nil {
		return nil
	}
	if wait {
		select {
		case <-a.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := false
	select {
	case <-a.done:
		done = true
	default:
	}
	v, err := h.world.Allreduce(ctx, comm.OpMin, []int64{b2i(done)})
	if err != nil {
		return h.commErr("poll async flush", err)
	}
	if v[0] == 0 {
		return nil
	}
	h.async = nil
	a.cancel()
	err = h.commit(ctx, a.ds, a.files, a.err)
	h.logFlush(a.ds, "ASYNC_FLUSH", "FLUSH_ASYNC", h.rankDir(a.ds, h.rank), a.start, err)
	return err
}

// waitAsync waits for the async flush and commits it (collective).
func (h *Handle) waitAsync(ctx context.Context) error { return h.pollAsync(ctx, true) }

// fetch brings the newest usable checkpoint from the prefix into the cache
// and protects it again with redundancy (collective).
func (h *Handle) fetch(ctx context.Context) (*cache.Dataset, error) {
	if err := h.waitAsync(ctx); err != nil {
		return nil, err
	}
	if err := h.evict(ctx, "fetch", "", false); err != nil {
		return nil, err
	}
	start := time.Now()
	if h.rank == 0 {
		h.logEvent(prefix.LogRecord{Event: "FETCH_START", Note: h.prefix})
	}
	d, err := flush.Fetch(ctx, h.world, flush.FetchOptions{
		Prefix:     h.prefix,
		RankDir:    func(id int) string { return h.layout.RankDir(id, h.rank) },
		Below:      h.tried,
		BufSize:    h.cfg.copyBuf(1 << 62),
		CRC:        h.cfg.CRCOnCopy,
		CheckCRC:   h.cfg.CRCOnFlush,
		NoMetadata: !h.cfg.CopyMetadata,
		// Read in place with SCR_FETCH_BYPASS, or when the checkpoint's
		// descriptor bypasses the cache (as SCR: its shared files have one
		// owner, whose copy alone would reach the cache).
		Bypass: func(d cache.Dataset) bool {
			if h.cfg.FetchBypass {
				return true
			}
			return h.protection(&d) == nil && d.Bypass
		},
		Bad: func(ds prefix.Dataset, reason string) {
			h.reportBad(ds.Name, int(ds.ID), "prefix", reason)
		},
	})
	if h.rank == 0 {
		took := time.Since(start)
		switch {
		case err != nil:
			h.debugf(1, "fetch from %s failed after %.6f secs: %v", h.prefix, took.Seconds(), err)
			h.logEvent(prefix.LogRecord{Event: "FETCH_FAIL", Note: h.prefix, Secs: secs(took)})
		case d != nil:
			how := "copied into the cache"
			if d.Bypass {
				how = "read in place (SCR_FETCH_BYPASS)"
			}
			h.debugf(1, "fetched %s (dataset %d) from %s, %s: %d bytes in %.6f secs", d.Name, d.ID, h.prefix, how, d.Bytes, took.Seconds())
			h.logEvent(prefix.LogRecord{Event: "FETCH_SUCCESS", Note: h.prefix, Dset: int64(d.ID), Name: d.Name, Secs: secs(took)})
			h.logEvent(prefix.LogRecord{Time: start, Xfer: "FETCH", From: h.prefix, To: h.layout.DatasetDir(d.ID), Dset: int64(d.ID), Name: d.Name,
				Secs: secs(took), Bytes: prefix.Float(float64(d.Bytes)), Files: prefix.Int(d.Files)})
		}
	}
	if err != nil || d == nil {
		return nil, err
	}
	bypass := d.Bypass // decided by FetchOptions.Bypass: read in place
	if err := h.protection(d); err != nil {
		h.discard(ctx, d.ID)
		return nil, err
	}
	d.Bypass = bypass
	d.Store = "" // fetched into the cache base whatever the descriptor's store
	dir := h.rankDir(*d, h.rank)
	fm, lerr := cache.ReadFilemap(dir)
	if lerr == nil {
		fm.Dataset = *d
		lerr = cache.WriteFilemap(dir, fm)
	}
	if err := h.agree(ctx, "fetch: record dataset", lerr); err != nil {
		h.discard(ctx, d.ID)
		return nil, err
	}
	files := []string{cache.FilemapName}
	for _, f := range fm.Files {
		if !d.Bypass {
			files = append(files, f.Rel)
		}
	}
	if err := h.encode(ctx, *d, dir, files); err != nil {
		h.discard(ctx, d.ID)
		return nil, err
	}
	lerr = h.updateIndex(func(ix *cache.Index) {
		ix.Datasets[d.ID] = &cache.Entry{Dataset: *d, Path: h.dsDir(*d), Flushed: true}
	})
	if err := h.agree(ctx, "fetch: update cache index", lerr); err != nil {
		h.discard(ctx, d.ID)
		return nil, err
	}
	h.cached[d.ID] = *d
	h.flushed[d.ID] = true
	h.dsID, h.ckptID = max(h.dsID, d.ID), max(h.ckptID, d.CkptID)
	return d, nil
}

// haltReason is rank 0's halt check: the reason to stop, or "".
func (h *Handle) haltReason() (string, error) {
	hf, _, err := prefix.ReadHalt(h.prefix)
	if err != nil {
		return "", err
	}
	d := hf.HaltCheck(time.Now(), h.cfg.EndTime, h.cfg.HaltSeconds, true)
	if d.Halt {
		return d.Reason, nil
	}
	return "", nil
}

package scr

import (
	"context"
	"errors"
	"fmt"
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
	dir := h.rankDir(ds, h.rank)
	fm, err := cache.ReadFilemap(dir)
	var files []prefix.File
	if err == nil {
		files, err = flush.CopyRank(ctx, h.prefix, dir, fm, ds.Bypass, h.cfg.bufSize)
	}
	return h.commit(ctx, ds, files, err)
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
	a := &asyncFlush{ds: ds, done: make(chan struct{}), cancel: cancel}
	h.async = a
	go func() {
		defer close(a.done)
		if ferr != nil {
			a.err = ferr
			return
		}
		a.files, a.err = flush.CopyRank(actx, h.prefix, dir, fm, false, h.cfg.bufSize)
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
	return h.commit(ctx, a.ds, a.files, a.err)
}

// waitAsync waits for the async flush and commits it (collective).
func (h *Handle) waitAsync(ctx context.Context) error { return h.pollAsync(ctx, true) }

// fetch brings the newest usable checkpoint from the prefix into the cache
// and protects it again with redundancy (collective).
func (h *Handle) fetch(ctx context.Context) (*cache.Dataset, error) {
	if err := h.waitAsync(ctx); err != nil {
		return nil, err
	}
	if err := h.evict(ctx, "fetch", ""); err != nil {
		return nil, err
	}
	d, err := flush.Fetch(ctx, h.world, flush.FetchOptions{
		Prefix:  h.prefix,
		RankDir: func(id int) string { return h.layout.RankDir(id, h.rank) },
		Below:   h.tried,
		BufSize: h.cfg.bufSize,
		CRC:     h.cfg.CRCOnCopy,
	})
	if err != nil || d == nil {
		return nil, err
	}
	if err := h.protection(d); err != nil {
		h.discard(ctx, d.ID)
		return nil, err
	}
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
		files = append(files, f.Rel)
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

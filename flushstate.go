package scr

import (
	"context"
	"sort"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
)

// The flush state (<prefix>/.scr/flush.json) tells scr_postrun which
// datasets sit in cache without a copy on the prefix. Rank 0 keeps it in
// step with the caches: CACHE when a dataset completes, FLUSHING while an
// async flush runs, PFS when a flush commits (internal/flush), CACHE off
// when a dataset leaves the caches, and at Init it mirrors what came back.

// noteCached records a dataset completed in cache (rank 0 only).
func (h *Handle) noteCached(ctx context.Context, ds cache.Dataset, flushing bool) error {
	if h.rank != 0 {
		return nil
	}
	return prefix.UpdateFlush(ctx, h.prefix, func(fs *prefix.FlushState) error {
		e := fs.Ensure(int64(ds.ID), ds.Name, ds.IsCheckpoint(), ds.IsOutput())
		e.Set(prefix.LocCache, true)
		e.Set(prefix.LocFlushing, flushing)
		return nil
	})
}

// noteGone records that datasets left the caches (rank 0 only).
func (h *Handle) noteGone(ctx context.Context, ids ...int) error {
	if h.rank != 0 || len(ids) == 0 {
		return nil
	}
	return prefix.UpdateFlush(ctx, h.prefix, func(fs *prefix.FlushState) error {
		for _, id := range ids {
			if e := fs.Get(int64(id)); e != nil {
				e.Set(prefix.LocCache, false)
				e.Set(prefix.LocFlushing, false)
				if len(e.Locations) == 0 {
					fs.Remove(int64(id))
				}
			}
		}
		return nil
	})
}

// mirrorCache makes the flush state match the datasets kept at Init
// (rank 0 only); interrupted flushes are not resumed, so FLUSHING is
// cleared.
func (h *Handle) mirrorCache(ctx context.Context, kept []cache.Dataset) error {
	if h.rank != 0 {
		return nil
	}
	in := map[int64]cache.Dataset{}
	for _, d := range kept {
		in[int64(d.ID)] = d
	}
	return prefix.UpdateFlush(ctx, h.prefix, func(fs *prefix.FlushState) error {
		for _, e := range fs.Entries() {
			_, ok := in[e.ID]
			e.Set(prefix.LocCache, ok)
			e.Set(prefix.LocFlushing, false)
			if len(e.Locations) == 0 {
				fs.Remove(e.ID)
			}
		}
		for id, d := range in {
			e := fs.Ensure(id, d.Name, d.IsCheckpoint(), d.IsOutput())
			e.Set(prefix.LocCache, true)
			if h.flushed[d.ID] {
				e.Set(prefix.LocPFS, true)
			}
		}
		return nil
	})
}

// recordRun writes the node count of this run and the settings given
// through Options.Config (app.conf) so the job-script commands see them
// (rank 0 only).
func (h *Handle) recordRun(hosts []string) error {
	if h.rank != 0 {
		return nil
	}
	sort.Strings(hosts)
	if err := prefix.WriteNodes(h.prefix, &prefix.Nodes{Nodes: len(hosts), Hosts: hosts}); err != nil {
		return err
	}
	return h.cc.SaveApp()
}

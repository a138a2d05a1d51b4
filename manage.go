package scr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/scr-go/scr/internal/prefix"
)

// nameAnswer is rank 0's answer to a by-name call.
type nameAnswer struct {
	ID       int    `json:"id"`
	Err      string `json:"err,omitempty"`
	NotFound bool   `json:"nf,omitempty"`
}

func (a nameAnswer) err(call, name string) error {
	if a.NotFound {
		return fmt.Errorf("scr: %s(%q): %w", call, name, ErrNotFound)
	}
	if a.Err != "" {
		return fmt.Errorf("scr: %s(%q): %s", call, name, a.Err)
	}
	return nil
}

func (h *Handle) idle(call string) error {
	if !h.cfg.Enable {
		return ErrDisabled
	}
	return h.need(call, stateIdle, "finish the current phase first")
}

// cachedByName returns the id of a cached dataset called name, or 0.
func (h *Handle) cachedByName(name string) int {
	for id, d := range h.cached {
		if d.Name == name {
			return id
		}
	}
	return 0
}

// Current makes the checkpoint called name the one the next restart starts
// from (collective; SCR_Current): it becomes CURRENT in the prefix index,
// cached datasets newer than it are deleted, and a checkpoint offered by
// HaveRestart but not started is forgotten.
func (h *Handle) Current(ctx context.Context, name string) error {
	if err := h.idle("Current"); err != nil {
		return err
	}
	if err := h.sameArgs(ctx, "Current", name, 0); err != nil {
		return err
	}
	var a nameAnswer
	if h.rank == 0 {
		a.ID = h.cachedByName(name)
		err := prefix.UpdateIndex(ctx, h.prefix, func(ix *prefix.Index) error {
			e := ix.ByName(name)
			if e == nil {
				return errSkip
			}
			a.ID = int(e.Dataset.ID)
			if h.cfg.DropAfterCurrent {
				if _, err := ix.DropAfter(name); err != nil {
					return err
				}
			}
			return ix.SetCurrent(name)
		})
		if errors.Is(err, errSkip) {
			err = nil
		}
		if err != nil {
			a.Err = err.Error()
		} else if a.ID == 0 {
			a.NotFound = true
		}
	}
	if err := h.bcastJSON(ctx, h.world, &a); err != nil {
		return h.commErr("Current", err)
	}
	if err := a.err("Current", name); err != nil {
		return err
	}
	if d, ok := h.cached[a.ID]; ok && !d.IsCheckpoint() {
		return fmt.Errorf("scr: Current(%q): dataset %d is not a checkpoint: %w", name, a.ID, ErrNotFound)
	}
	if h.async != nil && h.async.ds.ID > a.ID {
		if err := h.waitAsync(ctx); err != nil {
			return err
		}
	}
	var lerr error
	for id := range h.cached {
		if id > a.ID {
			if err := h.discard(ctx, id); err != nil && lerr == nil {
				lerr = err
			}
		}
	}
	h.loaded = nil
	h.tried = int64(a.ID) + 1
	// Offer exactly this checkpoint next: from the cache if it is there,
	// else HaveRestart fetches CURRENT from the prefix.
	if len(h.cands) > 0 && h.cands[0].ID != a.ID {
		h.cands = nil
	}
	return h.agree(ctx, "Current: delete newer cached datasets", lerr)
}

// Drop removes the dataset called name from the prefix index (collective);
// no file is deleted.
func (h *Handle) Drop(ctx context.Context, name string) error {
	if err := h.idle("Drop"); err != nil {
		return err
	}
	if err := h.sameArgs(ctx, "Drop", name, 0); err != nil {
		return err
	}
	var a nameAnswer
	if h.rank == 0 {
		err := prefix.UpdateIndex(ctx, h.prefix, func(ix *prefix.Index) error { return ix.Drop(name) })
		if errors.Is(err, prefix.ErrNoDataset) {
			a.NotFound = true
		} else if err != nil {
			a.Err = err.Error()
		}
	}
	if err := h.bcastJSON(ctx, h.world, &a); err != nil {
		return h.commErr("Drop", err)
	}
	return a.err("Drop", name)
}

// Delete deletes the dataset called name everywhere (collective): from the
// caches, and from the prefix (its files, directories left empty, its
// metadata directory and its index entry).
func (h *Handle) Delete(ctx context.Context, name string) error {
	if err := h.idle("Delete"); err != nil {
		return err
	}
	if err := h.sameArgs(ctx, "Delete", name, 0); err != nil {
		return err
	}
	id := h.cachedByName(name)
	if id != 0 && h.flushing(id) {
		if err := h.waitAsync(ctx); err != nil {
			return err
		}
	}
	var lerr error
	if id != 0 {
		lerr = h.discard(ctx, id)
		if h.loaded != nil && h.loaded.ID == id {
			h.loaded = nil
		}
	}
	if err := h.agree(ctx, "Delete: remove from cache", lerr); err != nil {
		return err
	}
	var a nameAnswer
	if h.rank == 0 {
		found, err := deleteFromPrefix(ctx, h.prefix, name)
		if err != nil {
			a.Err = err.Error()
		}
		a.NotFound = !found && id == 0
	}
	if err := h.bcastJSON(ctx, h.world, &a); err != nil {
		return h.commErr("Delete", err)
	}
	return a.err("Delete", name)
}

// deleteFromPrefix removes a dataset's files and metadata from the prefix.
func deleteFromPrefix(ctx context.Context, dir, name string) (bool, error) {
	ix, err := prefix.ReadIndex(dir)
	if err != nil {
		return false, err
	}
	e := ix.ByName(name)
	if e == nil {
		return false, nil
	}
	id := e.Dataset.ID
	var errs []error
	if s, err := prefix.ReadSummary(dir, id); err == nil {
		errs = append(errs, removeDatasetFiles(dir, s)...)
	}
	if err := os.RemoveAll(prefix.DatasetDir(dir, id)); err != nil {
		errs = append(errs, err)
	}
	err = prefix.UpdateIndex(ctx, dir, func(ix *prefix.Index) error {
		if ix.ByName(name) == nil {
			return errSkip
		}
		return ix.Drop(name)
	})
	if err != nil && !errors.Is(err, errSkip) {
		errs = append(errs, err)
	}
	err = prefix.UpdateFlush(ctx, dir, func(fs *prefix.FlushState) error { fs.Remove(id); return nil })
	if err != nil {
		errs = append(errs, err)
	}
	return true, errors.Join(errs...)
}

// removeDatasetFiles removes the files rank2file lists for a dataset, and
// the directories they leave empty. The paths are metadata: each must be
// a local path outside .scr (prefix.FilePath) and is removed through an
// os.Root of the prefix, so neither ".." nor a symbolic link makes a
// deletion reach outside the prefix, and emptied directories are removed
// up to the prefix, never above it.
func removeDatasetFiles(dir string, s *prefix.Summary) []error {
	root, err := prefix.OpenRoot(dir)
	if err != nil {
		return []error{err}
	}
	defer root.Close()
	var errs []error
	for r := 0; r < s.Ranks; r += s.RanksPerPart {
		p, err := prefix.ReadRank2FilePart(dir, s, s.PartOf(r))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, files := range p.Ranks {
			for _, f := range files {
				rel, err := prefix.FilePath(f.Path)
				if err != nil {
					errs = append(errs, fmt.Errorf("dataset %d: not deleted: %w", s.Dataset.ID, err))
					continue
				}
				if err := prefix.RemoveFile(root, rel); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errs
}

// purgePrefix deletes every dataset listed in the prefix index
// (SCR_PREFIX_PURGE; rank 0).
func purgePrefix(ctx context.Context, dir string) error {
	ix, err := prefix.ReadIndex(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ix.Entries() {
		if _, err := deleteFromPrefix(ctx, dir, e.Dataset.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// flushCached flushes every cached dataset not yet on the prefix, oldest
// first (SCR_FLUSH_ON_RESTART; collective).
func (h *Handle) flushCached(ctx context.Context) error {
	ids := make([]int, 0, len(h.cached))
	for id := range h.cached {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		if h.flushed[id] {
			continue
		}
		if err := h.flushSync(ctx, h.cached[id]); err != nil {
			return err
		}
	}
	return nil
}

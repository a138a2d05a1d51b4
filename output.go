package scr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/prefix"
)

// StartOutput opens a new dataset (collective): name (empty means
// "scr.dataset.<id>") and flags must be identical on every rank. flags 0
// (SCR_FLAG_NONE) makes a dataset that is neither a checkpoint nor an
// output, as in SCR: it is cached and protected by redundancy, never
// offered for a restart and not flushed (but in bypass mode). It evicts
// older datasets so that at most SCR_CACHE_SIZE stay cached, never one
// that is being flushed, and creates this rank's directory in the cache.
// Then each rank calls Route for every file it writes, writes them, and
// calls Complete.
func (h *Handle) StartOutput(ctx context.Context, name string, flags Flags) error {
	if !h.cfg.Enable {
		return ErrDisabled
	}
	if err := h.need("StartOutput", stateIdle, "call Complete (or CompleteRestart) before starting another dataset"); err != nil {
		return err
	}
	h.outStart = time.Now()
	if err := h.pollAsync(ctx, false); err != nil {
		return err
	}

	// Ids: never reuse one seen in the cache or the prefix index.
	id := h.dsID + 1
	ckpt := 0
	if flags&Checkpoint != 0 {
		ckpt = h.ckptID + 1
	}
	if name == "" {
		name = "scr.dataset." + strconv.Itoa(id)
	}
	ds := cache.Dataset{
		ID: id, Name: name, Flags: cache.Flags(flags), CkptID: ckpt,
		Created: h.outStart.UTC(), User: h.cfg.UserName, JobID: h.cfg.JobID,
		JobName: h.cfg.JobName, Cluster: h.cfg.ClusterName, Ranks: h.size,
	}
	// Rank 0 decides the record (and its redundancy); every rank then
	// checks that it asked for the same name and flags.
	rec := startRecord{DS: ds}
	if h.rank == 0 {
		if err := prefix.CheckName(name); err != nil {
			// Listings and metadata carry the name: refuse it before it
			// goes anywhere (and do not send a huge one to every rank).
			rec.BadName, rec.Err, rec.DS.Name = true, err.Error(), ""
		} else if flags&^(Checkpoint|Output) != 0 {
			rec.Err = fmt.Sprintf("flags %d: want 0 (SCR_FLAG_NONE), Checkpoint, Output or both", flags)
		} else if err := h.protection(&rec.DS); err != nil {
			rec.Err = err.Error()
		}
	}
	mine := fmt.Sprintf("%d:%s", flags, name)
	if err := h.bcastJSON(ctx, h.world, &rec); err != nil {
		return h.commErr("StartOutput: share dataset record", err)
	}
	if rec.BadName {
		return fmt.Errorf("scr: StartOutput: %s: %w", rec.Err, ErrName)
	}
	if rec.Err != "" {
		return fmt.Errorf("scr: StartOutput(%s): %s: %w", name, rec.Err, ErrConfig)
	}
	ds = rec.DS
	bad := h.size
	if fmt.Sprintf("%d:%s", ds.Flags, ds.Name) != mine {
		bad = h.rank
	}
	v, err := h.world.Allreduce(ctx, comm.OpMin, []int64{int64(bad)})
	if err != nil {
		return h.commErr("StartOutput", err)
	}
	if int(v[0]) < h.size {
		detail := "name or flags"
		if bad == h.rank {
			detail = fmt.Sprintf("%q, rank 0 %q", mine, fmt.Sprintf("%d:%s", ds.Flags, ds.Name))
		}
		return &MismatchError{Call: "StartOutput", Rank: int(v[0]), Detail: detail}
	}

	// A restart offered but not used is forgotten (as in SCR).
	if h.loaded != nil && h.state == stateIdle {
		h.loaded = nil
	}
	h.deferred = 0
	if err := h.evict(ctx, ds.Name, ds.Store, true); err != nil {
		return err
	}
	dir := h.rankDir(ds, h.rank)
	lerr := h.updateIndex(func(ix *cache.Index) {
		ix.Datasets[ds.ID] = &cache.Entry{Dataset: ds, Path: h.dsDir(ds)}
	})
	if lerr == nil {
		lerr = os.MkdirAll(cache.MetaDir(dir), cache.DirMode)
	}
	if err := h.agree(ctx, fmt.Sprintf("StartOutput(%s): create %s", ds.Name, dir), lerr); err != nil {
		h.discard(ctx, ds.ID)
		h.deferred = 0 // the previous checkpoint stays: nothing replaces it
		return err
	}
	h.dsID = id
	if ckpt > 0 {
		h.ckptID = ckpt
	}
	h.mu.Lock()
	h.out = &outputPhase{ds: ds, dir: dir, files: map[string]*fileReg{}, ready: time.Now()}
	h.mu.Unlock()
	h.state = stateOutput
	if h.rank == 0 {
		base := h.storeBase(ds.Store)
		bypass := ""
		if ds.Bypass {
			bypass = " (bypass: files go to the prefix)"
		}
		h.debugf(1, "StartOutput(%s): dataset %d, checkpoint %d, flags %s, %s in %s%s", ds.Name, ds.ID, ds.CkptID, ds.Flags, ds.Scheme, base, bypass)
		kind := "OUTPUT_START"
		if ds.IsCheckpoint() {
			h.logEvent(prefix.LogRecord{Event: "COMPUTE_END", Secs: secs(h.outStart.Sub(h.computeStart))})
			kind = "CHECKPOINT_START"
		}
		h.logEvent(prefix.LogRecord{Time: h.outStart, Event: kind, Note: base, Dset: int64(ds.ID), Name: ds.Name})
	}
	h.debugf(2, "StartOutput(%s): writing to %s", ds.Name, dir)
	return nil
}

// startRecord is rank 0's decision at StartOutput.
type startRecord struct {
	DS      cache.Dataset `json:"ds"`
	Err     string        `json:"err,omitempty"`
	BadName bool          `json:"bad_name,omitempty"`
}

// sameArgs checks that every rank passed rank 0's arguments.
func (h *Handle) sameArgs(ctx context.Context, call, s string, n int) error {
	mine := fmt.Sprintf("%d:%s", n, s)
	root, err := h.world.Bcast(ctx, 0, []byte(mine))
	if err != nil {
		return h.commErr(call, err)
	}
	bad := h.size
	if string(root) != mine {
		bad = h.rank
	}
	v, err := h.world.Allreduce(ctx, comm.OpMin, []int64{int64(bad)})
	if err != nil {
		return h.commErr(call, err)
	}
	if int(v[0]) < h.size {
		detail := "name or flags"
		if bad == h.rank {
			detail = fmt.Sprintf("%q, rank 0 %q", mine, root)
		}
		return &MismatchError{Call: call, Rank: int(v[0]), Detail: detail}
	}
	return nil
}

// protection picks the redundancy descriptor of a dataset (SCR's rules:
// OUTPUT descriptor for outputs, else the largest INTERVAL dividing the
// checkpoint id) and applies SCR's conveniences (one node or a shared
// store: SINGLE; RS with one failure: XOR).
func (h *Handle) protection(ds *cache.Dataset) error {
	d, err := config.Select(h.cfg.Redundancy, ds.IsCheckpoint(), ds.IsOutput(), int64(ds.CkptID))
	if err != nil {
		return fmt.Errorf("scr: dataset %s: %w: %w", ds.Name, ErrConfig, err)
	}
	d, _ = config.Adjust(d, h.cfg.Stores, config.Topology{Ranks: h.size, Nodes: h.nodes})
	ds.Scheme, ds.Bypass, ds.SetSize, ds.Failures, ds.Group = strings.ToUpper(d.Type), d.Bypass, d.SetSize, d.SetFailures, d.Group
	if d.Store != "" && filepath.Clean(d.Store) != filepath.Clean(h.cfg.CacheBase) {
		// A node-independent key: each rank resolves it to its own path
		// (store paths may differ per node, e.g. under the local launcher).
		ds.Store = fmt.Sprintf("CKPT=%d", d.Index)
	}
	return nil
}

// evict deletes the oldest cached datasets until one more fits, waiting
// for an async flush when only busy datasets could make room.
//
// With keepPrevious (StartOutput), the newest dataset it would delete, if
// a checkpoint, is kept until the new dataset is complete (Complete
// deletes it then: h.deferred) whenever every node's store has room for
// both; so with SCR_CACHE_SIZE=1 a failure while the new checkpoint is
// written (a node losing power) leaves the previous one to restart from.
// Without the room it is deleted first, as in SCR.
func (h *Handle) evict(ctx context.Context, forName, store string, keepPrevious bool) error {
	base := h.storeBase(store)
	ids := make([]int, 0, len(h.cached))
	for id, d := range h.cached {
		if h.storeBase(d.Store) == base {
			ids = append(ids, id)
		}
	}
	count := h.cfg.count(base)
	plan, ok := cache.EvictionPlan(ids, count, h.flushing)
	if !ok {
		if err := h.waitAsync(ctx); err != nil {
			return err
		}
		plan, _ = cache.EvictionPlan(ids, count, h.flushing)
	}
	if n := len(plan); keepPrevious && n > 0 && h.cached[plan[n-1]].IsCheckpoint() {
		room, err := h.roomForBoth(ctx, h.cached[plan[n-1]])
		if err != nil {
			return err
		}
		if room {
			h.deferred = plan[n-1]
			plan = plan[:n-1]
		}
	}
	for _, id := range plan {
		if d := h.cached[id]; d.IsOutput() && !h.flushed[id] {
			// An output not on the prefix yet must not vanish: flush it
			// first (this happens only when an earlier flush failed).
			if err := h.flushSync(ctx, d); err != nil {
				return fmt.Errorf("scr: StartOutput(%s): output %s must reach the prefix before it is evicted: %w", forName, d.Name, err)
			}
		}
	}
	var lerr error
	for _, id := range plan {
		if err := h.discard(ctx, id); err != nil && lerr == nil {
			lerr = err
		}
	}
	return h.agree(ctx, "StartOutput: evict old datasets", lerr)
}

// roomForBoth says, on every rank, whether every node's store has room for
// a new dataset while ds stays: free space of at least ds's size on the
// node plus an eighth (the new checkpoint is assumed about as large as the
// previous one). Collective: each node leader measures, all agree (MIN).
func (h *Handle) roomForBoth(ctx context.Context, ds cache.Dataset) (bool, error) {
	ok := int64(1)
	if h.node.Rank() == 0 {
		used, err := dirBytes(h.dsDir(ds))
		free, ferr := freeSpace(filepath.Dir(h.dsDir(ds)))
		if err != nil || ferr != nil || free < used+used/8 {
			ok = 0
		}
	}
	v, err := h.world.Allreduce(ctx, comm.OpMin, []int64{ok})
	if err != nil {
		return false, h.commErr("StartOutput: check room for the previous checkpoint", err)
	}
	return v[0] == 1, nil
}

// freeSpace is freeBytes; tests replace it to play a full cache.
var freeSpace = freeBytes

// dirBytes is the size of the regular files below dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// dropDeferred deletes the previous checkpoint StartOutput kept while the
// new dataset was written (collective: every rank calls it at Complete).
func (h *Handle) dropDeferred(ctx context.Context) error {
	id := h.deferred
	h.deferred = 0
	if id == 0 {
		return nil
	}
	if _, ok := h.cached[id]; !ok {
		return nil
	}
	return h.agree(ctx, "Complete: evict the previous checkpoint", h.discard(ctx, id))
}

// discard removes a dataset from this node's cache and from the handle's
// view. Every rank calls it for the same id; the node leader removes the
// directory and the index entry.
func (h *Handle) discard(ctx context.Context, id int) error {
	ferr := h.noteGone(ctx, id)
	delete(h.cached, id)
	delete(h.flushed, id)
	for i := 0; i < len(h.cands); i++ {
		if h.cands[i].ID == id {
			h.cands = append(h.cands[:i], h.cands[i+1:]...)
			i--
		}
	}
	if h.node == nil || h.node.Rank() != 0 {
		return ferr
	}
	// Remove the data first: it frees the space the index write may need.
	// The index's path was checked (Layout.ReadIndex): a directory of
	// dataset id below this job's own cache directories, nothing else.
	dir := h.layout.DatasetDir(id)
	if ix, err := h.layout.ReadIndex(); err == nil {
		dir = h.layout.DatasetPath(ix, id)
	}
	if h.cfg.CRCOnDelete {
		h.checkBeforeDelete(dir, id)
	}
	rerr := os.RemoveAll(dir)
	err := h.updateIndex(func(ix *cache.Index) { delete(ix.Datasets, id) })
	if rerr != nil && err == nil {
		err = fmt.Errorf("remove %s: %w", dir, rerr)
	}
	if err == nil {
		err = ferr
	}
	return err
}

// Route returns the path where this rank writes (during an output phase)
// or reads (during a restart phase) the file name, which is a path under
// the prefix (relative names are taken relative to the prefix). Route is
// local, not collective, and may be called from several goroutines.
// Outside a phase it returns name unchanged (as SCR_Route_file does); with
// SCR disabled too, after creating name's directory (see passThrough).
func (h *Handle) Route(name string) (string, error) {
	if !h.cfg.Enable {
		return name, passThrough(name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != stateOutput && h.state != stateRestart {
		return name, nil
	}
	orig, rel, err := h.underPrefix(name)
	if err != nil {
		return "", err
	}
	if h.state == stateRestart {
		return h.routeRestart(name, orig, rel)
	}
	o := h.out
	if _, ok := o.files[rel]; !ok {
		o.files[rel] = &fileReg{orig: orig, rel: rel}
	}
	if o.ds.Bypass {
		// The application writes into the prefix itself: its directory is
		// made through an os.Root, so a symbolic link in the prefix cannot
		// send the data elsewhere.
		if err := mkdirInPrefix(h.prefix, filepath.Dir(rel)); err != nil {
			return "", &PathError{Rank: h.rank, Path: name, Prefix: h.prefix, Reason: "cannot create its directory: " + err.Error()}
		}
		return orig, nil
	}
	path := filepath.Join(o.dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), cache.DirMode); err != nil {
		return "", &PathError{Rank: h.rank, Path: name, Prefix: h.prefix, Reason: "cannot create its directory: " + err.Error()}
	}
	return path, nil
}

// mkdirInPrefix creates the directory rel (and its parents) inside the
// prefix, refusing a path that leaves it through a symbolic link.
func mkdirInPrefix(prefixDir, rel string) error {
	if rel == "." {
		return nil
	}
	root, err := prefix.OpenRoot(prefixDir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(rel, 0o755); err != nil {
		if prefix.Escaped(err) {
			return fmt.Errorf("%s leads outside the prefix through a symbolic link", rel)
		}
		return err
	}
	return nil
}

// underPrefix resolves name to an absolute path and its path relative to
// the prefix, rejecting names outside it.
func (h *Handle) underPrefix(name string) (orig, rel string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", &PathError{Rank: h.rank, Path: name, Prefix: h.prefix, Reason: why}
	}
	if name == "" || strings.ContainsRune(name, 0) {
		return bad("empty or contains NUL")
	}
	orig = name
	if !filepath.IsAbs(orig) {
		orig = filepath.Join(h.prefix, orig)
	}
	orig = filepath.Clean(orig)
	rel, err = filepath.Rel(h.prefix, orig)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return bad("outside the prefix (check for .. components)")
	}
	if first, _, _ := strings.Cut(rel, string(filepath.Separator)); first == ".scr" {
		return bad("inside the prefix's .scr metadata directory")
	}
	return orig, rel, nil
}

// fileReport is what each rank sends rank 0 at Complete.
type fileReport struct {
	Valid  bool     `json:"v"`
	Reason string   `json:"r,omitempty"`
	Rels   []string `json:"f,omitempty"`
	Sizes  []int64  `json:"s,omitempty"` // of Rels, in order (-1: could not stat)
}

// verdict is rank 0's decision at Complete.
type verdict struct {
	OK      bool            `json:"ok"`
	Ranks   []int           `json:"ranks,omitempty"`
	Reasons []string        `json:"reasons,omitempty"`
	Dup     *DuplicateError `json:"dup,omitempty"`
	Files   int64           `json:"files"`
	Bytes   int64           `json:"bytes"`
	// Shared maps each file routed by several ranks (bypass mode only) to
	// its owner, the lowest of those ranks, as SCR assigns it: only the
	// owner keeps it in its filemap (and rank2file).
	Shared map[string]int `json:"shared,omitempty"`
}

// Complete closes the dataset opened by StartOutput (collective). valid
// says whether this rank wrote all its files correctly. Every rank's files
// are checked; the dataset is kept only if every rank is valid and no file
// was routed by two ranks, otherwise it is deleted and an *InvalidError is
// returned on every rank. A kept dataset is protected with the redundancy
// scheme, marked complete in the cache only after the encode finished, and
// flushed to the prefix if due (outputs always; checkpoints every
// SCR_FLUSH-th). The same result is returned on every rank.
func (h *Handle) Complete(ctx context.Context, valid bool) error {
	if !h.cfg.Enable {
		return ErrDisabled
	}
	if err := h.need("Complete", stateOutput, "call StartOutput first"); err != nil {
		return err
	}
	entered := time.Now()
	h.mu.Lock()
	o := h.out
	h.out = nil
	h.state = stateIdle
	h.mu.Unlock()
	ds := o.ds

	if ds.Bypass {
		// A shared file may still grow while another rank writes it:
		// stat only once every rank is done (SCR's barrier).
		if err := h.world.Barrier(ctx); err != nil {
			return h.commErr("Complete: wait for every rank's writes", err)
		}
	}
	// Stat every file this rank routed.
	rep := fileReport{Valid: valid}
	if !valid {
		rep.Reason = fmt.Sprintf("rank %d called Complete(false)", h.rank)
	}
	fm := cache.Filemap{Rank: h.rank}
	rels := make([]string, 0, len(o.files))
	for rel := range o.files {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		f := o.files[rel]
		path := filepath.Join(o.dir, rel)
		if ds.Bypass {
			path = f.orig
		}
		meta, err := cache.Stat(path, h.cfg.CRCOnCopy && !ds.Bypass)
		if err != nil {
			if rep.Valid {
				rep.Valid = false
				rep.Reason = fmt.Sprintf("rank %d: file %s: %v", h.rank, rel, err)
			}
			rep.Sizes = append(rep.Sizes, -1)
			continue
		}
		meta.Orig, meta.Rel, meta.Complete = f.orig, rel, valid
		fm.Files = append(fm.Files, meta)
		rep.Sizes = append(rep.Sizes, meta.Size)
	}
	rep.Rels = rels
	if !rep.Valid {
		if hint := spaceHint(o.dir); hint != "" {
			rep.Reason += "; " + hint
		}
	}

	// Rank 0 decides.
	b, _ := json.Marshal(rep)
	all, err := h.world.Gather(ctx, 0, b)
	if err != nil {
		return h.commErr("Complete: gather file reports", err)
	}
	var v verdict
	if h.rank == 0 {
		v = decide(ds.Name, all, ds.Bypass)
	}
	if err := h.bcastJSON(ctx, h.world, &v); err != nil {
		return h.commErr("Complete: share verdict", err)
	}
	if !v.OK {
		h.deferred = 0 // the previous checkpoint stays: nothing replaces it
		lerr := h.discard(ctx, ds.ID)
		if err := h.agree(ctx, "Complete: discard invalid dataset", lerr); err != nil {
			return errors.Join(&InvalidError{Dataset: ds.Name, Ranks: v.Ranks, Reasons: v.Reasons, Dup: v.Dup}, err)
		}
		return &InvalidError{Dataset: ds.Name, Ranks: v.Ranks, Reasons: v.Reasons, Dup: v.Dup}
	}
	ds.Complete, ds.Files, ds.Bytes = true, v.Files, v.Bytes
	if len(v.Shared) > 0 {
		// A shared file belongs to its owner's filemap only.
		kept := fm.Files[:0]
		for _, f := range fm.Files {
			if owner, shared := v.Shared[f.Rel]; !shared || owner == h.rank {
				kept = append(kept, f)
			}
		}
		fm.Files = kept
		if h.rank == 0 {
			h.debugf(1, "Complete(%s): %d file(s) shared by several ranks (bypass), each kept by its lowest rank", ds.Name, len(v.Shared))
		}
	}
	fm.Dataset = ds
	writeSecs := time.Since(h.outStart)
	base := h.storeBase(ds.Store)
	if h.rank == 0 {
		h.debugf(1, "Complete(%s): %d files, %d bytes, written in %.6f secs, %.3f MB/s, %.3f MB/s per rank", ds.Name, ds.Files, ds.Bytes,
			writeSecs.Seconds(), mbps(ds.Bytes, writeSecs), mbps(ds.Bytes, writeSecs)/float64(h.size))
		h.logEvent(prefix.LogRecord{Time: h.outStart, Xfer: "WRITE", From: base, To: h.dsDir(ds), Dset: int64(ds.ID), Name: ds.Name,
			Secs: secs(writeSecs), Bytes: prefix.Float(float64(ds.Bytes)), Files: prefix.Int(ds.Files)})
	}

	// Metadata, then redundancy, then the complete mark.
	// A rank whose filemap cannot be written still takes part in the
	// encode (which then fails on every rank: it protects the filemap
	// too); with SINGLE the failure is agreed on with the index update.
	lerr := cache.WriteFilemap(o.dir, fm)
	protect := []string{cache.FilemapName}
	if !ds.Bypass {
		protect = append(rels, cache.FilemapName)
	}
	encStart := time.Now()
	if err := h.encode(ctx, ds, o.dir, protect); err != nil {
		h.deferred = 0
		h.discard(ctx, ds.ID)
		h.agree(ctx, "Complete: discard", nil)
		return err
	}
	encEnd := time.Now()
	if lerr == nil {
		lerr = h.updateIndex(func(ix *cache.Index) {
			ix.Datasets[ds.ID] = &cache.Entry{Dataset: ds, Path: h.dsDir(ds)}
		})
	}
	if lerr == nil {
		lerr = h.noteCached(ctx, ds, false)
	}
	if err := h.agree(ctx, "Complete: mark dataset complete in the cache index", lerr); err != nil {
		h.deferred = 0
		h.discard(ctx, ds.ID)
		return err
	}
	h.cached[ds.ID] = ds
	// The new dataset is complete everywhere: the previous checkpoint
	// kept while it was written can go now.
	if err := h.dropDeferred(ctx); err != nil {
		return err
	}
	now := time.Now()
	took := now.Sub(h.outStart)
	if h.rank == 0 {
		h.debugf(1, "Complete(%s): %s applied; complete %.6f secs after StartOutput", ds.Name, ds.Scheme, took.Seconds())
		end, xfer := "OUTPUT_END", "OUTPUT"
		if ds.IsCheckpoint() {
			end, xfer = "CHECKPOINT_END", "CHECKPOINT"
		}
		h.logEvent(prefix.LogRecord{Event: end, Note: base, Dset: int64(ds.ID), Name: ds.Name, Secs: secs(took)})
		h.logEvent(prefix.LogRecord{Time: h.outStart, Xfer: xfer, From: base, To: h.dsDir(ds), Dset: int64(ds.ID), Name: ds.Name,
			Secs: secs(took), Bytes: prefix.Float(float64(ds.Bytes)), Files: prefix.Int(ds.Files)})
	}
	if ds.IsCheckpoint() {
		h.ckpts++
		h.ckptCost += now.Sub(h.outStart)
		h.lastCkptEnd = now
		h.cands = append([]cache.Dataset{ds}, h.cands...)
		h.sources[ds.ID] = "cache"
		if h.rank == 0 {
			// Where the time went, as rank 0 saw it (doc/seams.md).
			phases := map[string]float64{
				"start":  o.ready.Sub(h.outStart).Seconds(),
				"write":  entered.Sub(o.ready).Seconds(),
				"check":  encStart.Sub(entered).Seconds(),
				"encode": encEnd.Sub(encStart).Seconds(),
				"commit": now.Sub(encEnd).Seconds(),
			}
			h.timeline("checkpoint", map[string]any{"name": ds.Name, "dataset": ds.ID, "bytes": ds.Bytes, "seconds": took.Seconds(), "phases": phases})
		}
	}

	// Flush if due.
	var ferr error
	due := ds.IsOutput() || ds.Bypass || (ds.IsCheckpoint() && h.cfg.Flush > 0 && ds.CkptID%h.cfg.Flush == 0)
	if due {
		if h.cfg.FlushAsync && !ds.Bypass {
			ferr = h.startAsync(ctx, ds)
		} else {
			ferr = h.flushSync(ctx, ds)
		}
	}
	if ds.IsCheckpoint() && h.rank == 0 && h.countsCheckpoints() {
		// One checkpoint less before a CheckpointsLeft halt. A damaged
		// halt file is reported by the next ShouldExit / NeedCheckpoint.
		prefix.UpdateHalt(ctx, h.prefix, func(hf *prefix.Halt, exists bool) error {
			if !exists || hf.CheckpointsLeft == nil {
				return errSkip
			}
			if *hf.CheckpointsLeft > 0 {
				*hf.CheckpointsLeft--
			}
			return nil
		})
	}
	if ds.IsCheckpoint() {
		// The next compute phase starts (SCR counts outputs as compute).
		h.computeStart = time.Now()
		if h.rank == 0 {
			h.logEvent(prefix.LogRecord{Event: "COMPUTE_START"})
		}
		if err := h.haltExit(ctx, "Complete"); err != nil {
			return errors.Join(err, ferr)
		}
	}
	return ferr
}

var errSkip = errors.New("nothing to change")

// countsCheckpoints says whether the halt file has a CheckpointsLeft
// condition (read without the lock: most jobs have none, and the locked
// update then costs nothing on the shared file system).
func (h *Handle) countsCheckpoints() bool {
	hf, _, err := prefix.ReadHalt(h.prefix)
	return err == nil && hf.CheckpointsLeft != nil
}

// decide is rank 0's verdict on the reports of all ranks. A file routed by
// several ranks is allowed only with bypass (the files are written in
// place in the prefix; SCR's rule), and is then owned by the lowest rank;
// the totals count it once, at its owner's size.
func decide(name string, all [][]byte, bypass bool) verdict {
	v := verdict{OK: true}
	owner := map[string]int{}
	const maxListed = 16
	for r, b := range all {
		var rep fileReport
		if err := json.Unmarshal(b, &rep); err != nil {
			rep = fileReport{Reason: fmt.Sprintf("rank %d: bad report: %v", r, err)}
		}
		if !rep.Valid {
			v.OK = false
			if len(v.Ranks) < maxListed {
				v.Ranks = append(v.Ranks, r)
				if rep.Reason != "" {
					v.Reasons = append(v.Reasons, rep.Reason)
				}
			}
		}
		for i, rel := range rep.Rels {
			o, dup := owner[rel]
			switch {
			case dup && bypass:
				if v.Shared == nil {
					v.Shared = map[string]int{}
				}
				v.Shared[rel] = o
				continue // counted at its owner
			case dup && v.Dup == nil:
				v.OK = false
				v.Dup = &DuplicateError{Dataset: name, Path: rel, Ranks: []int{o, r}}
			}
			if !dup {
				owner[rel] = r
			}
			v.Files++
			if i < len(rep.Sizes) && rep.Sizes[i] > 0 {
				v.Bytes += rep.Sizes[i]
			}
		}
	}
	return v
}

// encode applies the dataset's redundancy scheme (collective).
func (h *Handle) encode(ctx context.Context, ds cache.Dataset, dir string, files []string) error {
	if ds.Scheme == "SINGLE" {
		return nil // nothing to encode, nothing to agree on
	}
	cd, err := h.codecFor(ds.Scheme)
	if err != nil {
		return h.agree(ctx, "Complete: redundancy", err)
	}
	spec := h.spec(ds)
	lerr := cd.Encode(ctx, h.world, spec, dir, files)
	return h.agree(ctx, fmt.Sprintf("Complete(%s): %s encode", ds.Name, ds.Scheme), lerr)
}

func (h *Handle) spec(ds cache.Dataset) codecSpec {
	size := ds.SetSize
	if size < 1 {
		size = 8
	}
	return codecSpec{Scheme: ds.Scheme, SetSize: size, Failures: ds.Failures, Group: ds.Group, BufSize: h.cfg.bufSize, Dataset: ds.ID}
}

// StartCheckpoint is SCR's legacy SCR_Start_checkpoint: StartOutput with
// the default name and the Checkpoint flag (collective).
func (h *Handle) StartCheckpoint(ctx context.Context) error {
	return h.StartOutput(ctx, "", Checkpoint)
}

// CompleteCheckpoint is SCR's legacy SCR_Complete_checkpoint: Complete
// (collective).
func (h *Handle) CompleteCheckpoint(ctx context.Context, valid bool) error {
	return h.Complete(ctx, valid)
}

// passThrough creates the directory of a file routed while SCR is disabled:
// the application was written for SCR, which creates the directories of
// the paths it returns, so it does not create them itself.
func passThrough(name string) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return &PathError{Rank: -1, Path: name, Reason: "SCR is disabled and the file's directory cannot be created: " + err.Error()}
	}
	return nil
}

// PassThrough is Route for a program that did not even start SCR because
// SCR_ENABLE=0 (the C API): name itself, its directory created.
func PassThrough(name string) (string, error) { return name, passThrough(name) }

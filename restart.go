package scr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
)

// nodeReport is what each rank tells every other rank at Init. Only node
// leaders fill in the cache content.
type nodeReport struct {
	Node    string          `json:"node"`
	Leader  bool            `json:"leader,omitempty"`
	Entries []cache.Dataset `json:"entries,omitempty"` // complete datasets in the node's cache index
	Held    map[int][]int   `json:"held,omitempty"`    // dataset id -> ranks whose directory the node holds
	Dropped string          `json:"dropped,omitempty"` // why the node's cache index was not trusted (its cache was dropped)
}

// prefixFacts is what rank 0 learns from the prefix index at Init.
type prefixFacts struct {
	MaxID   int    `json:"max_id"`
	MaxCkpt int    `json:"max_ckpt"`
	Flushed []int  `json:"flushed,omitempty"` // complete on the prefix
	Err     string `json:"err,omitempty"`
}

// recover runs the restart part of Init (collective); see Init.
func (h *Handle) recover(ctx context.Context) error {
	recoverStart := time.Now()
	// 1. The node leader reads its cache index and reports it. Every rank
	// notes where the index says each dataset lives on this node (its
	// store's path here, which the configuration of this run may not
	// name any more).
	h.localPath = map[int]string{}
	if ix, err := h.layout.ReadIndex(); err == nil {
		for id, e := range ix.Datasets {
			if e.Path != "" {
				h.localPath[id] = e.Path
			}
		}
	}
	rep := nodeReport{Node: h.nodeName, Leader: h.node.Rank() == 0}
	var lerr error
	if rep.Leader {
		rep.Entries, rep.Held, rep.Dropped, lerr = h.scanNode()
	}
	if err := h.agree(ctx, "Init: read the cache index", lerr); err != nil {
		return err
	}

	// 2. Rank 0 gathers what every node holds, reads the prefix index (ids
	// already used, datasets flushed), plans the migrations and tells
	// everybody: O(P) bytes to rank 0 and a broadcast of the plan, no
	// all-to-all exchange.
	b, _ := json.Marshal(rep)
	allb, err := h.world.Gather(ctx, 0, b)
	if err != nil {
		return h.commErr("Init: gather cache contents", err)
	}
	var plan initPlan
	if h.rank == 0 {
		plan = h.makePlan(allb)
	}
	if err := h.bcastJSON(ctx, h.world, &plan); err != nil {
		return h.commErr("Init: share the restart plan", err)
	}
	if plan.Err != "" {
		return fmt.Errorf("scr: Init: %s", plan.Err)
	}
	pf := plan.Facts
	h.dsID, h.ckptID = pf.MaxID, pf.MaxCkpt
	flushed := map[int]bool{}
	for _, id := range pf.Flushed {
		flushed[id] = true
	}
	if err := h.agree(ctx, "Init: write the nodes file and app.conf", h.recordRun(distinct(h.hosts))); err != nil {
		return err
	}
	var lerrs []error
	for _, id := range plan.Purge {
		lerrs = append(lerrs, h.discard(ctx, id))
	}
	if err := h.agree(ctx, "Init: delete datasets that never completed", errors.Join(lerrs...)); err != nil {
		return err
	}
	known := map[int]cache.Dataset{}
	var ids []int
	for _, d := range plan.Datasets {
		known[d.ID] = d
		ids = append(ids, d.ID)
		h.dsID = max(h.dsID, d.ID)
		h.ckptID = max(h.ckptID, d.CkptID)
	}

	if h.cfg.CachePurge || !h.cfg.Distribute {
		for _, id := range ids {
			h.discard(ctx, id)
		}
		lerr := h.writeIndex(nil)
		if err := h.mirrorCache(ctx, nil); err != nil && lerr == nil {
			lerr = err
		}
		return h.agree(ctx, "Init: purge cache", lerr)
	}

	// 4. Bring back each dataset, newest first: migrate, verify, rebuild.
	var outcomes []outcome
	for _, id := range ids {
		ds := known[id]
		src, err := h.restore(ctx, ds, plan.Moves[ds.ID])
		if err != nil && (errors.Is(err, comm.ErrPeerLost) || ctx.Err() != nil) {
			return err
		}
		outcomes = append(outcomes, outcome{ds: ds, ok: err == nil, flushed: flushed[id]})
		if err == nil {
			h.sources[id] = src
		} else {
			// Every rank has the same error (agreed); rank 0 says it.
			h.reportBad(ds.Name, ds.ID, "cache", err.Error())
		}
	}

	// 5. Offer the newest checkpoint below any lost output; drop the rest.
	cands, kept, drop := chooseRestart(outcomes)
	for _, id := range drop {
		h.discard(ctx, id)
	}
	for _, ds := range kept {
		h.cached[ds.ID] = ds
		h.flushed[ds.ID] = flushed[ds.ID]
	}
	h.cands = cands
	if h.rank == 0 && len(ids) > 0 {
		// SCR logs the outcome of its cache rebuild this way.
		if len(cands) > 0 {
			h.logEvent(prefix.LogRecord{Event: "RESTART_SUCCESS", Dset: int64(cands[0].ID), Secs: secs(time.Since(recoverStart))})
		} else {
			h.logEvent(prefix.LogRecord{Event: "RESTART_FAIL", Secs: secs(time.Since(recoverStart))})
		}
	}
	lerr = h.writeIndex(kept)
	if err := h.mirrorCache(ctx, kept); err != nil && lerr == nil {
		lerr = err
	}
	return h.agree(ctx, "Init: write the cache index and flush state", lerr)
}

// outcome is what Init got back of one cached dataset.
type outcome struct {
	ds      cache.Dataset
	ok      bool // every rank has its files (after migration and rebuild)
	flushed bool // a complete copy is on the prefix
}

// chooseRestart decides, without I/O, what a restart keeps (SCR's rules,
// reference 6.1): datasets that could not be brought back are dropped; an
// output that was lost before reaching the prefix makes every newer
// checkpoint unusable (the application must regenerate that output); the
// newest usable checkpoint is offered first, older usable ones after it;
// every dataset newer than the offered checkpoint is dropped (the job goes
// back to it). With no usable checkpoint, what came back is kept.
// outcomes must be ordered newest first; so are the results.
func chooseRestart(outcomes []outcome) (cands, kept []cache.Dataset, drop []int) {
	bound := int(^uint(0) >> 1)
	for _, o := range outcomes {
		if !o.ok && o.ds.IsOutput() && !o.flushed {
			bound = min(bound, o.ds.ID)
		}
	}
	for _, o := range outcomes {
		if o.ok && o.ds.IsCheckpoint() && o.ds.ID < bound {
			cands = append(cands, o.ds)
		}
	}
	for _, o := range outcomes {
		switch {
		case !o.ok:
			drop = append(drop, o.ds.ID)
		case len(cands) > 0 && o.ds.ID > cands[0].ID:
			drop = append(drop, o.ds.ID)
		default:
			kept = append(kept, o.ds)
		}
	}
	return cands, kept, drop
}

// scanNode reads the node's cache index (leader only) and lists its
// datasets and the rank directories present.
func (h *Handle) scanNode() ([]cache.Dataset, map[int][]int, string, error) {
	ix, err := h.layout.ReadIndex()
	dropped := ""
	if err != nil {
		// A damaged index loses this node's cache, not the job: its data
		// comes back from redundancy on the other nodes. (Its paths are
		// not trusted: only our own, checked cache directory goes.)
		dropped = err.Error()
		ix = &cache.Index{Datasets: map[int]*cache.Entry{}}
		os.RemoveAll(h.layout.CacheDir)
		if err := h.layout.Create(); err != nil {
			return nil, nil, dropped, err
		}
	}
	// Dataset directories the index does not know (its entry is always
	// written before the directory is created, so these come from a lost
	// or damaged index) hold nothing anybody can trust: remove them.
	for _, base := range h.cfg.storeBases() {
		dirs, _ := filepath.Glob(filepath.Join(h.cfg.storeLayout(base).CacheDir, "scr.dataset.*"))
		for _, d := range dirs {
			var id int
			if _, err := fmt.Sscanf(filepath.Base(d), "scr.dataset.%d", &id); err == nil && ix.Datasets[id] == nil {
				os.RemoveAll(d)
			}
		}
	}
	var out []cache.Dataset
	held := map[int][]int{}
	for _, id := range ix.IDs() {
		e := ix.Datasets[id]
		dir := h.layout.DatasetPath(ix, id) // checked by ReadIndex
		// Incomplete entries are reported too: a leader marks a dataset
		// complete only after every rank encoded it, so if any node has
		// it complete, the data on nodes that died before marking it is
		// good (rank 0 decides).
		out = append(out, e.Dataset)
		ents, _ := os.ReadDir(dir)
		for _, de := range ents {
			var r int
			if _, err := fmt.Sscanf(de.Name(), "rank.%d", &r); err == nil && de.IsDir() && de.Name() == fmt.Sprintf("rank.%d", r) {
				held[id] = append(held[id], r)
			}
		}
	}
	return out, held, dropped, nil
}

// writeIndex makes the node's cache index list exactly the kept datasets
// (node leader only).
func (h *Handle) writeIndex(kept []cache.Dataset) error {
	return h.updateIndex(func(ix *cache.Index) {
		ix.Datasets = map[int]*cache.Entry{}
		for _, d := range kept {
			ix.Datasets[d.ID] = &cache.Entry{Dataset: d, Path: h.dsDir(d)}
		}
	})
}

func readPrefixFacts(dir string) prefixFacts {
	var pf prefixFacts
	ix, err := prefix.ReadIndex(dir)
	if err != nil {
		pf.Err = fmt.Sprintf("prefix index: %v (repair or remove it with scr_index)", err)
		return pf
	}
	for _, e := range ix.Entries() {
		pf.MaxID = max(pf.MaxID, int(e.Dataset.ID))
		pf.MaxCkpt = max(pf.MaxCkpt, int(e.Dataset.CkptID))
		if e.Complete {
			pf.Flushed = append(pf.Flushed, int(e.Dataset.ID))
		}
	}
	return pf
}

// restore brings one dataset back on every rank (collective) and says how:
// "cache" (every rank had its files) or "cache-rebuild".
func (h *Handle) restore(ctx context.Context, ds cache.Dataset, moves []transfer) (string, error) {
	start := time.Now()
	if ds.Ranks != h.size {
		return "", fmt.Errorf("dataset %d was written by %d ranks, this run has %d", ds.ID, ds.Ranks, h.size)
	}
	dir := h.rankDir(ds, h.rank)
	merr := h.migrate(ctx, ds, moves)
	if errors.Is(merr, comm.ErrPeerLost) {
		return "", merr
	}
	lost := merr != nil || !h.intact(ds, dir)
	if lost {
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, cache.DirMode); err != nil {
			lost = true
		}
	}
	n, err := h.world.Allreduce(ctx, comm.OpSum, []int64{b2i(lost)})
	if err != nil {
		return "", h.commErr("Init: count lost ranks", err)
	}
	if n[0] == 0 {
		h.debug0f(1, "Init: dataset %d (%s) is complete in the cache", ds.ID, ds.Name)
		return "cache", nil
	}
	if h.rank == 0 {
		h.debugf(1, "Init: dataset %d (%s): %d rank(s) lost their files; rebuilding from %s", ds.ID, ds.Name, n[0], ds.Scheme)
		h.logEvent(prefix.LogRecord{Event: "REBUILD_START", Dset: int64(ds.ID)})
	}
	cd, err := h.codecFor(ds.Scheme)
	if err != nil {
		return "", h.agree(ctx, "Init: redundancy", err)
	}
	sets, rerr := cd.Rebuild(ctx, h.world, h.spec(ds), dir, lost)
	if rerr == nil && lost && !h.intact(ds, dir) {
		rerr = fmt.Errorf("dataset %d: rank %d: rebuilt files do not match their metadata", ds.ID, h.rank)
	}
	if err := h.agree(ctx, fmt.Sprintf("Init: rebuild dataset %d (%s)", ds.ID, ds.Scheme), rerr); err != nil {
		if h.rank == 0 {
			h.debugf(1, "Init: rebuilding dataset %d (%s) failed: %v", ds.ID, ds.Name, err)
			h.logEvent(prefix.LogRecord{Event: "REBUILD_FAIL", Dset: int64(ds.ID)})
		}
		return "", err
	}
	if h.rank == 0 {
		h.debugf(1, "Init: rebuilt dataset %d (%s) in %.6f secs", ds.ID, ds.Name, time.Since(start).Seconds())
		h.logEvent(prefix.LogRecord{Event: "REBUILD_SUCCESS", Dset: int64(ds.ID)})
		h.timeline("rebuilt", map[string]any{"dataset": ds.ID, "name": ds.Name, "sets": sets, "ranks": n[0], "seconds": time.Since(start).Seconds()})
	}
	return "cache-rebuild", nil
}

// intact says whether this rank's directory holds its complete, matching
// files for the dataset.
func (h *Handle) intact(ds cache.Dataset, dir string) bool {
	fm, err := cache.ReadFilemap(dir)
	if err != nil || fm.Rank != h.rank || fm.Dataset.ID != ds.ID {
		return false
	}
	if ds.Scheme != "SINGLE" && !redundancyIntact(dir) {
		return false
	}
	if ds.Bypass {
		return cache.Verify(h.prefix, fm) == nil // the files are on the prefix
	}
	return cache.Verify(dir, fm) == nil
}

// Migration tags: far above what applications use.
const tagMigrate = 0x5c0000

// transfer moves rank Dst's directory from the node of rank Src (a node
// leader) to Dst's node.
type transfer struct {
	Src int `json:"s"`
	Dst int `json:"d"`
}

// initPlan is rank 0's restart plan at Init.
type initPlan struct {
	Facts    prefixFacts        `json:"facts"`
	Datasets []cache.Dataset    `json:"datasets,omitempty"` // newest first
	Moves    map[int][]transfer `json:"moves,omitempty"`    // per dataset, ordered by Dst
	Purge    []int              `json:"purge,omitempty"`    // datasets that never completed
	Err      string             `json:"err,omitempty"`
}

// makePlan is rank 0's part of the restart: which datasets exist anywhere
// and which rank directories must move to another node.
func (h *Handle) makePlan(all [][]byte) initPlan {
	plan := initPlan{Facts: readPrefixFacts(h.prefix), Moves: map[int][]transfer{}}
	if plan.Facts.Err != "" {
		plan.Err = plan.Facts.Err
		return plan
	}
	reps := make([]nodeReport, len(all))
	for r, x := range all {
		if err := json.Unmarshal(x, &reps[r]); err != nil {
			plan.Err = fmt.Sprintf("bad cache report from rank %d: %v", r, err)
			return plan
		}
	}
	known := map[int]cache.Dataset{}
	pending := map[int]bool{}          // datasets no node has marked complete (yet)
	holders := map[int]map[int][]int{} // dataset -> rank -> leaders holding its directory
	for l, rp := range reps {
		if !rp.Leader {
			continue
		}
		if rp.Dropped != "" {
			h.reportDropped(rp.Node, rp.Dropped)
		}
		for _, d := range rp.Entries {
			plan.Facts.MaxID = max(plan.Facts.MaxID, d.ID)
			plan.Facts.MaxCkpt = max(plan.Facts.MaxCkpt, d.CkptID)
			if d.Complete {
				known[d.ID] = d
			} else if _, ok := known[d.ID]; !ok {
				pending[d.ID] = true
			}
		}
		for id, ranks := range rp.Held {
			if holders[id] == nil {
				holders[id] = map[int][]int{}
			}
			for _, r := range ranks {
				holders[id][r] = append(holders[id][r], l)
			}
		}
	}
	for id, d := range known {
		plan.Datasets = append(plan.Datasets, d)
		for dst := 0; dst < len(reps); dst++ {
			hs := holders[id][dst]
			here := false
			for _, l := range hs {
				here = here || reps[l].Node == reps[dst].Node
			}
			if !here && len(hs) > 0 {
				plan.Moves[id] = append(plan.Moves[id], transfer{Src: hs[0], Dst: dst})
			}
		}
	}
	for id := range pending {
		if _, ok := known[id]; !ok {
			plan.Purge = append(plan.Purge, id) // never completed anywhere
		}
	}
	sort.Ints(plan.Purge)
	sort.Slice(plan.Datasets, func(i, j int) bool { return plan.Datasets[i].ID > plan.Datasets[j].ID })
	return plan
}

func distinct(hosts []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range hosts {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// migrate moves rank directories to the node where each rank runs now: a
// node leader whose node holds the directory of a rank running elsewhere
// sends it. The transfers run in one global order (by destination), so
// blocking sends cannot deadlock.
func (h *Handle) migrate(ctx context.Context, ds cache.Dataset, plan []transfer) error {
	for _, t := range plan {
		switch h.rank {
		case t.Src:
			dir := h.rankDir(ds, t.Dst)
			if err := sendDir(ctx, h.world, t.Dst, dir, h.cfg.bufSize); err != nil {
				if errors.Is(err, comm.ErrPeerLost) || ctx.Err() != nil {
					return err
				}
				// The receiver got an abort: its directory counts as
				// lost and its set rebuilds it.
				continue
			}
			os.RemoveAll(dir) // the rank lives elsewhere now
		case t.Dst:
			dir := h.rankDir(ds, h.rank)
			os.RemoveAll(dir)
			if err := recvDir(ctx, h.world, t.Src, dir); err != nil {
				if errors.Is(err, comm.ErrPeerLost) {
					return err
				}
				return fmt.Errorf("receive dataset %d from rank %d: %w", ds.ID, t.Src, err)
			}
		}
	}
	// Orphans nobody needs (ranks that moved and were served by another
	// holder) go away with the next eviction of the dataset.
	return nil
}

type manifestFile struct {
	Rel  string `json:"rel"`
	Size int64  `json:"size"`
	Mode uint32 `json:"mode"`
}

// sendDir sends every regular file below dir to rank dst: a manifest, then
// each file's bytes in pieces. A read failure is sent as an abort so the
// receiver does not wait.
func sendDir(ctx context.Context, c comm.Comm, dst int, dir string, piece int) error {
	var files []manifestFile
	werr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, manifestFile{Rel: rel, Size: info.Size(), Mode: uint32(info.Mode().Perm())})
		return nil
	})
	if werr != nil {
		c.Send(ctx, dst, tagMigrate, append([]byte{1}, werr.Error()...))
		return werr
	}
	m, _ := json.Marshal(files)
	if err := c.Send(ctx, dst, tagMigrate, append([]byte{0}, m...)); err != nil {
		return err
	}
	// A message is a flag byte and up to piece-1 bytes of file, read into a
	// recycled buffer the send gives up (the receiver releases it).
	payload := int64(max(piece-1, 4096))
	for _, f := range files {
		fh, err := os.Open(filepath.Join(dir, f.Rel))
		if err != nil {
			c.Send(ctx, dst, tagMigrate, append([]byte{1}, err.Error()...))
			return err
		}
		for left := f.Size; left > 0; {
			n := min(payload, left)
			msg := comm.Buffer(int(1 + n))
			msg[0] = 0
			if _, err := io.ReadFull(fh, msg[1:]); err != nil {
				comm.Release(msg)
				fh.Close()
				c.Send(ctx, dst, tagMigrate, append([]byte{1}, err.Error()...))
				return err
			}
			if err := comm.SendOwned(ctx, c, dst, tagMigrate, msg); err != nil {
				fh.Close()
				return err
			}
			left -= n
		}
		fh.Close()
	}
	return nil
}

// recvMsg receives a migration message: its content, and the buffer it
// arrived in, which the caller may give back with comm.Release.
func recvMsg(ctx context.Context, c comm.Comm, src int) (content, buf []byte, err error) {
	b, err := c.Recv(ctx, src, tagMigrate)
	if err != nil {
		return nil, nil, err
	}
	if len(b) == 0 {
		return nil, nil, errors.New("empty migration message")
	}
	if b[0] == 1 {
		return nil, nil, fmt.Errorf("sender failed: %s", b[1:])
	}
	return b[1:], b, nil
}

// recvDir receives what sendDir sends into dir.
func recvDir(ctx context.Context, c comm.Comm, src int, dir string) error {
	m, _, err := recvMsg(ctx, c, src)
	if err != nil {
		return err
	}
	var files []manifestFile
	if err := json.Unmarshal(m, &files); err != nil {
		return err
	}
	var ferr error
	for _, f := range files {
		p := filepath.Join(dir, filepath.Clean("/" + f.Rel)[1:])
		var fh *os.File
		if ferr == nil {
			if ferr = os.MkdirAll(filepath.Dir(p), cache.DirMode); ferr == nil {
				fh, ferr = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(f.Mode)|0o600)
			}
		}
		for got := int64(0); got < f.Size; {
			b, whole, err := recvMsg(ctx, c, src)
			if err != nil {
				if fh != nil {
					fh.Close()
				}
				return err
			}
			if fh != nil && ferr == nil {
				_, ferr = fh.Write(b)
			}
			got += int64(len(b))
			comm.Release(whole)
		}
		if fh != nil {
			if err := fh.Close(); ferr == nil {
				ferr = err
			}
		}
	}
	return ferr
}

// HaveRestart says whether a checkpoint is available and returns its name
// (collective). It offers the newest checkpoint that came back at Init; if
// none, and SCR_FETCH is on, it fetches the newest complete, not failed
// checkpoint from the prefix into the cache. No checkpoint is not an
// error: ok is false and the application starts from scratch.
func (h *Handle) HaveRestart(ctx context.Context) (name string, ok bool, err error) {
	if !h.cfg.Enable {
		return "", false, ErrDisabled
	}
	if err := h.need("HaveRestart", stateIdle, "finish the current phase first"); err != nil {
		return "", false, err
	}
	if h.loaded != nil {
		return h.loaded.Name, true, nil
	}
	if len(h.cands) > 0 {
		d := h.cands[0]
		h.loaded, h.loadSrc = &d, h.sources[d.ID]
	} else if h.cfg.Fetch {
		d, err := h.fetch(ctx)
		if err != nil {
			return "", false, err
		}
		if d == nil {
			return "", false, nil
		}
		h.loaded, h.loadSrc = d, "prefix"
	} else {
		return "", false, nil
	}
	if h.rank == 0 {
		h.timeline("restart", map[string]any{"name": h.loaded.Name, "dataset": h.loaded.ID, "from": h.loadSrc})
	}
	return h.loaded.Name, true, nil
}

// StartRestart opens the checkpoint HaveRestart offered for reading and
// returns its name. Route then gives the path of each file to read.
func (h *Handle) StartRestart(ctx context.Context) (string, error) {
	if !h.cfg.Enable {
		return "", ErrDisabled
	}
	if err := h.need("StartRestart", stateIdle, "call HaveRestart first"); err != nil {
		return "", err
	}
	if h.loaded == nil {
		return "", &StateError{Call: "StartRestart", State: h.state.String(), Hint: "HaveRestart offered no checkpoint"}
	}
	h.mu.Lock()
	h.state = stateRestart
	h.mu.Unlock()
	return h.loaded.Name, nil
}

func (h *Handle) routeRestart(name, orig, rel string) (string, error) {
	d := h.loaded
	dir, p := h.rankDir(*d, h.rank), filepath.Join(h.rankDir(*d, h.rank), rel)
	if d.Bypass {
		dir, p = h.prefix, orig
	}
	root, err := os.OpenRoot(dir)
	if err == nil {
		_, err = root.Stat(rel)
		root.Close()
	}
	if err != nil {
		return "", &PathError{Rank: h.rank, Path: name, Prefix: h.prefix, Reason: fmt.Sprintf("not in checkpoint %s of this rank (%v)", d.Name, err)}
	}
	return p, nil
}

// CompleteRestart ends the restart phase (collective). valid says whether
// this rank read its checkpoint correctly; if any rank says false, the
// checkpoint is marked failed in the prefix index, removed from the cache,
// and an *InvalidError is returned on every rank: call HaveRestart again
// to get the next older checkpoint.
func (h *Handle) CompleteRestart(ctx context.Context, valid bool) error {
	if !h.cfg.Enable {
		return ErrDisabled
	}
	if err := h.need("CompleteRestart", stateRestart, "call StartRestart first"); err != nil {
		return err
	}
	h.mu.Lock()
	h.state = stateIdle
	h.mu.Unlock()
	v, err := h.world.Allreduce(ctx, comm.OpAnd, []int64{b2i(valid)})
	if err != nil {
		return h.commErr("CompleteRestart", err)
	}
	if v[0] != 0 {
		return nil
	}
	d := *h.loaded
	h.loaded = nil
	h.reportBad(d.Name, d.ID, h.loadSrc, "the application could not read it (CompleteRestart reported invalid on at least one rank); marked failed")
	var lerr error
	if h.rank == 0 {
		lerr = prefix.UpdateIndex(ctx, h.prefix, func(ix *prefix.Index) error {
			if ix.Get(int64(d.ID)) == nil {
				return errSkip
			}
			return ix.MarkFailed(int64(d.ID), time.Now())
		})
		if errors.Is(lerr, errSkip) {
			lerr = nil
		}
	}
	if err := h.discard(ctx, d.ID); err != nil && lerr == nil {
		lerr = err
	}
	if h.tried == 0 || int64(d.ID) < h.tried {
		if h.loadSrc == "prefix" {
			h.tried = int64(d.ID)
		}
	}
	ierr := &InvalidError{Dataset: d.Name, Reasons: []string{"restart reported invalid by at least one rank; marked failed, call HaveRestart for an older checkpoint"}}
	if err := h.agree(ctx, "CompleteRestart: drop failed checkpoint", lerr); err != nil {
		return errors.Join(ierr, err)
	}
	return ierr
}

// reportDropped says, on rank 0, that a node's cache index could not be
// trusted and its cache was dropped (stderr line and cache_dropped event):
// its ranks come back from redundancy if the other nodes allow it.
func (h *Handle) reportDropped(node, reason string) {
	reason = strings.Join(strings.Fields(reason), " ")
	h.warnf("node %s: its cache index cannot be trusted: %s; its cache was dropped (its ranks are rebuilt from the other nodes where the redundancy allows)", node, reason)
	h.timeline("cache_dropped", map[string]any{"node": node, "reason": reason})
}

// reportBad says, on rank 0, that a checkpoint cannot be used for a restart
// and that the restart falls back to an older one: one line on
// Options.Stderr (a warning) and a bad_dataset timeline event, so a fall-back is
// never silent. from is where the checkpoint was: "cache" or "prefix".
func (h *Handle) reportBad(name string, id int, from, reason string) {
	if h.rank != 0 {
		return
	}
	reason = strings.Join(strings.Fields(reason), " ")
	h.warnf("checkpoint %q (dataset %d) in the %s cannot be used: %s; falling back to an older checkpoint", name, id, from, reason)
	h.timeline("bad_dataset", map[string]any{"name": name, "dataset": id, "from": from, "reason": reason})
}

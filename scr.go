package scr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/collective"
	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/safefs"
)

// Version is the library version.
const Version = "scr-go 0.1"

// Flags say what a dataset is; OR them.
type Flags int

const (
	// Checkpoint: the dataset can be restarted from.
	Checkpoint Flags = Flags(cache.FlagCheckpoint)
	// Output: the dataset must reach the prefix (it is always flushed).
	Output Flags = Flags(cache.FlagOutput)
)

type state int

const (
	stateIdle state = iota
	stateOutput
	stateRestart
	stateFinal
)

func (s state) String() string {
	return [...]string{"idle", "output", "restart", "finalized"}[s]
}

// Handle is one rank's connection to SCR. Create it with Init and end it
// with Finalize. Collective methods must be called by every rank of the
// communicator in the same order; a Handle is used by one goroutine at a
// time, except Route, which may be called from several goroutines during
// an output or restart phase.
type Handle struct {
	world    comm.Comm
	node     comm.Comm // ranks on this node; rank 0 of it is the node leader
	rank     int
	size     int
	nodeName string
	nodes    int      // nodes in the run
	hosts    []string // node of every rank
	cc       *config.Config
	cfg      params
	prefix   string
	layout   cache.Layout
	owner    *prefix.OwnerLock // rank 0's claim on the prefix

	state   state
	dsID    int // newest dataset id used or seen
	ckptID  int // newest checkpoint id used or seen
	out     *outputPhase
	cached  map[int]cache.Dataset // complete datasets in this job's caches, agreed by all ranks
	flushed map[int]bool          // datasets known complete on the prefix
	cands   []cache.Dataset       // cached checkpoints that can be restarted from, newest first
	sources map[int]string        // how each candidate came back: cache or cache-rebuild
	loaded  *cache.Dataset        // the checkpoint HaveRestart offered
	loadSrc string
	tried   int64 // fetch: the last prefix dataset tried (fetch next below it)

	async     *asyncFlush
	deferred  int                  // the previous checkpoint kept while StartOutput's dataset is written (see evict)
	localPath map[int]string       // dataset dirs recorded in this node's cache index at Init
	groups    map[string]*setsInfo // redundancy sets by group and set size, formed once

	// Need_checkpoint policy state.
	needCalls   int
	lastCkptEnd time.Time
	ckptCost    time.Duration // total time spent in checkpoints
	ckpts       int
	outStart    time.Time

	mu sync.Mutex // guards out.files for concurrent Route calls

	errw         io.Writer // Options.Stderr
	logBroken    bool      // the text log failed once: not written again
	computeStart time.Time // end of Init or of the last checkpoint (text log)
	haltLogged   string    // the halt reason already logged
}

// outputPhase is the dataset being written between StartOutput and Complete.
type outputPhase struct {
	ds    cache.Dataset
	dir   string              // this rank's directory in the dataset (cache mode)
	files map[string]*fileReg // by path relative to the prefix
	ready time.Time           // when StartOutput returned
}

type fileReg struct {
	orig string // absolute path under the prefix
	rel  string
}

// Init starts SCR on this rank (collective). It reads the configuration,
// creates the node's control and cache directories, and brings back the
// datasets that survive in the caches of this job: node leaders read their
// cache indexes, ranks agree on the datasets present anywhere, files move
// to the node where each rank runs now, and each redundancy set rebuilds
// what its lost members held. HaveRestart then offers the newest checkpoint
// that came back, or fetches one from the prefix.
//
// With SCR_ENABLE=0 Init returns a handle whose calls return ErrDisabled
// (Route returns names unchanged), so an application runs without SCR.
func Init(ctx context.Context, opts Options) (_ *Handle, initErr error) {
	if opts.Comm == nil {
		return nil, fmt.Errorf("scr: Init: Options.Comm is nil: %w", ErrConfig)
	}
	cc, cfg, err := resolve(opts.Env, opts.Config)
	var node, pfx string
	if err == nil && cfg.Enable {
		node, pfx, err = identity(opts, cfg)
	}
	// First collective: every rank learns whether every rank could read its
	// configuration and whether SCR is on everywhere, so no rank goes on
	// alone into collectives the others never enter.
	v, cerr := opts.Comm.Allreduce(ctx, comm.OpSum, []int64{b2i(err != nil), b2i(err == nil && !cfg.Enable)})
	var cause *collective.Failure
	if cerr == nil && v[0] > 0 {
		// Every rank carries the first misconfigured rank's message.
		cause, cerr = collective.Cause(ctx, opts.Comm, int(v[0]), err)
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("scr: Init on rank %d: %w", opts.Comm.Rank(), err)
	case cerr != nil:
		return nil, fmt.Errorf("scr: Init on rank %d: %w", opts.Comm.Rank(), cerr)
	case v[0] > 0:
		return nil, fmt.Errorf("scr: Init on rank %d: %w: %w", opts.Comm.Rank(), &RanksError{What: "reading the configuration", Ranks: v[0], First: cause.First, Cause: cause.Cause}, ErrConfig)
	case v[1] > 0 && int(v[1]) < opts.Comm.Size():
		return nil, fmt.Errorf("scr: Init on rank %d: SCR_ENABLE is 0 on %d of %d ranks; it must be the same everywhere: %w", opts.Comm.Rank(), v[1], opts.Comm.Size(), ErrConfig)
	}
	h := &Handle{
		world:   opts.Comm,
		rank:    opts.Comm.Rank(),
		size:    opts.Comm.Size(),
		cc:      cc,
		cfg:     cfg,
		cached:  map[int]cache.Dataset{},
		flushed: map[int]bool{},
		sources: map[int]string{},
		errw:    opts.Stderr,
	}
	if !cfg.Enable {
		h.state = stateFinal
		return h, nil
	}
	h.nodeName, h.prefix = node, pfx
	h.layout = cfg.layout()

	// The prefix belongs to one job at a time: two jobs flushing to one
	// prefix would interleave their datasets (and each would believe its
	// own ckpt.N is there). Rank 0 claims it for the handle's lifetime.
	var oerr error
	if h.rank == 0 {
		h.owner, oerr = prefix.Claim(h.prefix, prefix.Owner{JobID: cfg.JobID, User: cfg.UserName, Host: node, PID: os.Getpid()})
	}
	defer func() {
		if initErr != nil {
			h.owner.Release()
		}
	}()
	if err := h.agree(ctx, "Init: claim the prefix", oerr); err != nil {
		return nil, err
	}

	// Every rank is up. Rank 0 reports the run started,
	// with the nodes it runs on (scr_run watches those).
	all, err := h.world.Allgather(ctx, []byte(h.nodeName))
	if err != nil {
		return nil, h.commErr("Init: exchange node names", err)
	}
	h.hosts = make([]string, len(all))
	seen := map[string]bool{}
	var nodes []string
	for r, b := range all {
		h.hosts[r] = string(b)
		if !seen[h.hosts[r]] {
			seen[h.hosts[r]] = true
			nodes = append(nodes, h.hosts[r])
		}
	}
	sort.Strings(nodes)
	h.nodes = len(nodes)
	initStart := time.Now()
	if h.rank == 0 {
		h.timeline("started", map[string]any{"ranks": h.size, "nodes": nodes})
		h.initMessages()
		h.logEvent(prefix.LogRecord{Event: "START", Procs: prefix.Int(int64(h.size)), Nodes: prefix.Int(int64(h.nodes))})
	}
	if h.node, err = h.world.SplitString(ctx, h.nodeName); err != nil {
		return nil, h.commErr("Init: group ranks by node", err)
	}

	// Directories: every rank creates its own (MkdirAll is idempotent), so
	// no rank waits on a leader for them.
	var lerr error
	for _, base := range h.cfg.storeBases() {
		if err := h.cfg.storeLayout(base).Create(); err != nil && lerr == nil {
			lerr = err
		}
	}
	if err := h.agree(ctx, "Init: create cache directories", lerr); err != nil {
		return nil, err
	}
	if h.cfg.PrefixPurge {
		var perr error
		if h.rank == 0 {
			perr = purgePrefix(ctx, h.prefix)
		}
		if err := h.agree(ctx, "Init: SCR_PREFIX_PURGE", perr); err != nil {
			return nil, err
		}
	}
	if err := h.recover(ctx); err != nil {
		return nil, err
	}
	if h.cfg.FlushOnRestart || h.cfg.GlobalRestart {
		if err := h.flushCached(ctx); err != nil {
			return nil, err
		}
	}
	if h.cfg.GlobalRestart {
		// Restart from the prefix: drop the cached copies (just flushed).
		var lerr error
		for id := range h.cached {
			if err := h.discard(ctx, id); err != nil && lerr == nil {
				lerr = err
			}
		}
		if err := h.agree(ctx, "Init: SCR_GLOBAL_RESTART: purge the cache", lerr); err != nil {
			return nil, err
		}
	}
	if cfg.Current != "" {
		if err := h.Current(ctx, cfg.Current); err != nil {
			return nil, fmt.Errorf("scr: Init: SCR_CURRENT=%s: %w", cfg.Current, err)
		}
	}
	h.reservePieces()
	h.lastCkptEnd = time.Now()
	if err := h.world.Barrier(ctx); err != nil {
		return nil, h.commErr("Init", err)
	}
	h.computeStart = time.Now()
	if h.rank == 0 {
		restart := "none"
		if len(h.cands) > 0 {
			restart = fmt.Sprintf("%s (dataset %d, %s)", h.cands[0].Name, h.cands[0].ID, h.sources[h.cands[0].ID])
		}
		h.debugf(1, "Init: %d ranks on %d nodes, prefix %s, cache %s: %.6f secs; %d dataset(s) in cache, checkpoint to restart from: %s",
			h.size, h.nodes, h.prefix, h.layout.CacheDir, time.Since(initStart).Seconds(), len(h.cached), restart)
		h.logEvent(prefix.LogRecord{Event: "COMPUTE_START"})
	}
	if err := h.haltExit(ctx, "Init"); err != nil {
		return nil, err
	}
	return h, nil
}

// identity is this rank's node name (Options.Node, SCR_NODE_NAME, else the
// short host name) and its absolute prefix directory.
func identity(opts Options, cfg params) (node, pfx string, err error) {
	node = opts.Node
	if node == "" {
		node = cfg.NodeName
	}
	if node == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", "", fmt.Errorf("no node name (set SCR_NODE_NAME): %w", err)
		}
		node, _, _ = strings.Cut(h, ".") // the short name, as the resource manager uses
	}
	pfx = cfg.Prefix
	if pfx == "" {
		if pfx, err = os.Getwd(); err != nil {
			return "", "", fmt.Errorf("no prefix (set SCR_PREFIX): %w", err)
		}
	}
	if pfx, err = filepath.Abs(pfx); err != nil {
		return "", "", fmt.Errorf("prefix %q: %w", cfg.Prefix, err)
	}
	// The user name and the job id name directories in the shared cache
	// base (<base>/<user>/scr.<jobid>): one component each.
	if err := safefs.Component(cfg.UserName); err != nil {
		return "", "", &ConfigError{Key: "SCR_USER_NAME", Value: cfg.UserName, Want: "a user name usable as a directory name (" + err.Error() + ")"}
	}
	if err := safefs.Component("scr." + cfg.JobID); err != nil || cfg.JobID == "" {
		return "", "", &ConfigError{Key: "SCR_JOB_ID", Value: cfg.JobID, Want: "a job id usable in a directory name"}
	}
	return node, filepath.Clean(pfx), nil
}

// Finalize ends SCR on this rank (collective): it waits for an async
// flush, flushes the newest checkpoint if SCR_FLUSH>0 and it is not on the
// prefix yet, and records SCR_FINALIZE_CALLED in the halt file so that the
// job script does not relaunch a finished application.
func (h *Handle) Finalize(ctx context.Context) error {
	if !h.cfg.Enable {
		return ErrDisabled
	}
	if err := h.need("Finalize", stateIdle, "call Complete or CompleteRestart first"); err != nil {
		return err
	}
	errs := h.finishFlushes(ctx)
	if h.rank == 0 {
		_, err := prefix.UpdateHalt(ctx, h.prefix, func(hf *prefix.Halt, _ bool) error {
			if hf.ExitReason != "" {
				return errSkip // keep the reason scr_halt gave; it stops the job too
			}
			hf.ExitReason = prefix.ReasonFinalizeCalled
			return nil
		})
		if err != nil && !errors.Is(err, errSkip) {
			errs = append(errs, fmt.Errorf("scr: Finalize: record %s in the halt file: %w", prefix.ReasonFinalizeCalled, err))
		}
		if err == nil {
			h.logHalt(prefix.ReasonFinalizeCalled)
		}
	}
	// Every rank learns whether Finalize worked everywhere (this also
	// fails if the application closed its communicator too early).
	ferr := h.agree(ctx, "Finalize", errors.Join(errs...))
	if err := h.world.Barrier(ctx); err != nil && ferr == nil {
		ferr = h.commErr("Finalize", err)
	}
	if ferr == nil && h.rank == 0 {
		// Every rank is through: scr_run may end a step that still runs
		// long after this (SCR_FINALIZE_TIMEOUT), e.g. one hung in
		// MPI_Finalize (doc/capi.md).
		h.timeline("finalized", nil)
	}
	h.owner.Release()
	h.state = stateFinal
	return ferr
}

// finishFlushes waits for an async flush and flushes the newest checkpoint
// if SCR_FLUSH>0 and it is not on the prefix yet (collective).
func (h *Handle) finishFlushes(ctx context.Context) []error {
	var errs []error
	if err := h.waitAsync(ctx); err != nil {
		errs = append(errs, err)
	}
	if h.cfg.Flush > 0 && len(errs) == 0 {
		if newest := h.newestCached(func(d cache.Dataset) bool { return d.IsCheckpoint() }); newest != nil && !h.flushed[newest.ID] {
			if err := h.flushSync(ctx, *newest); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// Config queries a parameter at any time: "KEY" returns its value as
// resolved for this rank ("" when unset), "PARENT=VALUE CHILD" a
// descriptor's child (e.g. "CKPT=0 TYPE"). Setting ("KEY=VALUE") is only
// possible before Init, through Options.Config; here it returns a
// *StateError.
func (h *Handle) Config(s string) (string, error) {
	s = strings.TrimSpace(s)
	if f := strings.Fields(s); len(f) == 1 && strings.Contains(s, "=") {
		return "", &StateError{Call: "Config(" + s + ")", State: h.state.String(), Hint: "set parameters before Init with Options.Config"}
	}
	v, _, err := h.cc.Query(s)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return v, nil
}

// Rank is this handle's rank in the world communicator.
func (h *Handle) Rank() int { return h.rank }

// Prefix is the prefix directory datasets are flushed to.
func (h *Handle) Prefix() string { return h.prefix }

// Enabled says whether SCR is active (SCR_ENABLE is not 0).
func (h *Handle) Enabled() bool { return h.cfg.Enable }

// need checks the state for a call.
func (h *Handle) need(call string, want state, hint string) error {
	if h.state != want {
		return &StateError{Call: call, State: h.state.String(), Hint: hint}
	}
	return nil
}

// agree turns a per-rank error into one outcome on all ranks: nil only if
// every rank succeeded; otherwise this rank's error, or an error naming
// how many other ranks failed.
//
// The failing rank's message reaches every rank (the lowest failing rank's,
// with its node), so the cause is printed whichever rank reports first: a
// launcher that kills the job on the first exit (srun -K, scr_launch) may
// not let the failing rank print at all.
func (h *Handle) agree(ctx context.Context, what string, local error) error {
	f, err := collective.Agree(ctx, h.world, local)
	if err != nil {
		return h.commErr(what, err)
	}
	if local != nil {
		return fmt.Errorf("scr: rank %d on %s: %s: %w", h.rank, h.nodeName, what, local)
	}
	if f != nil {
		return &RanksError{What: what, Ranks: int64(f.Failed), First: f.First, Host: h.hostOf(f.First), Cause: f.Cause}
	}
	return nil
}

// hostOf is the node of rank r, once Init knows it.
func (h *Handle) hostOf(r int) string {
	if r >= 0 && r < len(h.hosts) {
		return h.hosts[r]
	}
	return "?"
}

func (h *Handle) commErr(what string, err error) error {
	return fmt.Errorf("scr: rank %d on %s: %s: %w", h.rank, h.nodeName, what, err)
}

// bcastJSON sends rank 0's v to every rank (v is overwritten elsewhere).
func (h *Handle) bcastJSON(ctx context.Context, c comm.Comm, v any) error {
	var b []byte
	if c.Rank() == 0 {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	b, err := c.Bcast(ctx, 0, b)
	if err != nil {
		return err
	}
	if c.Rank() != 0 {
		return json.Unmarshal(b, v)
	}
	return nil
}

// timeline appends an event (rank 0 only calls it). A failure to write the
// timeline must not fail the application; it is dropped.
func (h *Handle) timeline(event string, fields map[string]any) {
	_ = prefix.AppendTimeline(h.prefix, prefix.Event{Source: "library", Event: event, Run: h.cfg.runID, Fields: fields})
}

// newestCached returns the newest cached dataset for which ok is true.
func (h *Handle) newestCached(ok func(cache.Dataset) bool) *cache.Dataset {
	ids := make([]int, 0, len(h.cached))
	for id := range h.cached {
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ids)))
	for _, id := range ids {
		if d := h.cached[id]; ok(d) {
			return &d
		}
	}
	return nil
}

// storeBase resolves a dataset's store key ("" or "CKPT=<n>") to this
// node's base directory: the descriptor's STORE, else SCR_CACHE_BASE.
func (h *Handle) storeBase(key string) string {
	var n int
	if _, err := fmt.Sscanf(key, "CKPT=%d", &n); err == nil {
		for _, d := range h.cfg.Redundancy {
			if d.Index == n && d.Store != "" {
				return filepath.Clean(d.Store)
			}
		}
	}
	return filepath.Clean(h.cfg.CacheBase)
}

// dsDir is the cache directory of a dataset on this node (in its store):
// where this node's cache index says it is, else where its store is now.
func (h *Handle) dsDir(ds cache.Dataset) string {
	if p := h.localPath[ds.ID]; p != "" {
		return p
	}
	return h.cfg.storeLayout(h.storeBase(ds.Store)).DatasetDir(ds.ID)
}

// rankDir is rank r's directory of a dataset on this node.
func (h *Handle) rankDir(ds cache.Dataset, r int) string {
	return cache.RankDir(h.dsDir(ds), r)
}

// updateIndex lets the node leader change the node's cache index; other
// ranks do nothing. Callers follow with a collective that agrees on the
// error.
func (h *Handle) updateIndex(fn func(ix *cache.Index)) error {
	if h.node.Rank() != 0 {
		return nil
	}
	ix, err := h.layout.ReadIndex()
	if err != nil {
		return err
	}
	fn(ix)
	return ix.Write(h.layout.IndexPath())
}

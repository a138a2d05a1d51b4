package jobrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/flush"
	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/remote"
)

// NodeScavenge is what one node did for a dataset: the library's per-node
// scavenge result (flush.Scavenge), or why it failed.
type NodeScavenge struct {
	Result flush.ScavengeResult
	Err    error
}

// Copier runs the per-node copy of dataset id on every node (each node
// copies the valid files its cache holds to the prefix, checking sizes and
// CRCs) and returns each node's answer.
type Copier interface {
	CopyDataset(ctx context.Context, nodes []string, id int64) map[string]NodeScavenge
	// ListDatasets returns the complete datasets each node's cache index
	// holds, so that scavenge also finds datasets the flush state in the
	// prefix never recorded (rank 0 died before writing it).
	ListDatasets(ctx context.Context, nodes []string) map[string]NodeList
}

// NodeList is one node's cached datasets, or why they could not be listed.
type NodeList struct {
	Datasets []cache.Dataset
	Err      error
}

// ErrNoCopier is returned when scavenge has no per-node copy routine.
var ErrNoCopier = errors.New("no per-node copy routine: cannot read the node caches")

// RemoteCopier runs `scr_postrun --scavenge-node` (Argv) on every node at
// once through a remote transport, with bounded fan-out and a per-node
// timeout (package remote), and reads each node's JSON answer.
type RemoteCopier struct {
	Transport remote.Transport
	// Argv is the command one node runs to copy its part of dataset id;
	// it prints a flush.ScavengeResult as JSON.
	Argv func(id int64) []string
	// ListArgv lists the node's complete cached datasets as a JSON array
	// of cache.Dataset.
	ListArgv []string
	// Options bound each node's copy (Timeout: the hang guard of a copy).
	Options remote.Options
	// ListTimeout bounds each node's listing (default DefaultListTimeout).
	// A listing reads one small index, so a node that cannot give it in
	// that time is unreachable (a dead node the checks missed: a remote
	// command to it hangs until the resource manager notices) and is left
	// out of the copies, which would each wait out Options.Timeout.
	ListTimeout time.Duration
}

// DefaultListTimeout bounds a node's cache listing during a scavenge.
const DefaultListTimeout = 30 * time.Second

// ListDatasets implements Copier.
func (c RemoteCopier) ListDatasets(ctx context.Context, nodes []string) map[string]NodeList {
	out := map[string]NodeList{}
	lo := c.Options
	lo.Timeout = c.ListTimeout
	if lo.Timeout <= 0 {
		lo.Timeout = DefaultListTimeout
	}
	for _, r := range remote.Run(ctx, c.Transport, nodes, c.ListArgv, lo) {
		var nl NodeList
		switch {
		case r.Err != nil:
			nl.Err = r.Err
		case r.ExitCode != 0:
			nl.Err = fmt.Errorf("listing the cache of %s exited %d: %s", r.Node, r.ExitCode, firstLine(r.Stderr))
		default:
			if err := json.Unmarshal(r.Stdout, &nl.Datasets); err != nil {
				nl.Err = fmt.Errorf("listing the cache of %s: bad answer: %v", r.Node, err)
			}
		}
		out[r.Node] = nl
	}
	return out
}

// CopyDataset implements Copier.
func (c RemoteCopier) CopyDataset(ctx context.Context, nodes []string, id int64) map[string]NodeScavenge {
	out := map[string]NodeScavenge{}
	for _, r := range remote.Run(ctx, c.Transport, nodes, c.Argv(id), c.Options) {
		var ns NodeScavenge
		switch {
		case r.Err != nil:
			ns.Err = r.Err
		case r.ExitCode != 0:
			ns.Err = fmt.Errorf("scavenge of dataset %d on %s exited %d: %s", id, r.Node, r.ExitCode, firstLine(r.Stderr))
		default:
			if err := json.Unmarshal(r.Stdout, &ns.Result); err != nil {
				ns.Err = fmt.Errorf("scavenge of dataset %d on %s: bad answer: %v", id, r.Node, err)
			}
		}
		out[r.Node] = ns
	}
	return out
}

// FuncCopier runs a per-node function in this process, up to Fanout nodes at
// once: for the local cluster and tests, where every node's cache is
// reachable from here.
type FuncCopier struct {
	Fn     func(ctx context.Context, node string, id int64) (flush.ScavengeResult, error)
	List   func(ctx context.Context, node string) ([]cache.Dataset, error)
	Fanout int
}

// ListDatasets implements Copier.
func (c FuncCopier) ListDatasets(ctx context.Context, nodes []string) map[string]NodeList {
	res := make([]NodeList, len(nodes))
	fan := c.Fanout
	if fan <= 0 {
		fan = remote.DefaultFanout
	}
	remote.Each(ctx, len(nodes), fan, func(ctx context.Context, i int) {
		if c.List == nil {
			res[i].Err = errors.New("no cache listing")
			return
		}
		res[i].Datasets, res[i].Err = c.List(ctx, nodes[i])
	})
	out := make(map[string]NodeList, len(nodes))
	for i, n := range nodes {
		out[n] = res[i]
	}
	return out
}

// CopyDataset implements Copier.
func (c FuncCopier) CopyDataset(ctx context.Context, nodes []string, id int64) map[string]NodeScavenge {
	res := make([]NodeScavenge, len(nodes))
	fan := c.Fanout
	if fan <= 0 {
		fan = remote.DefaultFanout
	}
	remote.Each(ctx, len(nodes), fan, func(ctx context.Context, i int) {
		r, err := c.Fn(ctx, nodes[i], id)
		res[i] = NodeScavenge{Result: r, Err: err}
	})
	out := make(map[string]NodeScavenge, len(nodes))
	for i, n := range nodes {
		out[n] = res[i]
	}
	return out
}

// ScavengeNode is the per-node side: copy what this node's cache (found
// through env: SCR_CACHE_BASE, SCR_CNTL_BASE, user, job id) holds of
// dataset id to the prefix. scr_postrun --scavenge-node runs it on a node.
func ScavengeNode(ctx context.Context, env func(string) (string, bool), id int64, prefixDir string) (flush.ScavengeResult, error) {
	return flush.Scavenge(ctx, cache.NewLayout(cache.Lookup(env)), int(id), prefixDir)
}

// ListNode is the per-node listing: the complete datasets of this node's
// cache index (found through env, as for ScavengeNode).
func ListNode(env func(string) (string, bool)) ([]cache.Dataset, error) {
	l := cache.NewLayout(cache.Lookup(env))
	if err := l.Check(); err != nil {
		return nil, err
	}
	ix, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	var out []cache.Dataset
	for _, e := range ix.Datasets {
		if e.Dataset.Complete {
			out = append(out, e.Dataset)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

// ScavengeOptions configure Scavenge.
type ScavengeOptions struct {
	Prefix string
	Nodes  []string // the healthy nodes whose caches are read
	Copier Copier   // nil: ErrNoCopier for any dataset that needs a copy
	Log    io.Writer
	Now    func() time.Time
	// TextLog receives SCR's SCAVENGE_START / SCAVENGE_END events
	// (SCR_LOG_ENABLE=1); nil = none.
	TextLog func(prefix.LogRecord)
}

// Plan is which datasets scavenge looks at, in order.
type Plan struct {
	Outputs     []int64 // output datasets that need a flush, ascending
	Checkpoints []int64 // checkpoints, newest first (flushed ones included: one already in the prefix ends the search)
}

// PlanScavenge orders the flush state's datasets the way scr_postrun
// handles them (reference 7.2): outputs that need a flush, oldest first;
// then checkpoints newest first.
func PlanScavenge(entries []*prefix.FlushEntry) Plan {
	var p Plan
	for _, e := range entries {
		if e.Output && !e.Checkpoint && e.NeedsFlush() {
			p.Outputs = append(p.Outputs, e.ID)
		}
		if e.Checkpoint && (e.Has(prefix.LocCache) || e.Has(prefix.LocPFS)) {
			p.Checkpoints = append(p.Checkpoints, e.ID)
		}
	}
	sort.Slice(p.Outputs, func(i, j int) bool { return p.Outputs[i] < p.Outputs[j] })
	sort.Slice(p.Checkpoints, func(i, j int) bool { return p.Checkpoints[i] > p.Checkpoints[j] })
	return p
}

// ScavengeResult says what scavenge did.
type ScavengeResult struct {
	Scavenged  []int64           `json:"scavenged"`   // datasets copied to the prefix, complete
	Failed     map[int64]string  `json:"failed"`      // dataset -> why it could not be completed
	Current    string            `json:"current"`     // checkpoint now current in the index ("" if none chosen)
	Checkpoint int64             `json:"checkpoint"`  // its id (0 if none)
	NodeErrors map[string]string `json:"node_errors"` // node -> what went wrong there
	// Rebuilt lists, per scavenged dataset, the ranks whose files were
	// regenerated from redundancy data (their nodes were gone).
	Rebuilt map[int64][]int `json:"rebuilt,omitempty"`
}

// Scavenge copies the datasets that only live in cache to the prefix:
// every output that needs a flush (oldest first, stopping at the first one
// that cannot be completed), then the newest checkpoint that can be made
// complete (older than a failed output), which becomes current. A dataset is
// complete when every rank's files reached the prefix (flush.CommitScavenged
// then writes its summary and index entry). Ranks no healthy node holds are
// rebuilt in the prefix from the redundancy data the nodes copied
// (flush.RebuildScavenged) when every redundancy set lost no more than its
// scheme tolerates; otherwise the dataset stays incomplete with those ranks
// marked lost.
func Scavenge(ctx context.Context, o ScavengeOptions) (ScavengeResult, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	res := ScavengeResult{Failed: map[int64]string{}, NodeErrors: map[string]string{}, Rebuilt: map[int64][]int{}}
	st, err := prefix.ReadFlush(o.Prefix)
	if err != nil {
		return res, fmt.Errorf("scavenge: read flush state: %w", err)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(o.Log, "scr_postrun: %s: %s\n", o.Now().UTC().Format(logTime), fmt.Sprintf(format, a...))
	}
	entries := st.Entries()
	found, unreachable := discover(ctx, o, st, logf)
	entries = append(entries, found...)
	if len(unreachable) > 0 {
		// A node that could not even list its cache in time would hold
		// every copy up for the copy's whole timeout.
		for n, err := range unreachable {
			res.NodeErrors[n] = err.Error()
		}
		o.Nodes = slices.DeleteFunc(slices.Clone(o.Nodes), func(n string) bool { return unreachable[n] != nil })
		logf("left out of the scavenge (no answer to the cache listing): %s", hostlist.Compress(sortedKeys(unreachable)))
	}
	byID := map[int64]*prefix.FlushEntry{}
	for _, e := range entries {
		byID[e.ID] = e
	}
	plan := PlanScavenge(entries)
	if len(plan.Outputs) == 0 && len(plan.Checkpoints) == 0 {
		logf("nothing to scavenge: no dataset in cache needs a flush")
		return res, nil
	}
	var firstErr error
	one := func(id int64) bool {
		e := byID[id]
		start := o.Now()
		if o.TextLog != nil {
			o.TextLog(prefix.LogRecord{Time: start, Event: "SCAVENGE_START", Dset: id})
		}
		rebuilt, err := scavengeOne(ctx, o, e, res.NodeErrors)
		if o.TextLog != nil {
			o.TextLog(prefix.LogRecord{Time: o.Now(), Event: "SCAVENGE_END", Dset: id, Secs: prefix.Float(o.Now().Sub(start).Seconds())})
		}
		if err != nil {
			res.Failed[id] = err.Error()
			logf("dataset %d (%s): %v", id, e.Name, err)
			if firstErr == nil {
				firstErr = err
			}
			return false
		}
		res.Scavenged = append(res.Scavenged, id)
		if len(rebuilt) > 0 {
			res.Rebuilt[id] = rebuilt
			logf("dataset %d (%s) scavenged to the prefix; ranks %s rebuilt from redundancy data", id, e.Name, rankList(rebuilt))
		} else {
			logf("dataset %d (%s) scavenged to the prefix", id, e.Name)
		}
		if rebuilt == nil {
			rebuilt = []int{}
		}
		if err := prefix.AppendTimeline(o.Prefix, prefix.Event{Source: "scr_run", Event: "scavenge",
			Fields: map[string]any{"name": e.Name, "dataset": id, "rebuilt": rebuilt}}); err != nil {
			logf("warning: %v", err)
		}
		return true
	}
	failedOutput := int64(-1)
	for _, id := range plan.Outputs {
		if ctx.Err() != nil {
			break
		}
		if !one(id) {
			failedOutput = id
			break
		}
	}
	for _, id := range plan.Checkpoints {
		if ctx.Err() != nil {
			break
		}
		if failedOutput >= 0 && id >= failedOutput {
			continue
		}
		e := byID[id]
		if e.Has(prefix.LocPFS) {
			logf("checkpoint %d (%s) is already in the prefix", id, e.Name)
			res.Current, res.Checkpoint = e.Name, id
			break
		}
		if one(id) {
			if err := prefix.UpdateIndex(ctx, o.Prefix, func(x *prefix.Index) error { return x.SetCurrent(e.Name) }); err != nil {
				return res, fmt.Errorf("scavenge: mark %s current: %w", e.Name, err)
			}
			res.Current, res.Checkpoint = e.Name, id
			break
		}
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("scavenge interrupted: %w", ctx.Err())
	}
	if res.Current == "" && len(plan.Checkpoints) > 0 {
		return res, fmt.Errorf("scavenge: no checkpoint could be completed from the caches of %d nodes: %w", len(o.Nodes), firstErr)
	}
	if failedOutput >= 0 {
		return res, fmt.Errorf("scavenge: output dataset %d could not be completed: %s", failedOutput, res.Failed[failedOutput])
	}
	return res, nil
}

// discover asks the nodes which complete datasets their caches hold and
// returns flush entries for those the flush state does not know: in cache,
// and in the prefix too when the index says they were flushed complete.
func discover(ctx context.Context, o ScavengeOptions, st *prefix.FlushState, logf func(string, ...any)) ([]*prefix.FlushEntry, map[string]error) {
	if o.Copier == nil || len(o.Nodes) == 0 {
		return nil, nil
	}
	seen := map[int64]*prefix.FlushEntry{}
	unreachable := map[string]error{}
	lists := o.Copier.ListDatasets(ctx, o.Nodes)
	for _, n := range o.Nodes {
		if err := lists[n].Err; err != nil {
			logf("warning: could not list the cache of %s: %v", n, err)
			if errors.Is(err, remote.ErrTimeout) {
				unreachable[n] = err
			}
		}
		for _, d := range lists[n].Datasets {
			id := int64(d.ID)
			if st.Get(id) != nil || seen[id] != nil {
				continue
			}
			seen[id] = &prefix.FlushEntry{ID: id, Name: d.Name, Checkpoint: d.IsCheckpoint(), Output: d.IsOutput(), Locations: []string{prefix.LocCache}}
		}
	}
	if len(seen) == 0 {
		return nil, unreachable
	}
	idx, err := prefix.ReadIndex(o.Prefix)
	var out []*prefix.FlushEntry
	for id, e := range seen {
		if err == nil {
			if ie := idx.Get(id); ie != nil && ie.Valid() {
				e.Set(prefix.LocPFS, true)
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, unreachable
}

// scavengeOne copies dataset e from the nodes' caches and commits it in the
// prefix. Ranks no node could give are rebuilt from the scavenged
// redundancy data; it returns them.
func scavengeOne(ctx context.Context, o ScavengeOptions, e *prefix.FlushEntry, nodeErrs map[string]string) ([]int, error) {
	if o.Copier == nil {
		return nil, ErrNoCopier
	}
	if len(o.Nodes) == 0 {
		return nil, errors.New("no healthy node to read a cache from")
	}
	if err := prefix.EnsureMetaDir(o.Prefix); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(prefix.DatasetDir(o.Prefix, e.ID), 0o700); err != nil {
		return nil, err
	}
	answers := o.Copier.CopyDataset(ctx, o.Nodes, e.ID)
	var ds *cache.Dataset
	for _, n := range sortedNodeKeys(answers) {
		a := answers[n]
		if a.Err != nil {
			nodeErrs[n] = a.Err.Error()
			continue
		}
		if ds == nil || a.Result.Dataset.Ranks > ds.Ranks {
			d := a.Result.Dataset
			ds = &d
		}
	}
	if ds == nil {
		return nil, fmt.Errorf("no healthy node holds it (%d nodes asked, %d failed)", len(o.Nodes), len(nodeErrs))
	}
	perRank := make([][]prefix.File, ds.Ranks)
	recovered := make([]bool, ds.Ranks)
	why := map[int]string{} // rank -> why a node holding it could not give it
	for _, n := range sortedNodeKeys(answers) {
		for _, rr := range answers[n].Result.Ranks {
			if rr.Rank < 0 || rr.Rank >= ds.Ranks || recovered[rr.Rank] {
				continue
			}
			if rr.Err != "" {
				nodeErrs[n] = fmt.Sprintf("rank %d: %s", rr.Rank, rr.Err)
				why[rr.Rank] = n + ": " + rr.Err
				continue
			}
			perRank[rr.Rank], recovered[rr.Rank] = rr.Files, true
			delete(why, rr.Rank)
		}
	}
	var missing []int
	for r, ok := range recovered {
		if !ok {
			missing = append(missing, r)
		}
	}
	err := flush.CommitScavenged(ctx, o.Prefix, *ds, perRank, recovered)
	if err != nil && !errors.Is(err, flush.ErrIncomplete) {
		return nil, err
	}
	var rebuilt []int
	if len(missing) > 0 {
		// Recorded incomplete, the missing ranks marked lost; now try to
		// regenerate them from what the surviving ranks' redundancy data
		// holds.
		var files map[int][]prefix.File
		var rerr error
		if strings.EqualFold(ds.Scheme, "SINGLE") {
			// Known without reading anything: no rank holds another's data.
			rerr = fmt.Errorf("its redundancy is SINGLE, which keeps no copy of another rank's files: nothing to rebuild them from")
		} else {
			rebuilt, files, rerr = flush.RebuildScavenged(ctx, o.Prefix, e.ID, 0)
		}
		if rerr != nil {
			msg := fmt.Sprintf("%d of %d ranks not recovered (ranks %s)", len(missing), ds.Ranks, rankList(missing))
			if len(why) > 0 {
				msg += fmt.Sprintf(" (rank %d: %s)", firstKey(why), why[firstKey(why)])
			}
			return nil, fmt.Errorf("%s; the rest of the dataset is in the prefix, recorded incomplete; %w", msg, rerr)
		}
		for r, fs := range files {
			perRank[r], recovered[r] = fs, true
		}
		if err := flush.CommitScavenged(ctx, o.Prefix, *ds, perRank, recovered); err != nil {
			return nil, fmt.Errorf("after rebuilding ranks %s: %w", rankList(rebuilt), err)
		}
	}
	if err := prefix.UpdateFlush(ctx, o.Prefix, func(s *prefix.FlushState) error {
		if fe := s.Get(e.ID); fe != nil {
			fe.Set(prefix.LocPFS, true)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return rebuilt, nil
}

func firstKey(m map[int]string) int {
	k := -1
	for r := range m {
		if k < 0 || r < k {
			k = r
		}
	}
	return k
}

func sortedNodeKeys(m map[string]NodeScavenge) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rankList prints ranks compactly, at most 10 of them.
func rankList(r []int) string {
	var b strings.Builder
	for i, x := range r {
		if i == 10 {
			fmt.Fprintf(&b, ",... (%d more)", len(r)-10)
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}

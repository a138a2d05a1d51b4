package jobrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/remote"
)

// Copier copies what the caches of nodes hold of dataset id into the prefix
// (files to their original paths, the dataset's filemaps and redundancy files
// to <prefix>/.scr/scr.dataset.<id>/), checking CRCs where recorded. It
// returns one error per node that failed; a node failing is not fatal by
// itself: the rebuild may fill the gap.
type Copier interface {
	CopyDataset(ctx context.Context, nodes []string, id int64) map[string]error
}

// ErrNoCopier is returned when scavenge has no per-node copy routine.
var ErrNoCopier = errors.New("no per-node copy routine: scr_postrun cannot read the node caches in this build (the library's copy command is not wired in yet); the datasets listed stay in cache only")

// RemoteCopier runs a copy command on every node at once through a remote
// transport, with bounded fan-out and a per-node timeout (package remote).
type RemoteCopier struct {
	Transport remote.Transport
	// Argv is the command one node runs to copy its part of dataset id.
	Argv    func(id int64) []string
	Options remote.Options
}

// CopyDataset implements Copier.
func (c RemoteCopier) CopyDataset(ctx context.Context, nodes []string, id int64) map[string]error {
	errs := map[string]error{}
	for _, r := range remote.Run(ctx, c.Transport, nodes, c.Argv(id), c.Options) {
		if r.Err != nil {
			errs[r.Node] = r.Err
		} else if r.ExitCode != 0 {
			errs[r.Node] = fmt.Errorf("copy of dataset %d on %s exited %d: %s", id, r.Node, r.ExitCode, firstLine(r.Stderr))
		}
	}
	return errs
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

// ScavengeOptions configure Scavenge.
type ScavengeOptions struct {
	Prefix    string
	Nodes     []string // the healthy nodes whose caches are read
	Copier    Copier   // nil: ErrNoCopier for any dataset that needs a copy
	Rebuilder prefix.Rebuilder
	Log       io.Writer
	Now       func() time.Time
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
	Scavenged  []int64 // datasets copied to the prefix, complete
	Failed     map[int64]string
	Current    string // checkpoint now current in the index ("" if none chosen)
	Checkpoint int64  // its id (0 if none)
	NodeErrors map[string]string
}

// Scavenge copies the datasets that only live in cache to the prefix:
// every output that needs a flush (oldest first, stopping at the first one
// that cannot be completed), then the newest checkpoint that can be made
// complete (older than a failed output), which becomes current. A dataset is
// complete when every file its metadata lists is in the prefix, rebuilt from
// redundancy where a node is gone (prefix.BuildDataset with the Rebuilder).
func Scavenge(ctx context.Context, o ScavengeOptions) (ScavengeResult, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	res := ScavengeResult{Failed: map[int64]string{}, NodeErrors: map[string]string{}}
	st, err := prefix.ReadFlush(o.Prefix)
	if err != nil {
		return res, fmt.Errorf("scavenge: read flush state: %w", err)
	}
	entries := st.Entries()
	byID := map[int64]*prefix.FlushEntry{}
	for _, e := range entries {
		byID[e.ID] = e
	}
	plan := PlanScavenge(entries)
	logf := func(format string, a ...any) {
		fmt.Fprintf(o.Log, "scr_postrun: %s: %s\n", o.Now().UTC().Format(logTime), fmt.Sprintf(format, a...))
	}
	if len(plan.Outputs) == 0 && len(plan.Checkpoints) == 0 {
		logf("nothing to scavenge: no dataset in cache needs a flush")
		return res, nil
	}
	var firstErr error
	one := func(id int64) bool {
		e := byID[id]
		rebuilt, err := scavengeOne(ctx, o, e, res.NodeErrors)
		if err != nil {
			res.Failed[id] = err.Error()
			logf("dataset %d (%s): %v", id, e.Name, err)
			if firstErr == nil {
				firstErr = err
			}
			return false
		}
		res.Scavenged = append(res.Scavenged, id)
		logf("dataset %d (%s) scavenged to the prefix%s", id, e.Name, map[bool]string{true: ", rebuilt from redundancy", false: ""}[rebuilt])
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

// scavengeOne copies dataset e from the nodes' caches and builds it in the
// prefix. It reports whether redundancy had to fill gaps.
func scavengeOne(ctx context.Context, o ScavengeOptions, e *prefix.FlushEntry, nodeErrs map[string]string) (bool, error) {
	if err := os.MkdirAll(prefix.DatasetDir(o.Prefix, e.ID), 0o700); err != nil {
		return false, err
	}
	if o.Copier == nil {
		return false, ErrNoCopier
	}
	if len(o.Nodes) == 0 {
		return false, errors.New("no healthy node to read a cache from")
	}
	errs := o.Copier.CopyDataset(ctx, o.Nodes, e.ID)
	for n, err := range errs {
		nodeErrs[n] = err.Error()
	}
	before, err := prefix.CheckDataset(ctx, o.Prefix, e.ID)
	if err != nil {
		return false, fmt.Errorf("check after copying from %d nodes (%d failed): %w", len(o.Nodes), len(errs), err)
	}
	chk, err := prefix.BuildDataset(ctx, o.Prefix, e.ID, o.Rebuilder, o.Now())
	if err != nil {
		return false, err
	}
	if !chk.Complete() {
		return false, fmt.Errorf("%d files still missing after the rebuild (first: %v); copy failed on %d nodes", len(chk.Missing), chk.Missing[0], len(errs))
	}
	if err := prefix.UpdateFlush(ctx, o.Prefix, func(s *prefix.FlushState) error {
		if fe := s.Get(e.ID); fe != nil {
			fe.Set(prefix.LocPFS, true)
		}
		return nil
	}); err != nil {
		return false, err
	}
	return !before.Complete(), nil
}

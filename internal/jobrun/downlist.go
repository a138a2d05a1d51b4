package jobrun

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/scr-go/scr/internal/nodecheck"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
)

// BasicDownLister is the down-node list scr_run uses until the full node
// checks (internal/nodecheck) are wired in: the sticky list, the user's
// exclusions (SCR_EXCLUDE_NODES), the resource manager's down list, and a
// ping of every remaining node when the manager has its own Pinger (the
// local cluster). Pings run in parallel with bounded fan-out and a timeout.
type BasicDownLister struct {
	Manager     rm.Manager
	Exclude     []string      // SCR_EXCLUDE_NODES, expanded
	PingTimeout time.Duration // default 2 s
	Fanout      int           // default remote.DefaultFanout
}

// DownNodes implements DownLister. When the resource manager cannot
// answer, the list of the other checks comes back with its error.
func (b BasicDownLister) DownNodes(ctx context.Context, nodes []string, sticky map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for n, why := range sticky {
		out[n] = why
	}
	in := map[string]bool{}
	for _, n := range nodes {
		in[n] = true
	}
	for _, n := range b.Exclude {
		if _, ok := out[n]; !ok && in[n] {
			out[n] = "User excluded via SCR_EXCLUDE_NODES"
		}
	}
	var rmErr error
	if b.Manager != nil {
		down, err := b.Manager.DownNodes(ctx)
		if err != nil {
			rmErr = fmt.Errorf("resource manager %s: %w", b.Manager.Name(), err)
		}
		for n, why := range down {
			if _, ok := out[n]; !ok && in[n] {
				out[n] = "Reported down by resource manager: " + why
			}
		}
	}
	if p, ok := b.Manager.(rm.Pinger); ok {
		var rest []string
		for _, n := range nodes {
			if _, down := out[n]; !down {
				rest = append(rest, n)
			}
		}
		timeout := b.PingTimeout
		if timeout <= 0 {
			timeout = 2 * time.Second
		}
		fan := b.Fanout
		if fan <= 0 {
			fan = remote.DefaultFanout
		}
		var mu sync.Mutex
		remote.Each(ctx, len(rest), fan, func(ctx context.Context, i int) {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := p.Ping(pctx, rest[i]); err != nil && ctx.Err() == nil {
				mu.Lock()
				out[rest[i]] = "Failed to ping: " + err.Error()
				mu.Unlock()
			}
		})
	}
	// The manager's error is returned with the list: the other checks
	// still count, and the caller says that the manager did not answer.
	return out, rmErr
}

// NodecheckLister is the full down-node decision of internal/nodecheck
// (resource manager, SCR_EXCLUDE_NODES, ping, remote echo, storage) behind
// the DownLister interface. Known down nodes are passed as "specified" and
// keep their first reason.
type NodecheckLister struct {
	Manager rm.Manager
	Exclude []string
	Options nodecheck.Options
}

// DownNodes implements DownLister. A resource manager that did not answer
// is returned as the error, with the list the other checks produced.
func (l NodecheckLister) DownNodes(ctx context.Context, nodes []string, sticky map[string]string) (map[string]string, error) {
	rep, err := nodecheck.Check(ctx, nodecheck.Request{
		Nodes: nodes, Specified: sortedKeys(sticky), Excluded: l.Exclude, Manager: l.Manager, Options: l.Options,
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(rep.Down)+len(sticky))
	for n, why := range rep.Down {
		out[n] = why
	}
	for n, why := range sticky {
		out[n] = why
	}
	return out, rep.RMErr
}

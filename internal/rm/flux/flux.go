// Package flux is the Flux adapter of the resource-manager contract
// (internal/rm).
//
// What it asks Flux (flux-core 0.88; every form below is checked against
// output captured from a real 3-node instance, testdata/README.md):
//
//   - job id: FLUX_JOB_ID, else `flux getattr jobid` (the batch script of a
//     `flux alloc`/`flux batch` runs in the nested instance, where
//     FLUX_JOB_ID is unset and the attribute names the allocation). In a
//     system instance outside any job both are absent and JobID is "".
//   - nodes: `flux hostlist FLUX_JOB_ID` when FLUX_JOB_ID is set, else
//     `flux hostlist instance`. Both keep a lost node in the list.
//   - down nodes: the union of `flux resource status -s offline -no
//     {nodelist}` and `flux resource status -s torpid,drain,exclude -no
//     {nodelist}`, run concurrently. NOT `flux resource list -s down`: in a
//     nested instance it never reports a lost node (the node just vanishes
//     from the list), and NOT one query `-s offline,torpid,drain,exclude`:
//     offline is a modifier there and that query is always empty.
//   - end time: `flux job timeleft [FLUX_JOB_ID]`, whole seconds from now;
//     4294967295 means no limit.
//   - remote execution: `flux exec -r RANK`, where RANK is the host's index
//     in `flux hostlist instance` (the instance's hosts in broker-rank order).
package flux

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
)

func init() {
	rm.Register(rm.Adapter{
		Name:    "FLUX",
		Order:   10,
		Present: func(env rm.Env) bool { return env.Get("FLUX_URI") != "" },
		New:     func(ctx context.Context, cfg rm.Config) (rm.Manager, error) { return New(ctx, cfg) },
	})
}

// noLimit is what `flux job timeleft` prints for a job without a time
// limit (UINT32_MAX).
const noLimit = 4294967295

// Manager is the Flux view of the allocation.
type Manager struct {
	cfg   rm.Config
	jobID string // FLUX_JOB_ID or the instance's jobid attribute
	envID bool   // jobID came from FLUX_JOB_ID (we are a job of the instance)

	mu    sync.Mutex
	lists map[string][]string // hostlist answers: they do not change during an allocation
}

// New reads the job id (see the package doc) and returns the manager.
func New(ctx context.Context, cfg rm.Config) (*Manager, error) {
	cfg = cfg.WithDefaults()
	m := &Manager{cfg: cfg}
	if id := strings.TrimSpace(cfg.Env.Get("FLUX_JOB_ID")); id != "" {
		m.jobID, m.envID = id, true
		return m, nil
	}
	out, err := cfg.Run(ctx, []string{"flux", "getattr", "jobid"})
	if err == nil {
		m.jobID = strings.TrimSpace(string(out))
	}
	// An error here is the system instance outside any job: no id.
	return m, nil
}

// Name implements rm.Manager.
func (m *Manager) Name() string { return "flux" }

// JobID implements rm.Manager.
func (m *Manager) JobID() string { return m.jobID }

// hostlist runs `flux hostlist WHAT` once per manager (an instance's or a
// job's hosts are fixed for its life; a lost node stays in the list) and
// caches the answer, so Nodes, DownNodes and Transport cost one query.
func (m *Manager) hostlist(ctx context.Context, what string) ([]string, error) {
	m.mu.Lock()
	cached, ok := m.lists[what]
	m.mu.Unlock()
	if ok {
		return append([]string(nil), cached...), nil
	}
	hosts, err := m.queryHostlist(ctx, what)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.lists == nil {
		m.lists = map[string][]string{}
	}
	m.lists[what] = hosts
	m.mu.Unlock()
	return append([]string(nil), hosts...), nil
}

func (m *Manager) queryHostlist(ctx context.Context, what string) ([]string, error) {
	out, err := m.cfg.Run(ctx, []string{"flux", "hostlist", what})
	if err != nil {
		return nil, fmt.Errorf("flux: node list: %w", err)
	}
	hosts, err := hostlist.Expand(strings.TrimSpace(string(out)))
	if err != nil {
		return nil, fmt.Errorf("flux: `flux hostlist %s` printed an unreadable list: %w", what, err)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("flux: `flux hostlist %s` printed no hosts: %w", what, rm.ErrNotAllocated)
	}
	return hostlist.Dedupe(hosts), nil
}

// Nodes implements rm.Manager.
func (m *Manager) Nodes(ctx context.Context) ([]string, error) {
	if m.envID {
		return m.hostlist(ctx, m.jobID)
	}
	return m.hostlist(ctx, "instance")
}

// DownNodes implements rm.Manager.
func (m *Manager) DownNodes(ctx context.Context) (map[string]string, error) {
	queries := []struct {
		argv   []string
		reason string
	}{
		{[]string{"flux", "resource", "status", "-s", "offline", "-no", "{nodelist}"}, "flux: offline (broker lost or not started)"},
		{[]string{"flux", "resource", "status", "-s", "torpid,drain,exclude", "-no", "{nodelist}"}, "flux: torpid, drained or excluded"},
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		down  = map[string]string{}
		nodes []string
		nerr  error
	)
	wg.Add(len(queries) + 1)
	go func() { defer wg.Done(); nodes, nerr = m.Nodes(ctx) }()
	for _, q := range queries {
		go func() { // ends when the runner returns (bounded by ctx and the command timeout)
			defer wg.Done()
			out, err := m.cfg.Run(ctx, q.argv)
			var hosts []string
			if err == nil {
				hosts, err = hostlist.Expand(strings.Join(rm.Lines(out), ","))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("flux: down nodes: %w", err)
				}
				return
			}
			for _, h := range hosts {
				if _, dup := down[h]; !dup {
					down[h] = q.reason
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if nerr != nil {
		return nil, nerr
	}
	return rm.OnlyNodes(down, nodes), nil
}

// EndTime implements rm.Manager.
func (m *Manager) EndTime(ctx context.Context) (int64, error) {
	argv := []string{"flux", "job", "timeleft"}
	if m.envID {
		argv = append(argv, m.jobID)
	}
	out, err := m.cfg.Run(ctx, argv)
	if err != nil {
		return 0, fmt.Errorf("flux: end time: %w", err)
	}
	s := strings.TrimSpace(string(out))
	secs, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("flux: end time: `%s` printed %q, not whole seconds", strings.Join(argv, " "), s)
	}
	if secs >= noLimit {
		return -1, nil
	}
	return m.cfg.Now().Unix() + secs, nil
}

// Transport implements rm.Manager: flux exec by broker rank.
func (m *Manager) Transport(ctx context.Context) (remote.Transport, error) {
	hosts, err := m.hostlist(ctx, "instance")
	if err != nil {
		return nil, err
	}
	ranks := make(map[string]int, len(hosts))
	for i, h := range hosts {
		ranks[h] = i
	}
	return remote.FluxExec{Ranks: ranks}, nil
}

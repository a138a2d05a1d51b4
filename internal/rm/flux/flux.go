// Package flux is the Flux adapter of the resource-manager contract
// (internal/rm).
//
// What it asks Flux (flux-core 0.88; every form below is checked against
// output captured from a real 3-node instance, testdata/README.md):
//
//   - job id: the allocation, never a step. Inside a `flux batch`/`flux
//     alloc` every `flux run` is a job of its own with its own FLUX_JOB_ID;
//     the allocation is the instance they run in. So: the next-to-last id
//     of FLUX_JOB_ID_PATH (a task), else FLUX_ENCLOSING_ID (the batch
//     script), else `flux getattr jobid` (the instance's own job id), else
//     FLUX_JOB_ID (a job of the system instance is its own allocation). In
//     a system instance outside any job there is none and JobID is "".
//     Written in one canonical spelling, F58 with an ASCII "f"
//     (internal/jobid), so it names the same cache as the library does.
//   - nodes: `flux hostlist instance`, or `flux hostlist FLUX_JOB_ID` for a
//     job of the system instance. Both keep a lost node in the list.
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
	"github.com/scr-go/scr/internal/jobid"
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
	cfg    rm.Config
	jobID  string // the allocation (canonical spelling)
	envID  bool   // the allocation is our own job of the system instance
	jobArg string // that job's id as the environment spells it (flux arguments)

	mu    sync.Mutex
	lists map[string][]string // hostlist answers: they do not change during an allocation
}

// New reads the job id (see the package doc) and returns the manager.
func New(ctx context.Context, cfg rm.Config) (*Manager, error) {
	cfg = cfg.WithDefaults()
	m := &Manager{cfg: cfg}
	own := strings.TrimSpace(cfg.Env.Get("FLUX_JOB_ID"))
	path := jobid.FluxPath(cfg.Env.Get("FLUX_JOB_ID_PATH"))
	switch {
	case len(path) >= 2: // a task of a job inside an allocation
		m.jobID = jobid.Flux(path[len(path)-2])
	case len(path) == 1: // a task of a job of the system instance
		m.jobID, m.envID, m.jobArg = jobid.Flux(path[0]), true, path[0]
	case strings.TrimSpace(cfg.Env.Get("FLUX_ENCLOSING_ID")) != "": // the batch script
		m.jobID = jobid.Flux(cfg.Env.Get("FLUX_ENCLOSING_ID"))
	default:
		out, err := cfg.Run(ctx, []string{"flux", "getattr", "jobid"})
		switch {
		case err == nil && strings.TrimSpace(string(out)) != "":
			m.jobID = jobid.Flux(string(out))
		case own != "":
			m.jobID, m.envID, m.jobArg = jobid.Flux(own), true, own
		}
		// Otherwise: the system instance outside any job, no id.
	}
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
		return m.hostlist(ctx, m.jobArg)
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
		argv = append(argv, m.jobArg)
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

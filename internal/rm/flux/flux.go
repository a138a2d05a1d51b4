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
//   - nodes: the instance's `flux getattr hostlist` (a C builtin; else
//     `flux hostlist instance`, Python), or `flux hostlist FLUX_JOB_ID` for
//     a job of the system instance. All keep a lost node in the list.
//   - down nodes: one query, `flux resource status -no "{state} {ranks}
//     {nodelist}"`, which prints a line per state of the default set
//     (avail, exclude, draining, drained, torpid, housekeeping) and online
//     status: a state ending in "*" is offline (broker lost or not
//     started); exclude, draining, drained and torpid are down too. NOT
//     `flux resource list -s down`: in a nested instance it never reports
//     a lost node (the node just vanishes from the list), and NOT
//     `-s offline,torpid,drain,exclude`: offline is a modifier there and
//     that query is always empty. One process, not one per state: each
//     flux command is a Python start-up, 0.2 s on an idle node and over
//     1 s on a loaded one, and the answer is waited for 2 s at most.
//   - end time: `flux job timeleft [FLUX_JOB_ID]`, whole seconds from now;
//     4294967295 means no limit.
//   - remote execution: `flux exec -r RANK`, where RANK is the host's index
//     in the instance's host list (hosts in broker-rank order).
package flux

import (
	"context"
	"errors"
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
	var out []byte
	err := errors.New("no query")
	if what == "instance" {
		// The broker's hostlist attribute is the instance's hosts in rank
		// order, as `flux hostlist instance` prints them, without a Python
		// start-up (which took over the 2 s bound on a loaded node, and
		// scr_list_down_nodes cannot check anything without the list).
		out, err = m.cfg.Run(ctx, []string{"flux", "getattr", "hostlist"})
	}
	if err != nil {
		out, err = m.cfg.Run(ctx, []string{"flux", "hostlist", what})
	}
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

// statusArgv is the down-node query (see the package doc).
var statusArgv = []string{"flux", "resource", "status", "-no", "{state} {ranks} {nodelist}"}

// DownNodes implements rm.Manager.
func (m *Manager) DownNodes(ctx context.Context) (map[string]string, error) {
	var (
		wg    sync.WaitGroup
		nodes []string
		nerr  error
	)
	wg.Add(1)
	go func() { defer wg.Done(); nodes, nerr = m.Nodes(ctx) }() // ends with the runner (bounded)
	out, err := m.cfg.Run(ctx, statusArgv)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("flux: down nodes: %w", err)
	}
	down, err := parseStatus(out)
	if err != nil {
		return nil, fmt.Errorf("flux: down nodes: `%s`: %w", strings.Join(statusArgv, " "), err)
	}
	if nerr != nil {
		return nil, nerr
	}
	return rm.OnlyNodes(down, nodes), nil
}

// parseStatus reads `flux resource status -no "{state} {ranks}
// {nodelist}"`: one line per state ("avail", "avail*" when offline,
// "drained", ...), its ranks and its nodes (both empty for an empty
// "draining"/"drained" line).
func parseStatus(out []byte) (map[string]string, error) {
	down := map[string]string{}
	for _, line := range rm.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue // a state with no node
		}
		state := f[0]
		var reason string
		switch base := strings.TrimSuffix(state, "*"); {
		case base != state:
			reason = "flux: offline (broker lost or not started)"
		case base == "exclude":
			reason = "flux: excluded"
		case base == "draining" || base == "drained" || base == "torpid":
			reason = "flux: " + base
		default: // avail, housekeeping, allocated: usable
			continue
		}
		hosts, err := hostlist.Expand(f[2])
		if err != nil {
			return nil, fmt.Errorf("unreadable node list in %q: %w", line, err)
		}
		for _, h := range hosts {
			if _, seen := down[h]; !seen || strings.Contains(reason, "offline") {
				down[h] = reason
			}
		}
	}
	return down, nil
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

// Transport implements rm.Manager: flux exec by broker rank (the host's
// index in the instance's host list).
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

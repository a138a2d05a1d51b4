// Package local is the resource manager of scr-go's simulated cluster on
// one machine (the local launcher, scr_launch): every "node" is a name, its
// node-local storage is a directory, and its processes run here.
//
//   - job id: SCR_JOB_ID, else "defjobid": the library's own default
//     (internal/jobid), so that scr_run and the ranks it launches name the
//     same cache whether or not scr_run exported SCR_JOB_ID.
//   - nodes: SCR_NODELIST (a host list), expanded, in order.
//   - node storage: <root>/<node>/shm, where root is SCR_LOCAL_ROOT; a
//     node's commands get SCR_NODE_NAME=<node> and SCR_CACHE_BASE and
//     SCR_CNTL_BASE set to that directory (doc/seams.md section 3).
//   - failures are simulated with marker files in <root>/<node>/:
//     "down" means the resource manager knows the node is down (DownNodes
//     reports it, with the file's first line as the reason); "poweroff"
//     means the node vanished silently: the resource manager does not know,
//     Ping fails after one second (like ping -W1) and remote commands hang
//     until their timeout, as with a real powered-off node.
//   - without SCR_LOCAL_ROOT there is no simulated cluster: the nodes of
//     SCR_NODELIST are real hosts, pinged for real and reached by ssh.
//   - end time: SCR_END_TIME (Unix seconds) if set, else -1 (no limit).
package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"

	"github.com/scr-go/scr/internal/jobid"
)

// Marker files (see the package doc).
const (
	DownFile     = "down"
	PowerOffFile = "poweroff"
)

func init() {
	rm.Register(rm.Adapter{
		Name:    "LOCAL",
		Order:   90,
		Present: func(env rm.Env) bool { return env.Get("SCR_NODELIST") != "" },
		New:     func(ctx context.Context, cfg rm.Config) (rm.Manager, error) { return New(cfg) },
	})
}

// Manager is the local cluster's view.
type Manager struct {
	cfg   rm.Config
	jobID string
	list  string
	root  string
}

// New reads SCR_JOB_ID, SCR_NODELIST and SCR_LOCAL_ROOT.
func New(cfg rm.Config) (*Manager, error) {
	cfg = cfg.WithDefaults()
	m := &Manager{cfg: cfg, jobID: cfg.Env.Get("SCR_JOB_ID"), list: cfg.Env.Get("SCR_NODELIST"), root: cfg.Env.Get("SCR_LOCAL_ROOT")}
	if m.jobID == "" {
		m.jobID = jobid.Default
	}
	return m, nil
}

// Name implements rm.Manager.
func (m *Manager) Name() string { return "local" }

// JobID implements rm.Manager.
func (m *Manager) JobID() string { return m.jobID }

// Root is the directory holding one directory per node ("" if unset).
func (m *Manager) Root() string { return m.root }

// NodeBase is the node's storage base (<root>/<node>/shm), "" without root.
func (m *Manager) NodeBase(node string) string {
	if m.root == "" {
		return ""
	}
	return filepath.Join(m.root, node, "shm")
}

// Nodes implements rm.Manager.
func (m *Manager) Nodes(ctx context.Context) ([]string, error) {
	if strings.TrimSpace(m.list) == "" {
		return nil, fmt.Errorf("local: SCR_NODELIST is empty: %w", rm.ErrNotAllocated)
	}
	h, err := hostlist.Expand(m.list)
	if err != nil {
		return nil, fmt.Errorf("local: SCR_NODELIST: %w", err)
	}
	return hostlist.Dedupe(h), nil
}

func (m *Manager) marker(node, name string) string {
	return filepath.Join(m.root, node, name)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// DownNodes implements rm.Manager.
func (m *Manager) DownNodes(ctx context.Context) (map[string]string, error) {
	nodes, err := m.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	down := map[string]string{}
	if m.root == "" {
		return down, nil
	}
	for _, n := range nodes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("local: down nodes: %w", err)
		}
		p := m.marker(n, DownFile)
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("local: node %s: %w", n, err)
		}
		sc := bufio.NewScanner(f)
		why := "marked down"
		if sc.Scan() && strings.TrimSpace(sc.Text()) != "" {
			why = strings.TrimSpace(sc.Text())
		}
		f.Close()
		down[n] = "local: " + why
	}
	return down, nil
}

// EndTime implements rm.Manager.
func (m *Manager) EndTime(ctx context.Context) (int64, error) {
	s := m.cfg.Env.Get("SCR_END_TIME")
	if s == "" {
		return -1, nil
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < -1 {
		return 0, fmt.Errorf("local: SCR_END_TIME=%q: want Unix seconds", s)
	}
	return v, nil
}

// pingHost pings a real host once (ping -c1 -W1).
var pingHost = func(ctx context.Context, node string) error {
	ctx, cancel := context.WithTimeout(ctx, PingWait+time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ping", "-c1", "-W1", "--", node).CombinedOutput()
	if err != nil {
		return fmt.Errorf("local: %s does not answer ping (SCR_LOCAL_ROOT is not set, so SCR_NODELIST names real hosts): %v: %s", node, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PingWait is how long Ping waits for a powered-off node before failing,
// like `ping -c1 -W1`.
const PingWait = time.Second

// Ping implements rm.Pinger: a powered-off node never answers, and Ping
// gives up after PingWait or when ctx ends. Without SCR_LOCAL_ROOT there is
// no simulated cluster: SCR_NODELIST then names real hosts, and they are
// pinged for real (ping -c1 -W1), so a host that does not exist or is off
// is never reported healthy.
func (m *Manager) Ping(ctx context.Context, node string) error {
	if m.root == "" {
		return pingHost(ctx, node)
	}
	if exists(m.marker(node, PowerOffFile)) {
		t := time.NewTimer(PingWait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("local: node %s: no answer (%w)", node, context.Cause(ctx))
		case <-t.C:
			return fmt.Errorf("local: node %s: no answer within %v", node, PingWait)
		}
	}
	if !exists(filepath.Join(m.root, node)) {
		return fmt.Errorf("local: node %s: no such node (no %s)", node, filepath.Join(m.root, node))
	}
	return nil
}

// Transport implements rm.Manager: commands run here with the node's
// environment; a powered-off node's commands hang (until remote's timeout).
func (m *Manager) Transport(ctx context.Context) (remote.Transport, error) {
	return transport{m}, nil
}

type transport struct{ m *Manager }

func (t transport) Name() string { return "local" }

func (t transport) Command(node string, argv []string) (remote.Cmd, error) {
	if t.m.root == "" {
		// Real hosts (see Ping): reach them as without a resource manager.
		return remote.SSH{}.Command(node, argv)
	}
	if exists(t.m.marker(node, PowerOffFile)) {
		return remote.Cmd{Path: "sleep", Args: []string{"86400"}}, nil
	}
	env := []string{"SCR_NODE_NAME=" + node}
	if b := t.m.NodeBase(node); b != "" {
		env = append(env, "SCR_CACHE_BASE="+b, "SCR_CNTL_BASE="+b)
	}
	return remote.Local{NodeEnv: func(string) []string { return env }}.Command(node, argv)
}

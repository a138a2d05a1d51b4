// Package slurm is the Slurm adapter of the resource-manager contract
// (internal/rm).
//
//   - job id: SLURM_JOB_ID (else the older SLURM_JOBID).
//   - nodes: SLURM_JOB_NODELIST (else SLURM_NODELIST), expanded.
//   - down nodes: `sinfo -h -o %N|%T|%E -n <job nodes>`. sinfo groups nodes
//     that share a state and reason, and %N prints each group as a
//     compressed host list ("n[3-5]"), which is expanded here (SCR split it
//     on commas only and so missed every node inside a range). Per the
//     sinfo(1) man page (https://slurm.schedmd.com/sinfo.html, "NODE STATE
//     CODES"), %T is the long state name, with a suffix '*' when the node is
//     not responding ('~' powered off, '#' powering up, '%' powering down,
//     '!' pending power down, '$' maintenance, '@' pending reboot, '^'
//     reboot issued, '-' planned); several flags join with '+'
//     ("idle+drain"). %E is the reason an admin or slurmctld gave.
//     A node counts as down if it is not responding or powered off ('*',
//     '~'; a node of our allocation should be neither), or its state is down,
//     drained, fail, failing or powered down. "draining" does not count: the
//     node still runs our job and an admin only asked for it back.
//   - end time: `scontrol --oneliner show job <id>`: EndTime=YYYY-MM-DDTHH:MM:SS
//     in the local time zone; "Unknown" -> 0; TimeLimit=UNLIMITED -> -1
//     (scontrol(1), https://slurm.schedmd.com/scontrol.html).
//   - remote execution: `srun -N1 -n1 -w NODE --overlap --jobid=<id>`.
package slurm

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
)

func init() {
	rm.Register(rm.Adapter{
		Name:  "SLURM",
		Order: 20,
		Present: func(env rm.Env) bool {
			return env.Get("SLURM_JOB_ID") != "" || env.Get("SLURM_JOBID") != ""
		},
		New: func(ctx context.Context, cfg rm.Config) (rm.Manager, error) { return New(cfg) },
	})
}

// Manager is the Slurm view of the allocation.
type Manager struct {
	cfg   rm.Config
	jobID string
	list  string // SLURM_JOB_NODELIST as given
}

// New reads the job id and node list from cfg.Env.
func New(cfg rm.Config) (*Manager, error) {
	cfg = cfg.WithDefaults()
	m := &Manager{cfg: cfg}
	m.jobID = cfg.Env.Get("SLURM_JOB_ID")
	if m.jobID == "" {
		m.jobID = cfg.Env.Get("SLURM_JOBID")
	}
	m.list = cfg.Env.Get("SLURM_JOB_NODELIST")
	if m.list == "" {
		m.list = cfg.Env.Get("SLURM_NODELIST")
	}
	return m, nil
}

// Name implements rm.Manager.
func (m *Manager) Name() string { return "slurm" }

// JobID implements rm.Manager.
func (m *Manager) JobID() string { return m.jobID }

// Nodes implements rm.Manager.
func (m *Manager) Nodes(ctx context.Context) ([]string, error) {
	if strings.TrimSpace(m.list) == "" {
		return nil, fmt.Errorf("slurm: job %s: SLURM_JOB_NODELIST is empty: %w", m.jobID, rm.ErrNotAllocated)
	}
	h, err := hostlist.Expand(m.list)
	if err != nil {
		return nil, fmt.Errorf("slurm: SLURM_JOB_NODELIST: %w", err)
	}
	return hostlist.Dedupe(h), nil
}

// downStates are the sinfo long state names that make a node unusable.
var downStates = map[string]bool{
	"down": true, "drained": true, "fail": true, "failing": true,
	"powered_down": true, "powering_down": true, "power_down": true,
}

// classify returns why a node in sinfo state st (a %T value) is down, or ""
// if it is usable.
func classify(st string) string {
	st = strings.ToLower(strings.TrimSpace(st))
	// '*' not responding, '~' powered off: either way it cannot run our ranks.
	notResponding := strings.ContainsAny(st, "*~")
	var bad []string
	for _, part := range strings.Split(st, "+") {
		base := strings.TrimRight(part, "*~#!%$@^-")
		if downStates[base] {
			bad = append(bad, base)
		}
	}
	if notResponding || len(bad) > 0 {
		return st
	}
	return ""
}

// ParseSinfo reads `sinfo -h -o %N|%T|%E` output into node -> reason for the
// down nodes.
func ParseSinfo(out []byte) (map[string]string, error) {
	down := map[string]string{}
	for _, line := range rm.Lines(out) {
		f := strings.SplitN(line, "|", 3)
		if len(f) < 2 {
			return nil, fmt.Errorf("slurm: sinfo line %q: want NODES|STATE|REASON", line)
		}
		st := classify(f[1])
		if st == "" {
			continue
		}
		reason := "slurm: " + st
		if len(f) == 3 {
			if r := strings.TrimSpace(f[2]); r != "" && r != "none" {
				reason += ": " + r
			}
		}
		hosts, err := hostlist.Expand(f[0])
		if err != nil {
			return nil, fmt.Errorf("slurm: sinfo node list: %w", err)
		}
		for _, h := range hosts {
			down[h] = reason
		}
	}
	return down, nil
}

// DownNodes implements rm.Manager.
func (m *Manager) DownNodes(ctx context.Context) (map[string]string, error) {
	nodes, err := m.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out, err := m.cfg.Run(ctx, []string{"sinfo", "-h", "-o", "%N|%T|%E", "-n", hostlist.Compress(nodes)})
	if err != nil {
		return nil, fmt.Errorf("slurm: down nodes of job %s: %w", m.jobID, err)
	}
	down, err := ParseSinfo(out)
	if err != nil {
		return nil, err
	}
	return rm.OnlyNodes(down, nodes), nil
}

// ParseEndTime reads `scontrol --oneliner show job` output.
func ParseEndTime(out []byte, loc *time.Location) (int64, error) {
	fields := map[string]string{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			if _, seen := fields[k]; !seen {
				fields[k] = v
			}
		}
	}
	if strings.EqualFold(fields["TimeLimit"], "UNLIMITED") {
		return -1, nil
	}
	end, ok := fields["EndTime"]
	if !ok {
		return 0, fmt.Errorf("slurm: scontrol show job printed no EndTime")
	}
	if end == "" || strings.EqualFold(end, "Unknown") || end == "None" {
		return 0, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05", end, loc)
	if err != nil {
		return 0, fmt.Errorf("slurm: EndTime=%s: %w", end, err)
	}
	return t.Unix(), nil
}

// EndTime implements rm.Manager.
func (m *Manager) EndTime(ctx context.Context) (int64, error) {
	if m.jobID == "" {
		return 0, nil
	}
	out, err := m.cfg.Run(ctx, []string{"scontrol", "--oneliner", "show", "job", m.jobID})
	if err != nil {
		return 0, fmt.Errorf("slurm: end time of job %s: %w", m.jobID, err)
	}
	return ParseEndTime(out, time.Local)
}

// Transport implements rm.Manager: one-task srun steps.
func (m *Manager) Transport(ctx context.Context) (remote.Transport, error) {
	return remote.Srun{JobID: m.jobID}, nil
}

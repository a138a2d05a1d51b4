// Package lsf is the IBM Spectrum LSF adapter of the resource-manager
// contract (internal/rm).
//
//   - job id: LSB_JOBID.
//   - nodes: the hosts of LSB_DJOB_HOSTFILE (one line per slot) without its
//     first line, which on LSF/jsrun systems is the launch node where the
//     batch script runs (SCR issue #143); repeats dropped, order kept.
//     Without that file, LSB_MCPU_HOSTS ("hostA 1 hostB 40 hostC 40": host,
//     slot-count pairs) without its first host.
//   - down nodes: `bhosts -w <hosts>`; the STATUS column (second) of each
//     host row. Format and meanings from IBM's "Host status" page
//     (https://www.ibm.com/docs/SSWRJV_10.1.0/lsf_admin/host_status_lsf.html):
//     header "HOST_NAME STATUS JL/U MAX NJOBS RUN SSUSP USUSP RSV", then one
//     row per host; "unavail" = host down or LIM and sbatchd unreachable,
//     "unreach" = LIM runs but sbatchd is unreachable; "ok" and the
//     "closed*" states (full, exclusive, admin-closed: no *new* jobs) leave
//     running jobs alone and are not down.
//   - end time: `bjobs -noheader -o time_left <id>`: "-" when the job has no
//     run limit (-> -1), else "H:MM" followed by a letter (as SCR parsed it).
//   - remote execution: ssh (BatchMode), as SCR used pdsh there.
package lsf

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
)

func init() {
	rm.Register(rm.Adapter{
		Name:    "LSF",
		Order:   30,
		Present: func(env rm.Env) bool { return env.Get("LSB_JOBID") != "" },
		New:     func(ctx context.Context, cfg rm.Config) (rm.Manager, error) { return New(cfg) },
	})
}

// Manager is the LSF view of the allocation.
type Manager struct {
	cfg   rm.Config
	jobID string
}

// New reads LSB_JOBID.
func New(cfg rm.Config) (*Manager, error) {
	cfg = cfg.WithDefaults()
	return &Manager{cfg: cfg, jobID: cfg.Env.Get("LSB_JOBID")}, nil
}

// Name implements rm.Manager.
func (m *Manager) Name() string { return "lsf" }

// JobID implements rm.Manager.
func (m *Manager) JobID() string { return m.jobID }

// Nodes implements rm.Manager.
func (m *Manager) Nodes(ctx context.Context) ([]string, error) {
	var hosts []string
	if path := m.cfg.Env.Get("LSB_DJOB_HOSTFILE"); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("lsf: job %s: host file: %w", m.jobID, err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if h := strings.TrimSpace(sc.Text()); h != "" {
				hosts = append(hosts, h)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("lsf: job %s: reading %s: %w", m.jobID, path, err)
		}
	} else if mcpu := strings.Fields(m.cfg.Env.Get("LSB_MCPU_HOSTS")); len(mcpu) > 0 {
		if len(mcpu)%2 != 0 {
			return nil, fmt.Errorf("lsf: job %s: LSB_MCPU_HOSTS=%q: want host/slot-count pairs", m.jobID, strings.Join(mcpu, " "))
		}
		for i := 0; i < len(mcpu); i += 2 {
			hosts = append(hosts, mcpu[i])
		}
	}
	if len(hosts) < 2 {
		return nil, fmt.Errorf("lsf: job %s: no compute hosts in LSB_DJOB_HOSTFILE or LSB_MCPU_HOSTS (the first entry is the launch node): %w", m.jobID, rm.ErrNotAllocated)
	}
	return hostlist.Dedupe(hosts[1:]), nil
}

// ParseBhosts reads `bhosts -w` output into host -> reason for the hosts
// whose status is unavail or unreach.
func ParseBhosts(out []byte) (map[string]string, error) {
	down := map[string]string{}
	lines := rm.Lines(out)
	if len(lines) == 0 {
		return down, nil
	}
	if f := strings.Fields(lines[0]); len(f) < 2 || f[0] != "HOST_NAME" || f[1] != "STATUS" {
		return nil, fmt.Errorf("lsf: bhosts: header %q is not HOST_NAME STATUS ...", lines[0])
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil, fmt.Errorf("lsf: bhosts: row %q has no STATUS", l)
		}
		switch f[1] {
		case "unavail":
			down[f[0]] = "lsf: unavail (host down, or LIM and sbatchd unreachable)"
		case "unreach":
			down[f[0]] = "lsf: unreach (sbatchd unreachable)"
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
	out, err := m.cfg.Run(ctx, append([]string{"bhosts", "-w"}, nodes...))
	if err != nil {
		return nil, fmt.Errorf("lsf: down hosts of job %s: %w", m.jobID, err)
	}
	down, err := ParseBhosts(out)
	if err != nil {
		return nil, err
	}
	return rm.OnlyNodes(down, nodes), nil
}

// ParseTimeLeft turns a bjobs time_left value into an end time.
func ParseTimeLeft(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "-" {
		return -1, nil
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, nil
	}
	h, mm, ok := strings.Cut(f[0], ":")
	hours, err1 := strconv.ParseInt(h, 10, 64)
	mins, err2 := strconv.ParseInt(mm, 10, 64)
	if !ok || err1 != nil || err2 != nil || mins < 0 || mins > 59 || hours < 0 {
		return 0, fmt.Errorf("lsf: time_left %q: want H:MM", s)
	}
	return now.Unix() + hours*3600 + mins*60, nil
}

// EndTime implements rm.Manager.
func (m *Manager) EndTime(ctx context.Context) (int64, error) {
	if m.jobID == "" {
		return 0, nil
	}
	out, err := m.cfg.Run(ctx, []string{"bjobs", "-noheader", "-o", "time_left", m.jobID})
	if err != nil {
		return 0, fmt.Errorf("lsf: end time of job %s: %w", m.jobID, err)
	}
	return ParseTimeLeft(string(out), m.cfg.Now())
}

// Transport implements rm.Manager: ssh.
func (m *Manager) Transport(ctx context.Context) (remote.Transport, error) {
	return remote.SSH{}, nil
}

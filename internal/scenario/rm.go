package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/vcluster"
)

// fluxStepNodes returns the nodes of the run that is running in the
// allocation (`flux jobs --filter=run -no {nodelist}` inside it). Flux
// gives task ranks in the order of the job's nodes, so rank i runs on the
// i-th node of the list.
func (s *run) fluxStepNodes(ctx context.Context) ([]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := s.c.FluxExec(qctx, s.c.NodeNames()[0], s.allocURI, "jobs", "--filter=run", "-no", "{nodelist}")
	if err != nil {
		return nil, err
	}
	lines := strings.Fields(out)
	if len(lines) != 1 {
		return nil, fmt.Errorf("%d running jobs in the allocation, want 1 (flux jobs: %q)", len(lines), out)
	}
	nodes, err := hostlist.Expand(lines[0])
	if err != nil {
		return nil, err
	}
	if len(nodes) != s.o.JobNodes {
		return nil, fmt.Errorf("the running job has nodes %v, want %d (flux jobs: %q)", nodes, s.o.JobNodes, out)
	}
	return nodes, nil
}

// rmReportsDown returns the victims the resource manager does not yet
// report down (Flux: offline in the allocation; Slurm: DOWN).
func (s *run) rmReportsDown(ctx context.Context, victims []string) ([]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var down []string
	if s.flux() {
		out, err := s.c.FluxExec(qctx, s.c.NodeNames()[0], s.allocURI, "resource", "status", "-s", "offline", "-no", "{nodelist}")
		if err != nil {
			return nil, err
		}
		if down, err = hostlist.Expand(strings.Join(strings.Fields(out), ",")); err != nil {
			return nil, err
		}
	} else {
		for _, v := range victims {
			st, err := s.c.SlurmState(qctx, v)
			if err != nil {
				return nil, err
			}
			if vcluster.IsDown(st) {
				down = append(down, v)
			}
		}
	}
	return hostlist.Minus(victims, down), nil
}

// afterRMNotices waits until the resource manager itself reports every
// victim down, then asks scr_list_down_nodes again and captures the
// resource manager's view.
func (s *run) afterRMNotices(ctx context.Context, at time.Time, victims []string) error {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var pending []string
	for {
		var err error
		pending, err = s.rmReportsDown(wctx, victims)
		if err == nil && len(pending) == 0 {
			break
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%s did not report %v down within 3 minutes of the power-off (last error %v)", s.o.RM, pending, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	s.res.RMNoticed = time.Since(at).Seconds()
	s.o.Logf("scenario: %s reports %v down %.2f s after the power-off", s.o.RM, victims, s.res.RMNoticed)
	s.capture(ctx, "after-poweroff-detected")
	s.res.DownListAfterRM, s.res.DownListAfterRMSeconds = s.listDown(ctx, at)
	return nil
}

// fluxCaptures are the commands captured at each stage, by file name (the
// convention of internal/rm/flux/testdata): the status commands people
// read and the queries the Flux adapter runs, in the allocation ("nested")
// and in the system instance.
var fluxCaptures = []struct {
	name string
	args []string
}{
	{"resource-status", []string{"resource", "status"}},
	{"resource-status-no-state-ranks-nodelist", []string{"resource", "status", "-no", "{state} {ranks} {nodelist}"}},
	{"resource-status-s-offline-no-nodelist", []string{"resource", "status", "-s", "offline", "-no", "{nodelist}"}},
	{"resource-list", []string{"resource", "list"}},
	{"resource-list-s-down-no-nodelist", []string{"resource", "list", "-s", "down", "-no", "{nodelist}"}},
	{"hostlist-instance", []string{"hostlist", "instance"}},
	{"getattr-hostlist", []string{"getattr", "hostlist"}},
	{"getattr-jobid", []string{"getattr", "jobid"}},
	{"job-timeleft", []string{"job", "timeleft"}},
}

// capture writes what the resource manager's commands print now to
// Options.CaptureDir (Flux only), and logs the status ones. Each line of
// captures.tsv says: file (stdout; FILE.stderr.txt holds stderr when there
// was any), the command line (argv joined by single spaces), exit code,
// seconds after the power-off ("-" before it), duration in seconds.
func (s *run) capture(ctx context.Context, stage string) {
	if s.o.CaptureDir == "" || !s.flux() {
		return
	}
	if err := os.MkdirAll(s.o.CaptureDir, 0o755); err != nil {
		s.o.Logf("scenario: capture: %v", err)
		return
	}
	index, err := os.OpenFile(filepath.Join(s.o.CaptureDir, "captures.tsv"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.o.Logf("scenario: capture: %v", err)
		return
	}
	defer index.Close()
	node := s.c.NodeNames()[0]
	for _, where := range []string{"nested", "system"} {
		for _, fc := range fluxCaptures {
			env := []string{}
			if where == "nested" {
				env = append(env, "FLUX_URI="+s.allocURI)
			}
			qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			start := time.Now()
			cmd := s.c.CommandDir(qctx, node, "/", append([]string{"flux"}, fc.args...), env)
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			cancel()
			rc := 0
			if err != nil {
				rc = -1
				if cmd.ProcessState != nil {
					rc = cmd.ProcessState.ExitCode()
				}
			}
			file := fmt.Sprintf("%s.%s-%s.txt", fc.name, where, stage)
			_ = os.WriteFile(filepath.Join(s.o.CaptureDir, file), []byte(out.String()), 0o644)
			if e := strings.TrimSpace(errb.String()); e != "" {
				_ = os.WriteFile(filepath.Join(s.o.CaptureDir, strings.TrimSuffix(file, ".txt")+".stderr.txt"), []byte(errb.String()), 0o644)
			}
			t := "-"
			if s.res.PowerOff != "" {
				if at, err := time.Parse(time.RFC3339Nano, s.res.PowerOff); err == nil {
					t = fmt.Sprintf("%+.1f", start.Sub(at).Seconds())
				}
			}
			fmt.Fprintf(index, "%s\tflux %s\t%d\t%s\t%.2f\n", file, strings.Join(fc.args, " "), rc, t, time.Since(start).Seconds())
			if strings.HasPrefix(fc.name, "resource-status") || strings.HasPrefix(fc.name, "resource-list") {
				s.o.Logf("scenario: [%s, %s] flux %s (rc %d):\n%s%s", stage, where, shellJoin(fc.args), rc, out.String(), errb.String())
			}
		}
	}
}

package vcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Command returns a command that runs argv on node ("head" is the
// slurmctld namespace) in the caller's working directory. Its environment
// is PATH (the bin dir first), SLURM_CONF, HOME, USER and the like, plus env
// ("K=V" entries, later ones win). The command runs in its own process
// group; cancelling ctx SIGKILLs the whole group, including the part inside
// the node's PID namespace. If the node is down, Start returns the error.
func (c *Cluster) Command(ctx context.Context, node string, argv []string, env []string) *exec.Cmd {
	wd, _ := os.Getwd()
	return c.CommandDir(ctx, node, wd, argv, env)
}

// CommandDir is Command with an explicit working directory on the node.
func (c *Cluster) CommandDir(ctx context.Context, node, dir string, argv []string, env []string) *exec.Cmd {
	h, err := c.enterable(node)
	nsenter, _ := lookPath("nsenter")
	cmd := exec.CommandContext(ctx, nsenter, nsenterArgs(h, dir, argv)...)
	if err == nil && len(argv) == 0 {
		err = &NodeError{Node: node, Op: "exec", Err: errors.New("empty command")}
	}
	if err != nil {
		cmd.Err = err
		return cmd
	}
	cmd.Env = c.baseEnv()
	if c.IsFlux() && node != "head" {
		cmd.Env = append(cmd.Env, "FLUX_URI="+c.FluxURI(node), "LANG=C.UTF-8")
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// enterable returns the holder of a node that is up.
func (c *Cluster) enterable(node string) (int, error) {
	if node != "head" {
		c.mu.Lock()
		i, err := c.nodeIndex(node)
		off := err == nil && c.st.Nodes[i].PoweredOff
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if off {
			return 0, &NodeError{Node: node, Op: "exec", Err: ErrPoweredOff}
		}
	}
	return c.holderPID(node)
}

// Exec runs argv on node (see Command) and returns its combined output. A
// non-zero exit is an error wrapping *exec.ExitError, with the output.
func (c *Cluster) Exec(ctx context.Context, node string, argv []string, env []string) ([]byte, error) {
	cmd := c.Command(ctx, node, argv, env)
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.Bytes(), &NodeError{Node: node, Op: "exec " + strings.Join(argv, " "), Err: fmt.Errorf("%w: %s", err, strings.TrimSpace(buf.String()))}
	}
	return buf.Bytes(), nil
}

// SlurmStates returns every node as slurmctld sees it.
func (c *Cluster) SlurmStates(ctx context.Context) ([]NodeState, error) {
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := c.CommandDir(qctx, "head", "/", []string{"scontrol", "show", "node", "-o"}, nil)
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("vcluster: scontrol show node: %w", err)
	}
	return parseNodes(string(out)), nil
}

// SlurmState returns one node as slurmctld sees it.
func (c *Cluster) SlurmState(ctx context.Context, node string) (NodeState, error) {
	all, err := c.SlurmStates(ctx)
	if err != nil {
		return NodeState{}, err
	}
	for _, s := range all {
		if s.Name == node {
			return s, nil
		}
	}
	return NodeState{}, &NodeError{Node: node, Op: "slurm state", Err: ErrUnknownNode}
}

// WaitState polls slurmctld every 100 ms until cond holds for node, and
// returns the state that satisfied it (or the last one seen, with ctx's
// error).
func (c *Cluster) WaitState(ctx context.Context, node string, cond func(NodeState) bool) (NodeState, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last NodeState
	for {
		s, err := c.SlurmState(ctx, node)
		if err == nil {
			last = s
			if cond(s) {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, &NodeError{Node: node, Op: "waiting for slurm state", Err: fmt.Errorf("last state %q: %w", last.State, ctx.Err())}
		case <-t.C:
		}
	}
}

var jobSeq atomic.Int64

// Sbatch writes script to the shared directory and submits it from node1
// with `sbatch --parsable args...`, in the shared directory. It returns the
// job id.
func (c *Cluster) Sbatch(ctx context.Context, script string, args ...string) (string, error) {
	out, err := c.submit(ctx, script, append([]string{"sbatch", "--parsable"}, args...))
	id, _, _ := strings.Cut(out, ";")
	return id, err
}

// submit writes script to the shared directory and runs argv with the
// script's path appended on node1, in that directory; it returns stdout,
// trimmed.
func (c *Cluster) submit(ctx context.Context, script string, argv []string) (string, error) {
	p, err := c.writeJobScript(script)
	if err != nil {
		return "", err
	}
	cmd := c.CommandDir(ctx, c.Nodes()[0].Name, filepath.Dir(p), append(argv, p), nil)
	if cmd.Err != nil {
		return "", cmd.Err
	}
	out, err := stdoutOf(cmd)
	if err != nil {
		return "", fmt.Errorf("vcluster: %s %s: %w", argv[0], p, err)
	}
	return strings.TrimSpace(out), nil
}

// stdoutOf runs cmd and returns its stdout; an error carries its stderr.
func stdoutOf(cmd *exec.Cmd) (string, error) {
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return string(out), nil
}

// writeJobScript writes an executable job script below the shared
// directory and returns its path.
func (c *Cluster) writeJobScript(script string) (string, error) {
	dir := filepath.Join(c.SharedDir(), "jobs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("vcluster: %w", err)
	}
	p := filepath.Join(dir, fmt.Sprintf("job-%d-%d.sh", os.Getpid(), jobSeq.Add(1)))
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("vcluster: %w", err)
	}
	return p, nil
}

// JobState returns Slurm's state of a job ("PENDING", "RUNNING",
// "COMPLETED", ...) and its node list.
func (c *Cluster) JobState(ctx context.Context, jobID string) (state, nodes string, err error) {
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := c.CommandDir(qctx, "head", "/", []string{"scontrol", "show", "job", "-o", jobID}, nil)
	if cmd.Err != nil {
		return "", "", cmd.Err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("vcluster: scontrol show job %s: %w: %s", jobID, err, strings.TrimSpace(string(out)))
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "JobState="); ok {
			state = v
		}
		if v, ok := strings.CutPrefix(f, "NodeList="); ok {
			nodes = v
		}
	}
	return state, nodes, nil
}

// WaitJob polls the job's state every 100 ms until cond holds.
func (c *Cluster) WaitJob(ctx context.Context, jobID string, cond func(state string) bool) (string, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last string
	for {
		s, _, err := c.JobState(ctx, jobID)
		if err == nil {
			last = s
			if cond(s) {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("vcluster: job %s: last state %q: %w", jobID, last, ctx.Err())
		case <-t.C:
		}
	}
}

// Logs returns the tail of every log of the cluster (slurmctld, slurmd,
// munged, holders), for a failing test to print.
func (c *Cluster) Logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(c.dir("log", "*.log"))
	files = append(files, c.dir("munge", "munged.log"))
	for _, f := range files {
		if t := tail(f, 3000); t != "" {
			fmt.Fprintf(&b, "==> %s <==\n%s\n", f, t)
		}
	}
	return b.String()
}

// Salloc makes an allocation without a shell (`salloc --no-shell args...`
// from node1) and returns its job id; run steps in it with
// `srun --jobid=ID`. Cancel it with `scancel ID` (Down removes it anyway).
func (c *Cluster) Salloc(ctx context.Context, args ...string) (string, error) {
	argv := append([]string{"salloc", "--no-shell"}, args...)
	cmd := c.CommandDir(ctx, c.Nodes()[0].Name, c.SharedDir(), argv, nil)
	if cmd.Err != nil {
		return "", cmd.Err
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("vcluster: %s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	const granted = "Granted job allocation "
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, granted); i >= 0 {
			return strings.TrimSpace(line[i+len(granted):]), nil
		}
	}
	return "", fmt.Errorf("vcluster: %s: no job id in %q", strings.Join(argv, " "), out)
}

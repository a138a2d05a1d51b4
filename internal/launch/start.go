package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartOptions are the process details of a launch.
type StartOptions struct {
	// Env is the launcher's environment (os.Environ() plus SCR_RUN_ID and
	// SCR_PREFIX, set by the caller).
	Env []string
	// Stdout and Stderr receive the launcher's output (default: discard).
	Stdout, Stderr io.Writer
	// Path replaces Argv[0] (and Submit[0]) when set: the launcher binary
	// the user named, e.g. /opt/slurm/bin/srun.
	Path string
	// Run runs helper commands for Cancel (default ExecRunner).
	Run Runner
	// JobID is the allocation's id, for the resource manager's cancel.
	JobID string
	// SubmitTimeout bounds a Submit command (default 60 s).
	SubmitTimeout time.Duration
}

// Process is one started step. It is safe for concurrent use.
type Process struct {
	a    Adapter
	cmd  Command
	opts StartOptions
	c    *exec.Cmd
	id   string

	done     chan struct{}
	exitCode int
	waitErr  error

	killOnce sync.Once
	killErr  error
}

// ExecRunner runs argv with the context's deadline and returns stdout; a
// failure carries the command's stderr.
func ExecRunner(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("launch: empty command")
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	c.WaitDelay = time.Second
	out, err := c.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
		}
		return out, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}

// StartError says that a step could not be started.
type StartError struct {
	Argv []string
	Err  error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("launch: start %s: %v", strings.Join(e.Argv, " "), e.Err)
}
func (e *StartError) Unwrap() error { return e.Err }

// Start writes the command's files, runs its Submit command if any (taking
// the step id from its output) and starts Argv in a process group of its
// own, so Kill reaches every process the launcher forked.
func Start(ctx context.Context, a Adapter, cmd Command, o StartOptions) (*Process, error) {
	if o.Run == nil {
		o.Run = ExecRunner
	}
	if o.SubmitTimeout <= 0 {
		o.SubmitTimeout = 60 * time.Second
	}
	for _, f := range cmd.Files {
		if err := writeFileAtomic(f.Path, f.Content); err != nil {
			return nil, &StartError{Argv: cmd.Argv, Err: err}
		}
	}
	p := &Process{a: a, cmd: cmd, opts: o, done: make(chan struct{})}
	argv := cloneArgs(cmd.Argv)
	if o.Path != "" && len(argv) > 0 && argv[0] == a.Name() {
		argv[0] = o.Path
	}
	if len(cmd.Submit) > 0 {
		sub := cloneArgs(cmd.Submit)
		if o.Path != "" {
			sub[0] = o.Path
		}
		sctx, cancel := context.WithTimeout(ctx, o.SubmitTimeout)
		out, err := submitRun(sctx, sub, o.Env)
		cancel()
		if err != nil {
			return nil, &StartError{Argv: sub, Err: err}
		}
		p.id = lastLine(out)
		if p.id == "" {
			return nil, &StartError{Argv: sub, Err: errors.New("printed no job id")}
		}
		argv = append(argv, p.id)
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = o.Env
	c.Stdout, c.Stderr = o.Stdout, o.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output copied through pipes must not hold Wait forever when a rank
	// left behind keeps the pipe open.
	c.WaitDelay = 2 * time.Second
	if err := c.Start(); err != nil {
		if p.id != "" {
			// The job was submitted: do not leave it behind.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			a.Cancel(cctx, o.Run, o.JobID, cmd, p.id)
			cancel()
		}
		return nil, &StartError{Argv: argv, Err: err}
	}
	p.c = c
	go p.wait() // ends when the launcher process ends
	return p, nil
}

func submitRun(ctx context.Context, argv, env []string) ([]byte, error) {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = env
	var stderr bytes.Buffer
	c.Stderr = &stderr
	c.WaitDelay = time.Second
	out, err := c.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return out, fmt.Errorf("%w: %s", err, msg)
		}
		return out, err
	}
	return out, nil
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (p *Process) wait() {
	err := p.c.Wait()
	p.exitCode = exitCode(p.c.ProcessState, err)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		p.waitErr = err
	}
	close(p.done)
}

// exitCode maps a process state to a shell-style code: the exit status, or
// 128+signal when a signal ended it.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		if err != nil {
			return -1
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Done is closed when the launcher process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the launcher's exit code (128+signal if a signal ended it);
// valid after Done is closed.
func (p *Process) ExitCode() int { <-p.done; return p.exitCode }

// Err is an error waiting for the launcher other than a non-zero exit
// (e.g. output copying failed); valid after Done is closed.
func (p *Process) Err() error { <-p.done; return p.waitErr }

// Pid is the launcher's process id (also its process group id).
func (p *Process) Pid() int { return p.c.Process.Pid }

// StepID is the resource manager's id of the step when the launcher printed
// it (flux), else "".
func (p *Process) StepID() string { return p.id }

// Command is the command the step runs.
func (p *Process) Command() Command { return p.cmd }

// Kill ends the step at once: SIGKILL to the launcher's process group, then
// the resource manager's cancel of the step (bounded by ctx). It is safe to
// call more than once and after the step ended; only the first call acts.
func (p *Process) Kill(ctx context.Context) error {
	p.killOnce.Do(func() {
		// Negative pid: the whole process group. Also after the launcher
		// ended: ranks it left behind are still in the group, and Linux
		// does not reuse a pid that is still some group's id.
		if err := syscall.Kill(-p.c.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.killErr = fmt.Errorf("launch: kill %s (pid %d): %w", p.a.Name(), p.c.Process.Pid, err)
		}
		run := p.opts.Run
		if path, name := p.opts.Path, p.a.Name(); path != "" {
			// The user's launcher binary also runs its cancel (flux cancel).
			run = func(ctx context.Context, argv []string) ([]byte, error) {
				if len(argv) > 0 && argv[0] == name {
					argv = append([]string{path}, argv[1:]...)
				}
				return p.opts.Run(ctx, argv)
			}
		}
		if err := p.a.Cancel(ctx, run, p.opts.JobID, p.cmd, p.id); err != nil {
			p.killErr = errors.Join(p.killErr, err)
		}
	})
	return p.killErr
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

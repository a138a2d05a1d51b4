// Package remote runs one command on many nodes at once, with a bound on
// how many run at the same time (fan-out) and a timeout per node, and
// returns what each node said: stdout, stderr, exit code, error.
//
// A Transport turns "run argv on node N" into a local command: ssh
// (BatchMode, ConnectTimeout, like pdsh -Rssh), srun (a one-task step on
// that node, --overlap so it runs inside a busy allocation), flux exec (by
// broker rank), or local (the command runs here, with the node's
// environment; used by the local launcher's simulated nodes).
//
// Run never hangs on a dead node: each node's command runs in its own
// process group, which is killed when the node's timeout or the caller's
// context expires; pipes held open by grandchildren are abandoned after a
// short delay. Run returns when every node has a result. It starts at most
// Options.Fanout goroutines, all of which have returned when Run returns.
package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for Options.
const (
	// DefaultFanout: 64 concurrent commands keeps one launcher host's
	// process table and sshd/slurmstepd load modest while 10,000 nodes
	// still finish in ~160 rounds.
	DefaultFanout = 64
	// DefaultTimeout per node: long enough for ssh to connect and run a
	// short check on a loaded node, short enough that a hung node costs
	// seconds, not minutes.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxOutput caps what is kept of each node's stdout and stderr.
	DefaultMaxOutput = 64 << 10
	// waitDelay is how long Run waits for a command's output pipes after it
	// exited or was killed. Long enough that a process starved of CPU on a
	// loaded launch node still copies a finished command's output (500 ms
	// lost output under load), short enough that a daemonised grandchild
	// holding the pipes costs little.
	waitDelay = 2 * time.Second
)

// ErrTimeout is wrapped by a node's error when its timeout expired.
var ErrTimeout = errors.New("timed out")

// ErrUnknownNode is wrapped when a transport cannot address a node (for
// example flux exec without a rank for that host).
var ErrUnknownNode = errors.New("node unknown to transport")

// Cmd is a local command line that reaches a node.
type Cmd struct {
	Path string   // program (looked up in PATH if it has no slash)
	Args []string // arguments, without the program name
	Env  []string // added to this process's environment ("K=V")
}

// Transport builds the local command that runs argv on node.
type Transport interface {
	Name() string
	Command(node string, argv []string) (Cmd, error)
}

// Batcher is a Transport that can also start one command on many nodes in
// one launch (one srun step, one flux exec), which at thousands of nodes
// is far cheaper than a launch per node. The output of all nodes arrives
// mixed on one stream, so the command itself must label its lines with
// its node; and one dead node can fail or hang the whole launch, so
// callers bound it with a timeout and fall back to Command per node for
// the nodes that did not answer.
type Batcher interface {
	Transport
	BatchCommand(nodes []string, argv []string) (Cmd, error)
}

// Options tunes Run. The zero value uses the defaults.
type Options struct {
	Fanout    int           // concurrent nodes; default DefaultFanout
	Timeout   time.Duration // per node; default DefaultTimeout
	MaxOutput int           // bytes kept per stream; default DefaultMaxOutput
}

func (o Options) withDefaults() Options {
	if o.Fanout <= 0 {
		o.Fanout = DefaultFanout
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxOutput <= 0 {
		o.MaxOutput = DefaultMaxOutput
	}
	return o
}

// Result is what one node returned.
type Result struct {
	Node     string
	Stdout   []byte
	Stderr   []byte
	ExitCode int // -1 when the command did not exit normally (timeout, signal, not started)
	Err      error
	Duration time.Duration
}

// NodeError says which node failed to run which command, and why.
type NodeError struct {
	Node      string
	Transport string
	Argv      []string
	ExitCode  int
	Stderr    string // first line of stderr, if any
	Err       error
}

func (e *NodeError) Error() string {
	s := fmt.Sprintf("remote %s on %s: %q: %v", e.Transport, e.Node, strings.Join(e.Argv, " "), e.Err)
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

// Unwrap returns the cause (ErrTimeout, *exec.ExitError, ...).
func (e *NodeError) Unwrap() error { return e.Err }

// Each calls fn(ctx, i) for i in [0, n) with at most fanout calls running at
// once. It returns when all calls started have returned; after ctx ends it
// starts no new call (the remaining indexes are not visited).
func Each(ctx context.Context, n, fanout int, fn func(ctx context.Context, i int)) {
	if fanout <= 0 {
		fanout = DefaultFanout
	}
	if fanout > n {
		fanout = n
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < fanout; w++ {
		wg.Add(1)
		go func() { // stops when next is closed
			defer wg.Done()
			for i := range next {
				fn(ctx, i)
			}
		}()
	}
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
}

// Run runs argv on every node through t and returns one Result per node,
// in the order of nodes. Nodes not reached because ctx ended get a Result
// with Err wrapping ctx.Err().
func Run(ctx context.Context, t Transport, nodes []string, argv []string, opts Options) []Result {
	opts = opts.withDefaults()
	res := make([]Result, len(nodes))
	done := make([]bool, len(nodes))
	Each(ctx, len(nodes), opts.Fanout, func(ctx context.Context, i int) {
		res[i] = RunOne(ctx, t, nodes[i], argv, opts)
		done[i] = true
	})
	for i := range res {
		if !done[i] {
			res[i] = Result{Node: nodes[i], ExitCode: -1, Err: &NodeError{Node: nodes[i], Transport: t.Name(), Argv: argv, ExitCode: -1, Err: fmt.Errorf("not started: %w", context.Cause(ctx))}}
		}
	}
	return res
}

// RunOne runs argv on one node with opts.Timeout.
func RunOne(ctx context.Context, t Transport, node string, argv []string, opts Options) Result {
	opts = opts.withDefaults()
	start := time.Now()
	r := Result{Node: node, ExitCode: -1}
	fail := func(err error) Result {
		ne := &NodeError{Node: node, Transport: t.Name(), Argv: argv, ExitCode: r.ExitCode, Err: err}
		if line, _, _ := strings.Cut(strings.TrimSpace(string(r.Stderr)), "\n"); line != "" {
			ne.Stderr = line
		}
		r.Err = ne
		r.Duration = time.Since(start)
		return r
	}
	c, err := t.Command(node, argv)
	if err != nil {
		return fail(err)
	}
	tctx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, fmt.Errorf("%w after %v", ErrTimeout, opts.Timeout))
	defer cancel()
	cmd := exec.CommandContext(tctx, c.Path, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	var stdout, stderr capped
	stdout.max, stderr.max = opts.MaxOutput, opts.MaxOutput
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = nil
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// The whole group: ssh/srun may have children of their own.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = waitDelay
	err = cmd.Run()
	r.Stdout, r.Stderr = stdout.Bytes(), stderr.Bytes()
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	if tctx.Err() != nil {
		r.ExitCode = -1
		return fail(context.Cause(tctx))
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// The command succeeded, but its output pipes did not drain within
		// waitDelay of its exit (a grandchild holding them, or a machine so
		// loaded the copy was late). Keep what arrived; callers check it.
		// Whatever still holds the pipes is ours to stop.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = nil
	}
	if err != nil {
		return fail(err)
	}
	r.Duration = time.Since(start)
	return r
}

// capped keeps the first max bytes written to it and drops the rest.
// (A named field, not an embedded Buffer: an embedded one would lend its
// ReadFrom to io.Copy and bypass the cap.)
type capped struct {
	buf bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) Bytes() []byte { return c.buf.Bytes() }

// shellQuote quotes s for a POSIX shell (ssh passes one command string).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == '=' || r == ':' || r == ',' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SSH reaches nodes with ssh in batch mode (no password prompts), like
// pdsh -Rssh.
type SSH struct {
	Program        string        // default "ssh"
	ConnectTimeout time.Duration // default 5s (rounded up to whole seconds)
	User           string        // optional
	Extra          []string      // extra ssh options, e.g. {"-p", "2222"}
}

// Name implements Transport.
func (s SSH) Name() string { return "ssh" }

// Command implements Transport.
func (s SSH) Command(node string, argv []string) (Cmd, error) {
	prog := s.Program
	if prog == "" {
		prog = "ssh"
	}
	ct := s.ConnectTimeout
	if ct <= 0 {
		ct = 5 * time.Second
	}
	secs := int((ct + time.Second - 1) / time.Second)
	args := []string{"-o", "BatchMode=yes", "-o", fmt.Sprintf("ConnectTimeout=%d", secs),
		"-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR", "-T"}
	args = append(args, s.Extra...)
	target := node
	if s.User != "" {
		target = s.User + "@" + node
	}
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	args = append(args, target, "--", strings.Join(q, " "))
	return Cmd{Path: prog, Args: args}, nil
}

// Srun reaches nodes with a one-task Slurm step on that node. --overlap
// lets it run beside a running step of the same allocation.
type Srun struct {
	Program string // default "srun"
	JobID   string // optional: --jobid, when not run inside the allocation
}

// Name implements Transport.
func (s Srun) Name() string { return "srun" }

// Command implements Transport.
func (s Srun) Command(node string, argv []string) (Cmd, error) {
	prog := s.Program
	if prog == "" {
		prog = "srun"
	}
	args := []string{"-N1", "-n1", "-w", node, "--overlap"}
	if s.JobID != "" {
		args = append(args, "--jobid="+s.JobID)
	}
	return Cmd{Path: prog, Args: append(args, argv...)}, nil
}

// BatchCommand implements Batcher: one step with one task on each node.
// Slurm refuses the whole step if a node is down in its view (the caller
// falls back to one step per node).
func (s Srun) BatchCommand(nodes []string, argv []string) (Cmd, error) {
	if len(nodes) == 0 {
		return Cmd{}, errors.New("srun: batch of no nodes")
	}
	prog := s.Program
	if prog == "" {
		prog = "srun"
	}
	n := fmt.Sprint(len(nodes))
	args := []string{"-N" + n, "-n" + n, "--ntasks-per-node=1", "-w", strings.Join(nodes, ","), "--overlap", "--kill-on-bad-exit=0"}
	if s.JobID != "" {
		args = append(args, "--jobid="+s.JobID)
	}
	return Cmd{Path: prog, Args: append(args, argv...)}, nil
}

// FluxExec reaches nodes with flux exec by broker rank.
type FluxExec struct {
	Program string         // default "flux"
	Ranks   map[string]int // host name -> broker rank in the enclosing instance
}

// Name implements Transport.
func (f FluxExec) Name() string { return "flux" }

// Command implements Transport.
func (f FluxExec) Command(node string, argv []string) (Cmd, error) {
	prog := f.Program
	if prog == "" {
		prog = "flux"
	}
	r, ok := f.Ranks[node]
	if !ok {
		return Cmd{}, fmt.Errorf("%w: flux has no broker rank for host %q", ErrUnknownNode, node)
	}
	return Cmd{Path: prog, Args: append([]string{"exec", "-r", fmt.Sprint(r)}, argv...)}, nil
}

// BatchCommand implements Batcher: flux exec on a list of ranks.
func (f FluxExec) BatchCommand(nodes []string, argv []string) (Cmd, error) {
	if len(nodes) == 0 {
		return Cmd{}, errors.New("flux: batch of no nodes")
	}
	prog := f.Program
	if prog == "" {
		prog = "flux"
	}
	ranks := make([]string, len(nodes))
	for i, n := range nodes {
		r, ok := f.Ranks[n]
		if !ok {
			return Cmd{}, fmt.Errorf("%w: flux has no broker rank for host %q", ErrUnknownNode, n)
		}
		ranks[i] = fmt.Sprint(r)
	}
	return Cmd{Path: prog, Args: append([]string{"exec", "-r", strings.Join(ranks, ",")}, argv...)}, nil
}

// Local runs the command on this host, with the environment NodeEnv gives
// for the node (for simulated nodes: SCR_NODE_NAME and its storage bases).
type Local struct {
	NodeEnv func(node string) []string
}

// Name implements Transport.
func (l Local) Name() string { return "local" }

// Command implements Transport.
func (l Local) Command(node string, argv []string) (Cmd, error) {
	if len(argv) == 0 {
		return Cmd{}, errors.New("local transport: empty command")
	}
	var env []string
	if l.NodeEnv != nil {
		env = l.NodeEnv(node)
	}
	return Cmd{Path: argv[0], Args: argv[1:], Env: env}, nil
}

// Package locallaunch is the logic of scr_launch: it starts the ranks of a
// job as processes on this machine, each on a simulated node, and serves
// them PMI-1 the way srun does (a socketpair per rank, PMI_FD), so
// comm.FromEnv works exactly as on a cluster.
//
// Each simulated node gets its own identity (SCR_NODE_NAME) and storage
// (SCR_CACHE_BASE = SCR_CNTL_BASE = <root>/<node>/shm, the layout of the
// local resource manager, internal/rm/local). A "poweroff" marker file in
// <root>/<node>/ makes the node vanish silently: its ranks are stopped
// (SIGSTOP), so peers see no FIN and no RST, as with a powered-off node.
package locallaunch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scr-go/scr/internal/pmi"
	"github.com/scr-go/scr/internal/safefs"
)

// Options describe one launch.
type Options struct {
	N         int      // number of ranks; 0 = len(Nodes) * PerNode
	Nodes     []string // simulated nodes; empty = node1..nodeM
	PerNode   int      // ranks per node (block placement); 0 = ceil(N/len(Nodes)), or 1
	CacheRoot string   // root of the nodes' storage: <CacheRoot>/<node>/shm
	Argv      []string // program and arguments
	Env       []string // base environment; nil = os.Environ()
	Stdout    io.Writer
	Stderr    io.Writer
	// KeepGoing disables the srun -K behaviour (kill every rank when one
	// fails); the launch then ends when every rank has ended.
	KeepGoing bool
	// Signals are forwarded to every rank (SIGINT, SIGTERM, ...).
	Signals <-chan os.Signal
	// Started and Exited, if set, are told about each rank (tests).
	Started func(rank, pid int)
	Exited  func(rank int, r RankResult)
}

// RankResult is how one rank ended.
type RankResult struct {
	Node   string
	Pid    int
	Code   int            // exit code; 128+signal if killed by a signal
	Signal syscall.Signal // the signal that ended it, or 0
	End    time.Time
	Killed bool // killed by the launcher (another rank failed, or ctx ended)
}

// Result is the outcome of a launch.
type Result struct {
	Ranks     []RankResult
	FirstFail int // rank that failed first, -1 if none
}

// ExitCode is the launcher's exit code: the first failing rank's code, else 0.
func (r *Result) ExitCode() int {
	if r.FirstFail < 0 {
		return 0
	}
	return r.Ranks[r.FirstFail].Code
}

// UsageError is an invalid launch request.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return "scr_launch: " + e.Msg }

// Placement returns the node of each rank (block placement) after
// validating the options; it fills the defaults in opts.
func Placement(opts *Options) ([]string, error) {
	if len(opts.Argv) == 0 {
		return nil, &UsageError{"no program to run"}
	}
	if opts.N < 0 || opts.PerNode < 0 {
		return nil, &UsageError{"-n and --ranks-per-node must not be negative"}
	}
	if err := fitsLimits(opts.N); err != nil {
		return nil, err
	}
	if len(opts.Nodes) == 0 {
		if opts.PerNode == 0 {
			opts.PerNode = 1
		}
		if opts.N == 0 {
			opts.N = 1
		}
		m := (opts.N + opts.PerNode - 1) / opts.PerNode
		for i := range m {
			opts.Nodes = append(opts.Nodes, fmt.Sprintf("node%d", i+1))
		}
	}
	seen := map[string]bool{}
	for _, n := range opts.Nodes {
		if n == "" || n != filepath.Base(n) || n == "." || n == ".." {
			return nil, &UsageError{fmt.Sprintf("bad node name %q", n)}
		}
		if seen[n] {
			return nil, &UsageError{fmt.Sprintf("node %s listed twice", n)}
		}
		seen[n] = true
	}
	if opts.N == 0 {
		opts.N = len(opts.Nodes) * max(opts.PerNode, 1)
	}
	if err := fitsLimits(opts.N); err != nil {
		return nil, err
	}
	if opts.PerNode == 0 {
		opts.PerNode = (opts.N + len(opts.Nodes) - 1) / len(opts.Nodes)
	}
	if opts.N > len(opts.Nodes)*opts.PerNode {
		return nil, &UsageError{fmt.Sprintf("%d ranks do not fit on %d nodes with %d ranks per node", opts.N, len(opts.Nodes), opts.PerNode)}
	}
	place := make([]string, opts.N)
	for r := range place {
		place[r] = opts.Nodes[r/opts.PerNode]
	}
	return place, nil
}

// fdsPerRank is what one rank costs the launcher in file descriptors: its
// PMI connection, its process handle and, while it starts, a pipe.
const fdsPerRank = 3

// fitsLimits refuses a rank count this process cannot launch (open files,
// processes of the user) before anything is allocated or forked: a huge -n
// would otherwise fork until the descriptors run out, then kill what it
// started.
func fitsLimits(n int) error {
	var nofile, nproc syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile) == nil && nofile.Cur != rlimInfinity {
		if maxRanks := (int64(nofile.Cur) - 64) / fdsPerRank; int64(n) > maxRanks {
			return &UsageError{fmt.Sprintf("-n %d: %d ranks need about %d open files here, the limit is %d (ulimit -n): at most %d ranks", n, n, int64(n)*fdsPerRank+64, nofile.Cur, max(maxRanks, 0))}
		}
	}
	if syscall.Getrlimit(rlimitNproc, &nproc) == nil && nproc.Cur != rlimInfinity && uint64(n) > nproc.Cur {
		return &UsageError{fmt.Sprintf("-n %d: more ranks than the processes this user may run (%d, ulimit -u)", n, nproc.Cur)}
	}
	return nil
}

// rlimitNproc is RLIMIT_NPROC and rlimInfinity RLIM_INFINITY on Linux (not
// in package syscall).
const rlimInfinity = ^uint64(0)

const rlimitNproc = 0x6

// DefaultCacheRoot is SCR_LOCAL_ROOT, else /dev/shm/scr_launch.<uid> when
// /dev/shm exists, else $TMPDIR/scr_launch.<uid>.
func DefaultCacheRoot() string {
	if r := os.Getenv("SCR_LOCAL_ROOT"); r != "" {
		return r
	}
	name := "scr_launch." + strconv.Itoa(os.Getuid())
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return filepath.Join("/dev/shm", name)
	}
	return filepath.Join(os.TempDir(), name)
}

type rankProc struct {
	rank   int
	node   string
	cmd    *exec.Cmd
	pmi    net.Conn
	done   chan struct{}
	killed atomic.Bool
	res    RankResult // written by the waiter only
}

// Run launches the job and waits for it. The error is non-nil only when
// the launch itself failed (bad options, a rank could not start); how the
// ranks ended is in the Result.
func Run(ctx context.Context, opts Options) (*Result, error) {
	place, err := Placement(&opts)
	if err != nil {
		return nil, err
	}
	if opts.CacheRoot == "" {
		opts.CacheRoot = DefaultCacheRoot()
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	// The default root is a predictable name in /dev/shm: it must be ours
	// (internal/safefs), or another user could read or plant the caches.
	if _, err := os.Stat(filepath.Dir(opts.CacheRoot)); errors.Is(err, os.ErrNotExist) {
		os.MkdirAll(filepath.Dir(opts.CacheRoot), 0o700)
	}
	if err := safefs.EnsureDir(opts.CacheRoot, 0o700); err != nil {
		return nil, fmt.Errorf("scr_launch: node storage root: %w", err)
	}
	for _, n := range opts.Nodes {
		if err := os.MkdirAll(filepath.Join(opts.CacheRoot, n, "shm"), 0o700); err != nil {
			return nil, fmt.Errorf("scr_launch: storage of node %s: %w", n, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := pmi.NewServer(opts.N, fmt.Sprintf("scr_launch_%d_%d", os.Getpid(), time.Now().UnixNano()))
	procs := make([]*rankProc, opts.N)
	var wg sync.WaitGroup // PMI servers and waiters
	defer wg.Wait()
	killAll := func() {
		for _, p := range procs {
			if p != nil && p.cmd.Process != nil {
				select {
				case <-p.done:
				default:
					p.killed.Store(true)
					p.cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}
	}
	for r := range opts.N {
		p, err := start(opts, r, place[r])
		if err != nil {
			killAll()
			for _, q := range procs[:r] {
				q.cmd.Wait() // reap the ranks already started
				q.pmi.Close()
			}
			return nil, err
		}
		procs[r] = p
		if opts.Started != nil {
			opts.Started(r, p.cmd.Process.Pid)
		}
	}

	res := &Result{Ranks: make([]RankResult, opts.N), FirstFail: -1}
	var mu sync.Mutex
	exits := make(chan int, opts.N)
	for _, p := range procs {
		wg.Go(func() {
			srv.Serve(ctx, p.pmi, p.rank)
		})
		wg.Go(func() {
			err := p.cmd.Wait()
			p.pmi.Close()
			p.res.Node, p.res.Pid, p.res.End = p.node, p.cmd.Process.Pid, time.Now()
			p.res.Killed = p.killed.Load()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					p.res.Signal = ws.Signal()
					p.res.Code = 128 + int(ws.Signal())
				} else {
					p.res.Code = ee.ExitCode()
				}
			} else if err != nil {
				p.res.Code = 1
			}
			mu.Lock()
			res.Ranks[p.rank] = p.res
			if p.res.Code != 0 && res.FirstFail < 0 && !p.res.Killed {
				res.FirstFail = p.rank
			}
			mu.Unlock()
			close(p.done)
			if opts.Exited != nil {
				opts.Exited(p.rank, p.res)
			}
			exits <- p.rank
		})
	}

	poweroff := time.NewTicker(200 * time.Millisecond)
	defer poweroff.Stop()
	stopped := map[string]bool{}
	for left := opts.N; left > 0; {
		select {
		case r := <-exits:
			left--
			mu.Lock()
			failed := res.Ranks[r].Code != 0
			mu.Unlock()
			if failed && !opts.KeepGoing {
				killAll()
			}
		case sig := <-opts.Signals:
			for _, p := range procs {
				select {
				case <-p.done:
				default:
					p.cmd.Process.Signal(sig)
				}
			}
		case <-poweroff.C:
			for _, n := range opts.Nodes {
				if stopped[n] {
					continue
				}
				if _, err := os.Stat(filepath.Join(opts.CacheRoot, n, "poweroff")); err == nil {
					stopped[n] = true
					for _, p := range procs {
						if p.node == n {
							p.cmd.Process.Signal(syscall.SIGSTOP)
						}
					}
					fmt.Fprintf(opts.Stderr, "scr_launch: node %s powered off: its ranks are frozen\n", n)
				}
			}
		case <-ctx.Done():
			killAll()
			for left > 0 {
				<-exits
				left--
			}
			return res, ctx.Err()
		}
	}
	return res, nil
}

// start starts rank r on node with PMI on fd 3.
func start(opts Options, r int, node string) (*rankProc, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("scr_launch: PMI socket for rank %d: %w", r, err)
	}
	ours := os.NewFile(uintptr(fds[0]), "pmi-server")
	theirs := os.NewFile(uintptr(fds[1]), "pmi-client")
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("scr_launch: PMI socket for rank %d: %w", r, err)
	}
	base := filepath.Join(opts.CacheRoot, node, "shm")
	cmd := exec.Command(opts.Argv[0], opts.Argv[1:]...)
	cmd.Env = append(append([]string{}, opts.Env...),
		"PMI_FD=3",
		"PMI_RANK="+strconv.Itoa(r),
		"PMI_SIZE="+strconv.Itoa(opts.N),
		"SCR_NODE_NAME="+node,
		"SCR_CACHE_BASE="+base,
		"SCR_CNTL_BASE="+base,
		"SCR_LOCAL_ROOT="+opts.CacheRoot,
		"SCR_COMM_ADDR=127.0.0.1",
	)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stderr
	// Ranks die with the launcher, like srun's tasks with their step.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("scr_launch: start rank %d on %s: %w", r, node, err)
	}
	return &rankProc{rank: r, node: node, cmd: cmd, pmi: conn, done: make(chan struct{})}, nil
}

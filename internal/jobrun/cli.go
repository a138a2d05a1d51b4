package jobrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/launch"
	"github.com/scr-go/scr/internal/nodecheck"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
	_ "github.com/scr-go/scr/internal/rm/all" // every resource manager
)

// Errors the commands map to exit codes.
var (
	// ErrNotInAllocation: no resource manager names an allocation.
	ErrNotInAllocation = errors.New("not inside an allocation: run scr_run from a batch script or salloc/flux alloc, or set SCR_NODELIST (and SCR_JOB_ID) for the local cluster")
)

// UsageError is a mistake on the command line.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Env is how the commands read the environment (nil: the process's).
type Env func(string) (string, bool)

// CmdOptions are scr_run's inputs: the launcher and its arguments as typed.
type CmdOptions struct {
	Launcher string   // srun, flux, jsrun, lrun, mpirun, scr_launch (or a path to one)
	Args     []string // the launcher's arguments, program included (unless RunCmd or RestartCmd is set)
	// RunCmd and RestartCmd are SCR's --run-cmd and --restart-cmd: Args
	// then holds the launcher's options (see Options.RunCmd).
	RunCmd, RestartCmd string
	Env                Env
	Stdout             io.Writer // the application's output
	Stderr             io.Writer // the application's errors and scr_run's phase lines
	// Down and WatchDown override the node checks (tests); nil = the full
	// nodecheck decision before a launch, ping + resource manager while a
	// step runs.
	Down, WatchDown DownLister
	// Copier for postrun; nil: scavenge reports ErrNoCopier if a dataset
	// needs a copy.
	Copier Copier
}

// CmdResult is scr_run's outcome.
type CmdResult struct {
	Result
	// Passthrough is set when SCR_ENABLE=0 ran the launcher directly;
	// LastExit is then its exit code.
	Passthrough bool
}

// ScrRun is the scr_run command: configuration, resource manager, then the
// loop with prerun and postrun.
func ScrRun(ctx context.Context, o CmdOptions) (CmdResult, error) {
	res := CmdResult{Result: Result{LastExit: -1}}
	if o.Launcher == "" {
		return res, &UsageError{Msg: "no launcher: scr_run LAUNCHER [launcher args] PROG [args] (launchers: " + strings.Join(launch.Names(), ", ") + ")"}
	}
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	cfg, err := config.Load(config.Options{Env: config.Lookup(o.Env)})
	if err != nil {
		return res, err
	}
	enabled, err := cfg.Bool("SCR_ENABLE")
	if err != nil {
		return res, err
	}
	if !enabled {
		res.Passthrough = true
		res.LastExit, err = passthrough(ctx, o)
		return res, err
	}
	adapter, err := launch.Lookup(o.Launcher)
	if err != nil {
		return res, &UsageError{Msg: err.Error()}
	}
	var haveRestart []string
	if o.RestartCmd != "" {
		p := siblingCommand("scr_have_restart")
		if p == "" {
			return res, &UsageError{Msg: "--restart-cmd needs scr_have_restart, which is neither next to scr_run nor in PATH"}
		}
		haveRestart = []string{p}
	}
	for _, cmd := range [][]string{strings.Fields(o.RunCmd), strings.Fields(o.RestartCmd)} {
		if _, err := adapter.Build(launch.Request{Args: append(slices.Clone(o.Args), cmd...), Nodes: []string{"x"}, MetaDir: "/"}); err != nil {
			return res, &UsageError{Msg: err.Error()}
		}
	}

	p := cfg.PrefixDir()
	mgr, nodes, err := allocation(ctx, o.Env)
	if err != nil {
		return res, err
	}
	if v, _ := cfg.String("SCR_NODELIST"); v != "" {
		if nodes, err = hostlist.Expand(v); err != nil {
			return res, fmt.Errorf("SCR_NODELIST=%q: %w", v, err)
		}
	}
	// One validated view of the parameters: a bad value (SCR_RUNS=0, a
	// malformed duration) stops scr_run with the parameter and its origin
	// instead of being quietly replaced.
	st, err := cfg.Settings()
	if st != nil {
		// What the configuration has that scr-go does not act on (the
		// library prints the same at Init, from rank 0).
		for _, w := range st.Warnings {
			fmt.Fprintf(o.Stderr, "scr_run: warning: %s\n", w)
		}
	}
	if err != nil {
		return res, err
	}
	runs := st.Runs
	launchTimeout := st.LaunchTimeout
	if launchTimeout == 0 {
		launchTimeout = -1 // SCR_LAUNCH_TIMEOUT=0: no confirmation
	}
	finalizeTimeout := st.FinalizeTimeout
	if finalizeTimeout == 0 {
		finalizeTimeout = -1 // SCR_FINALIZE_TIMEOUT=0: no limit
	}
	down := o.Down
	if down == nil {
		var excl []string
		if v, _ := cfg.String("SCR_EXCLUDE_NODES"); v != "" {
			if excl, err = hostlist.Expand(v); err != nil {
				return res, fmt.Errorf("SCR_EXCLUDE_NODES=%q: %w", v, err)
			}
		}
		checks, err := nodeTests(cfg)
		if err != nil {
			return res, err
		}
		full := nodecheck.Options{Checks: checks}
		if self := siblingCommand("scr_list_down_nodes"); self != "" && slices.Contains(checks, nodecheck.CheckDirCapacity) {
			full.StorageArgv = append([]string{self}, nodecheck.StorageArgs(nil, false)...)
		}
		down = NodecheckLister{Manager: mgr, Exclude: excl, Options: full}
		if o.WatchDown == nil {
			// While a step runs: the resource manager and ping only,
			// every SCR_WATCH_INTERVAL, on the step's nodes.
			o.WatchDown = NodecheckLister{Manager: mgr, Exclude: excl, Options: nodecheck.Options{Checks: []string{nodecheck.CheckPing}}}
		}
	}
	var end time.Time
	if e, err := mgr.EndTime(ctx); err == nil && e > 0 {
		end = time.Unix(e, 0)
	}
	var wd *Watchdog
	if st.Watchdog && st.WatchdogTimeout > 0 {
		wd = &Watchdog{Timeout: st.WatchdogTimeout, TimeoutPFS: st.WatchdogTimeoutPFS, Flushing: func() bool { return flushing(p) }}
	}
	tlog := textLog(st, p, mgr.JobID())
	env := os.Environ()
	endStr := "0"
	if !end.IsZero() {
		endStr = fmt.Sprint(end.Unix())
	}
	env = append(env, "SCR_END_TIME="+endStr)
	// Every run of the allocation, and the scavenge at the end, must name
	// the same cache whatever the launcher tells its tasks (a Flux run's
	// FLUX_JOB_ID is that run's, not the allocation's).
	jobID := cacheJobID(cfg, mgr)
	env = append(env, "SCR_JOB_ID="+jobID)
	opts := Options{
		Prefix: p, JobID: mgr.JobID(), Nodes: nodes, Adapter: adapter, Args: o.Args, Launcher: o.Launcher,
		RunCmd: o.RunCmd, RestartCmd: o.RestartCmd, HaveRestart: haveRestart, TextLog: tlog,
		Env: env, Stdout: o.Stdout, Stderr: o.Stderr, Log: o.Stderr, Down: down, WatchDown: o.WatchDown,
		Halt: PrefixHalter{Prefix: p, End: end, HaltSeconds: st.HaltSeconds},
		Runs: runs, MinNodes: st.MinNodes, LaunchTimeout: launchTimeout, FinalizeTimeout: finalizeTimeout,
		WatchInterval: st.WatchInterval, Watchdog: wd,
		LastNodes: func() int {
			n, err := prefix.ReadNodes(p)
			if err != nil || n == nil {
				return 0
			}
			return n.Nodes
		},
		Prerun: func(context.Context) error { return Prerun(p) },
		Postrun: func(ctx context.Context, healthy []string, _ map[string]string) error {
			cp := o.Copier
			if cp == nil {
				var err error
				if cp, err = remoteCopier(ctx, mgr, p, jobID); err != nil {
					return err
				}
			}
			_, err := Scavenge(ctx, ScavengeOptions{Prefix: p, Nodes: healthy, Copier: cp, Log: o.Stderr, TextLog: tlog})
			return err
		},
	}
	r, err := Run(ctx, opts)
	res.Result = r
	return res, err
}

// allocation detects the resource manager and the allocation's nodes.
func allocation(ctx context.Context, env Env) (rm.Manager, []string, error) {
	mgr, err := rm.Detect(ctx, rm.Config{Env: rm.Env(env)})
	if errors.Is(err, rm.ErrNoManager) {
		return nil, nil, ErrNotInAllocation
	}
	if err != nil {
		return nil, nil, err
	}
	if mgr.JobID() == "" {
		return nil, nil, fmt.Errorf("%s names no job id: %w", mgr.Name(), ErrNotInAllocation)
	}
	nodes, err := mgr.Nodes(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: list the allocation's nodes: %w", mgr.Name(), err)
	}
	return mgr, nodes, nil
}

func flushing(p string) bool {
	st, err := prefix.ReadFlush(p)
	if err != nil {
		return false
	}
	for _, e := range st.Entries() {
		if e.Has(prefix.LocFlushing) {
			return true
		}
	}
	return false
}

// passthrough runs the launcher as given (SCR_ENABLE=0) and returns its exit
// code.
func passthrough(ctx context.Context, o CmdOptions) (int, error) {
	c := exec.CommandContext(ctx, o.Launcher, o.Args...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, o.Stdout, o.Stderr
	// On SIGINT/SIGTERM the launcher gets SIGTERM (it forwards it to its
	// tasks), and SIGKILL only if it is still there 10 s later.
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 10 * time.Second
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return exitCodeOf(c.ProcessState), nil
	}
	if err != nil {
		return -1, &launch.StartError{Argv: append([]string{o.Launcher}, o.Args...), Err: err}
	}
	return 0, nil
}

func exitCodeOf(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return 128 + 9
}

// PrefixOf returns the prefix directory a command uses: flag, else
// SCR_PREFIX (config), else the working directory.
func PrefixOf(flag string, env Env) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env == nil {
		env = os.LookupEnv
	}
	cfg, err := config.Load(config.Options{Env: config.Lookup(env)})
	if err != nil {
		return "", err
	}
	return cfg.PrefixDir(), nil
}

// ShouldExitCmdOptions are scr_should_exit's flags.
type ShouldExitCmdOptions struct {
	Prefix   string
	Down     string // host list
	MinNodes int    // 0 = SCR_MIN_NODES
	Runs     int    // < 0 = not given
	Env      Env
}

// ShouldExitCmd is scr_should_exit: the halt file, --runs, and the node count
// when inside an allocation.
func ShouldExitCmd(ctx context.Context, o ShouldExitCmdOptions) (Verdict, error) {
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	p, err := PrefixOf(o.Prefix, o.Env)
	if err != nil {
		return Verdict{}, err
	}
	cfg, err := config.Load(config.Options{Env: config.Lookup(o.Env), Dir: p})
	if err != nil {
		return Verdict{}, err
	}
	down := map[string]string{}
	if o.Down != "" {
		ns, err := hostlist.Expand(o.Down)
		if err != nil {
			return Verdict{}, &UsageError{Msg: fmt.Sprintf("--down %q: %v", o.Down, err)}
		}
		for _, n := range ns {
			down[n] = "Specified as down"
		}
	}
	min := o.MinNodes
	if min == 0 {
		m, err := cfg.Int("SCR_MIN_NODES")
		if err != nil {
			return Verdict{}, err
		}
		min = int(m)
	}
	hs, _ := cfg.Int("SCR_HALT_SECONDS")
	halter := PrefixHalter{Prefix: p, HaltSeconds: hs}
	var nodes []string
	if mgr, ns, err := allocation(ctx, o.Env); err == nil {
		nodes = ns
		if e, err := mgr.EndTime(ctx); err == nil && e > 0 {
			halter.End = time.Unix(e, 0)
		}
	} else if !errors.Is(err, ErrNotInAllocation) {
		return Verdict{}, err
	}
	last := 0
	if n, err := prefix.ReadNodes(p); err == nil && n != nil {
		last = n.Nodes
	}
	return ShouldExit(ctx, ShouldExitOptions{Halter: halter, Nodes: nodes, Down: down, MinNodes: min, Runs: o.Runs, LastNodes: last})
}

// nodeTests reads SCR_NODE_TESTS (comma or space separated); unset = SCR's
// default list.
func nodeTests(cfg *config.Config) ([]string, error) {
	v, err := cfg.String("SCR_NODE_TESTS")
	if err != nil || strings.TrimSpace(v) == "" {
		return nodecheck.DefaultChecks, err
	}
	var out []string
	for _, c := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		switch c {
		case nodecheck.CheckPing, nodecheck.CheckEcho, nodecheck.CheckDirCapacity:
			out = append(out, c)
		default:
			return nil, &config.ParamError{Name: "SCR_NODE_TESTS", Value: v, Reason: "unknown test " + c + " (known: ping, echo, dir_capacity)"}
		}
	}
	return out, nil
}

// siblingCommand finds a scr-go command next to the running one, else in
// PATH; "" if neither.
func siblingCommand(name string) string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// cacheJobID is the job id that keys the node caches of the allocation:
// SCR_JOB_ID when the user set it (environment or configuration file), else
// the resource manager's allocation id, which the library finds in its own
// environment too (internal/jobid; rmtest checks that they agree).
func cacheJobID(cfg *config.Config, mgr rm.Manager) string {
	if v, _ := cfg.String("SCR_JOB_ID"); strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return mgr.JobID()
}

// remoteCopier scavenges through the resource manager's transport by running
// `scr_postrun --scavenge-node` / `--list-node` on each node. jobID names
// the caches to read; it goes on the command line because not every
// transport passes the environment on (ssh does not).
func remoteCopier(ctx context.Context, mgr rm.Manager, prefixDir, jobID string) (Copier, error) {
	self := siblingCommand("scr_postrun")
	if self == "" {
		return nil, fmt.Errorf("%w: scr_postrun not found next to this command or in PATH", ErrNoCopier)
	}
	t, err := mgr.Transport(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: no way to run commands on the nodes: %w", mgr.Name(), err)
	}
	return RemoteCopier{
		Transport: t,
		Argv: func(id int64) []string {
			return []string{self, "--scavenge-node", "--id", fmt.Sprint(id), "--prefix", prefixDir, "--job-id", jobID}
		},
		ListArgv: []string{self, "--list-node", "--job-id", jobID},
		// Copying a checkpoint takes longer than a check: a node's share
		// is bounded by its cache size; ten minutes is the hang guard.
		Options: remote.Options{Timeout: 10 * time.Minute},
	}, nil
}

// PostrunCmdOptions are scr_postrun's inputs.
type PostrunCmdOptions struct {
	Prefix string // -p; "" = SCR_PREFIX or the working directory
	Env    Env
	Log    io.Writer
	Copier Copier // nil = remote copy through the resource manager
	Down   DownLister
}

// ErrNoHealthyNode: every node of the allocation is down.
var ErrNoHealthyNode = errors.New("no healthy node left to scavenge from")

// PostrunCmd is scr_postrun: find the healthy nodes of the allocation and
// scavenge the datasets that are only in their caches.
func PostrunCmd(ctx context.Context, o PostrunCmdOptions) (ScavengeResult, error) {
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	p, err := PrefixOf(o.Prefix, o.Env)
	if err != nil {
		return ScavengeResult{}, err
	}
	cfg, err := config.Load(config.Options{Env: config.Lookup(o.Env), Dir: p})
	if err != nil {
		return ScavengeResult{}, err
	}
	if on, err := cfg.Bool("SCR_ENABLE"); err != nil || !on {
		return ScavengeResult{}, err
	}
	mgr, nodes, err := allocation(ctx, o.Env)
	if err != nil {
		return ScavengeResult{}, err
	}
	down := o.Down
	if down == nil {
		checks, err := nodeTests(cfg)
		if err != nil {
			return ScavengeResult{}, err
		}
		var excl []string
		if v, _ := cfg.String("SCR_EXCLUDE_NODES"); v != "" {
			if excl, err = hostlist.Expand(v); err != nil {
				return ScavengeResult{}, fmt.Errorf("SCR_EXCLUDE_NODES=%q: %w", v, err)
			}
		}
		// Storage is not checked here: a full cache is still readable.
		checks = slices.DeleteFunc(slices.Clone(checks), func(c string) bool { return c == nodecheck.CheckDirCapacity })
		down = NodecheckLister{Manager: mgr, Exclude: excl, Options: nodecheck.Options{Checks: checks}}
	}
	dn, err := down.DownNodes(ctx, nodes, nil)
	if err != nil && o.Log != nil {
		fmt.Fprintf(o.Log, "scr_postrun: warning: node check incomplete: %v\n", err)
	}
	healthy := launch.Request{Nodes: nodes, Down: sortedKeys(dn)}.Healthy()
	if len(healthy) == 0 {
		return ScavengeResult{}, ErrNoHealthyNode
	}
	cp := o.Copier
	if cp == nil {
		if cp, err = remoteCopier(ctx, mgr, p, cacheJobID(cfg, mgr)); err != nil {
			return ScavengeResult{}, err
		}
	}
	return Scavenge(ctx, ScavengeOptions{Prefix: p, Nodes: healthy, Copier: cp, Log: o.Log})
}

// PrerunCmd is scr_prerun: resolve the prefix and prepare it, unless
// SCR_ENABLE=0. It returns the prefix and whether anything was done.
func PrerunCmd(dir string, env Env) (string, bool, error) {
	if env == nil {
		env = os.LookupEnv
	}
	p, err := PrefixOf(dir, env)
	if err != nil {
		return "", false, err
	}
	cfg, err := config.Load(config.Options{Env: config.Lookup(env), Dir: p})
	if err != nil {
		return p, false, err
	}
	if on, err := cfg.Bool("SCR_ENABLE"); err != nil || !on {
		return p, false, err
	}
	return p, true, Prerun(p)
}

// textLog is where scr_run writes SCR's text log events when
// SCR_LOG_ENABLE=1 and SCR_LOG_TXT_ENABLE=1 (nil otherwise), as SCR's
// scripts do through scr_log_event: the host is this node's short name. A
// failed write is dropped: the job matters more than its diary.
func textLog(st *config.Settings, prefixDir, jobID string) func(prefix.LogRecord) {
	if !st.LogEnable || !st.LogTxtEnable {
		return nil
	}
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	return func(r prefix.LogRecord) {
		r.Host, r.JobID = host, jobID
		_ = prefix.AppendLog(prefixDir, r)
	}
}

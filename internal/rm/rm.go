// Package rm is the resource-manager contract: what the job-script side
// (scr_run, scr_list_down_nodes, scr_postrun) asks of Slurm, Flux, LSF or
// the local simulated cluster, and how the right one is found.
//
// # The contract
//
// A Manager describes the allocation the caller runs in. Its rules, which
// every adapter obeys and the shared suite (package rmtest) checks:
//
//   - JobID() is the allocation's id (not a step's), fixed at Detect time.
//     It may be "" only when the manager cannot name one (for example a Flux
//     system instance outside any job); callers that need an id refuse then.
//   - Nodes(ctx) is the allocation's node list, in the resource manager's
//     order (rank order for Flux, SLURM_JOB_NODELIST order for Slurm),
//     without duplicates, never empty on success. It does not shrink when a
//     node dies: down nodes stay in the list and appear in DownNodes.
//   - DownNodes(ctx) maps each node of Nodes that the resource manager
//     believes unusable to a reason that names the manager and its state
//     ("slurm: down*: Not responding"). Nodes outside the allocation never
//     appear. An empty map means "none known", not "all healthy": the
//     manager may take minutes to notice a lost node, which is why
//     nodecheck probes nodes itself. The query is bounded by ctx and by
//     Config.CommandTimeout; a manager that cannot answer returns an error
//     and the caller goes on with its own checks.
//   - EndTime(ctx) is the allocation's end as Unix seconds; 0 = unknown,
//     -1 = no limit.
//   - Transport(ctx) is the means to run a command on one node of the
//     allocation (package remote): srun for Slurm, flux exec for Flux, ssh
//     for LSF, local processes for the local cluster.
//
// A Manager may also implement Pinger, when "ping" has a meaning of its own
// (the local cluster's simulated nodes); otherwise nodecheck uses ping(8).
//
// # Detection
//
// Detect(ctx, cfg) picks the manager from the environment: SCR_RESOURCE_MANAGER
// (SLURM, FLUX, LSF, LOCAL) if set, else the first adapter whose variables
// are present, in this order: Flux (FLUX_URI), Slurm (SLURM_JOB_ID), LSF
// (LSB_JOBID), local (SCR_NODELIST). Flux comes first because a Flux
// instance may run inside a Slurm job. Adapters register themselves from
// their package's init; import internal/rm/all to get every one.
//
// Every command an adapter runs goes through Config.Run, so tests feed it
// real captured output (see each adapter's testdata/README.md).
package rm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scr-go/scr/internal/remote"
)

// DefaultCommandTimeout bounds each resource-manager query. Job scripts
// must not hang because slurmctld or a Flux broker is slow: the node checks
// go on without the RM's answer.
const DefaultCommandTimeout = 2 * time.Second

// Env looks up one environment variable (os.LookupEnv has this shape).
type Env func(key string) (string, bool)

// MapEnv turns a map into an Env (tests, simulated nodes).
func MapEnv(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Get returns the variable's value, "" when unset.
func (e Env) Get(key string) string {
	if e == nil {
		return ""
	}
	v, _ := e(key)
	return v
}

// Runner runs one command (argv[0] is the program) and returns its stdout.
// A non-zero exit or a failure to start returns a *CmdError.
type Runner func(ctx context.Context, argv []string) ([]byte, error)

// CmdError says which resource-manager command failed and how.
type CmdError struct {
	Argv     []string
	ExitCode int // -1 when it did not exit (not found, killed, timed out)
	Stderr   string
	Err      error
}

func (e *CmdError) Error() string {
	s := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

// Unwrap returns the cause.
func (e *CmdError) Unwrap() error { return e.Err }

// ExecRunner runs commands as processes, each bounded by timeout.
func ExecRunner(timeout time.Duration) Runner {
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	return func(ctx context.Context, argv []string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.WaitDelay = 200 * time.Millisecond
		err := cmd.Run()
		if err == nil {
			return out.Bytes(), nil
		}
		code := -1
		if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
			code = cmd.ProcessState.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer within %v: %w", timeout, ctx.Err())
		}
		return out.Bytes(), &CmdError{Argv: argv, ExitCode: code, Stderr: strings.TrimSpace(errb.String()), Err: err}
	}
}

// Config is what Detect and the adapters' constructors need.
type Config struct {
	Env            Env           // default os.LookupEnv
	Run            Runner        // default ExecRunner(CommandTimeout)
	CommandTimeout time.Duration // default DefaultCommandTimeout
	Now            func() time.Time
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Env == nil {
		c.Env = os.LookupEnv
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.Run == nil {
		c.Run = ExecRunner(c.CommandTimeout)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Manager is one resource manager's view of the allocation (see the
// package doc for each method's rules).
type Manager interface {
	Name() string
	JobID() string
	Nodes(ctx context.Context) ([]string, error)
	DownNodes(ctx context.Context) (map[string]string, error)
	EndTime(ctx context.Context) (int64, error)
	Transport(ctx context.Context) (remote.Transport, error)
}

// Pinger is implemented by managers whose nodes are reached otherwise than
// by ping(8) (the local cluster's simulated nodes). Ping returns nil when
// the node answers, an error saying why not otherwise.
type Pinger interface {
	Ping(ctx context.Context, node string) error
}

// ErrNoManager is returned by Detect when nothing in the environment names
// an allocation.
var ErrNoManager = errors.New("no resource manager: not inside an allocation (no FLUX_URI, SLURM_JOB_ID, LSB_JOBID or SCR_NODELIST)")

// ErrNotAllocated is wrapped by Nodes when the manager is present but the
// environment does not describe an allocation's nodes.
var ErrNotAllocated = errors.New("no node list for this allocation")

// Adapter is one registered resource manager.
type Adapter struct {
	Name  string // SLURM, FLUX, LSF, LOCAL (the SCR_RESOURCE_MANAGER value)
	Order int    // lower is tried first
	// Present reports whether the environment names this manager.
	Present func(env Env) bool
	// New builds the manager; called by Detect when Present or named.
	New func(ctx context.Context, cfg Config) (Manager, error)
}

var (
	regMu    sync.Mutex
	adapters []Adapter
)

// Register adds an adapter; adapters call it from init.
func Register(a Adapter) {
	regMu.Lock()
	defer regMu.Unlock()
	adapters = append(adapters, a)
	sort.SliceStable(adapters, func(i, j int) bool { return adapters[i].Order < adapters[j].Order })
}

// Registered lists the adapters' names in detection order.
func Registered() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var names []string
	for _, a := range adapters {
		names = append(names, a.Name)
	}
	return names
}

// Detect returns the manager the environment names (see the package doc).
func Detect(ctx context.Context, cfg Config) (Manager, error) {
	cfg = cfg.WithDefaults()
	regMu.Lock()
	list := append([]Adapter(nil), adapters...)
	regMu.Unlock()
	if name := strings.ToUpper(strings.TrimSpace(cfg.Env.Get("SCR_RESOURCE_MANAGER"))); name != "" {
		for _, a := range list {
			if a.Name == name {
				return a.New(ctx, cfg)
			}
		}
		return nil, fmt.Errorf("SCR_RESOURCE_MANAGER=%s: unknown resource manager (known: %s)", name, strings.Join(Registered(), ", "))
	}
	for _, a := range list {
		if a.Present(cfg.Env) {
			return a.New(ctx, cfg)
		}
	}
	return nil, ErrNoManager
}

// Lines splits command output into trimmed non-empty lines.
func Lines(out []byte) []string {
	var ls []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// OnlyNodes drops from down every node not in nodes (the contract: down
// nodes are nodes of the allocation).
func OnlyNodes(down map[string]string, nodes []string) map[string]string {
	in := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		in[n] = true
	}
	for n := range down {
		if !in[n] {
			delete(down, n)
		}
	}
	return down
}

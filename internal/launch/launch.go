// Package launch is the launcher contract of scr_run: it turns the user's own
// launcher arguments (srun, flux run, jsrun, lrun, mpirun, scr_launch) into
// the command that runs the same job on the healthy nodes of the allocation,
// starts it, waits for it and kills the job step fast.
//
// The life of one step:
//
//	a := launch.Lookup("srun")             // one Adapter per launcher
//	cmd, err := a.Build(req)               // pure: argv in -> argv out
//	p, err := launch.Start(ctx, a, cmd, o) // own process group
//	<-p.Done()                             // or p.Kill(ctx, reason)
//	code := p.ExitCode()
//
// Build is pure (no I/O) so every adapter is table-tested: the request holds
// the allocation's nodes and the down nodes; the command leaves the down nodes
// out (srun --exclude, flux --requires=-host:, jsrun/lrun --exclude_hosts, an
// mpirun hostfile, scr_launch --nodes) and keeps the size the user asked for,
// so spare nodes replace lost ones.
//
// Kill sends SIGKILL to the launcher's process group and then asks the
// resource manager to cancel the step (scancel JOB.STEP, flux cancel ID),
// because a launcher killed by SIGKILL cannot tell the resource manager
// itself and a step with a dead node can otherwise linger for minutes. The
// step id is found by name (srun) or from the submit output (flux): no sleep.
package launch

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Request is what the job-script loop asks for: run the user's launcher
// arguments on the allocation without the down nodes.
type Request struct {
	// Args are the user's launcher arguments without the launcher's name,
	// e.g. ["-N", "4", "-n", "8", "./app", "-x"] for srun.
	Args []string
	// Nodes are the allocation's nodes in the resource manager's order.
	Nodes []string
	// Down are the nodes to leave out (down or excluded, sticky for the
	// allocation). Nodes outside Nodes are ignored for inclusion lists and
	// still excluded for exclusion lists.
	Down []string
	// MetaDir is the directory where a launcher's hostfile is written
	// (scr_run uses <prefix>/.scr).
	MetaDir string
	// JobID is the allocation's id (for naming and cancelling the step).
	JobID string
	// RunID is scr_run's attempt number, also exported as SCR_RUN_ID.
	RunID int
}

// Healthy returns Nodes minus Down, in allocation order.
func (r Request) Healthy() []string {
	down := make(map[string]bool, len(r.Down))
	for _, n := range r.Down {
		down[n] = true
	}
	out := make([]string, 0, len(r.Nodes))
	for _, n := range r.Nodes {
		if !down[n] {
			out = append(out, n)
		}
	}
	return out
}

// File is a file the command needs before it starts (an mpirun hostfile).
type File struct {
	Path    string
	Content []byte
}

// Command is a launch built for one attempt.
type Command struct {
	// Argv is the process to start and wait for. For a submit-style
	// launcher (flux) it is the attach command, and the step id is
	// appended to it after Submit ran.
	Argv []string
	// Submit, when set, runs first; its last non-empty stdout line is the
	// step id (flux submit prints the job id).
	Submit []string
	// Files are written before the step starts.
	Files []File
	// Nodes are the nodes the step may run on when the launcher is given
	// an inclusion list (mpirun, scr_launch); nil for exclusion lists,
	// where the resource manager picks among the healthy nodes.
	Nodes []string
	// Exclude are the nodes the command leaves out explicitly.
	Exclude []string
	// StepName is the name the step carries in the resource manager
	// (srun --job-name), used to find the step id when killing it.
	StepName string
}

// Adapter knows one launcher's command line.
type Adapter interface {
	// Name is the launcher's command name (srun, flux, jsrun, ...).
	Name() string
	// Build returns the command that runs req.Args on the healthy nodes.
	// It does no I/O.
	Build(req Request) (Command, error)
	// WantedNodes is the node count the user's arguments ask for (srun -N,
	// flux -N, scr_launch --nodes), 0 when they do not say.
	WantedNodes(args []string) int
	// Cancel asks the resource manager to end the step after the launcher
	// process was killed. id is the step id from Submit, or "" when the
	// adapter finds it itself (srun by step name). Adapters without a
	// resource-manager step return nil.
	Cancel(ctx context.Context, run Runner, jobID string, c Command, id string) error
}

// Runner runs a short helper command (squeue, scancel, flux cancel) and
// returns its stdout. ExecRunner is the real one; tests pass a literal.
type Runner func(ctx context.Context, argv []string) ([]byte, error)

var adapters = map[string]Adapter{}

func register(a Adapter, names ...string) {
	for _, n := range names {
		adapters[n] = a
	}
}

// Lookup returns the adapter of a launcher command (the base name of the
// command: "srun", "/usr/bin/srun" and "flux" work).
func Lookup(launcher string) (Adapter, error) {
	name := launcher
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if a, ok := adapters[name]; ok {
		return a, nil
	}
	return nil, &UnknownLauncherError{Launcher: launcher}
}

// Names lists the launchers Lookup knows, sorted.
func Names() []string {
	var out []string
	for n := range adapters {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// UnknownLauncherError is returned by Lookup for a launcher without adapter.
type UnknownLauncherError struct{ Launcher string }

func (e *UnknownLauncherError) Error() string {
	return fmt.Sprintf("launch: unknown launcher %q: use one of %s", e.Launcher, strings.Join(Names(), ", "))
}

// ArgsError says what is wrong with the user's launcher arguments.
type ArgsError struct {
	Launcher string
	Msg      string
}

func (e *ArgsError) Error() string {
	return fmt.Sprintf("launch: %s arguments: %s", e.Launcher, e.Msg)
}

// optValue finds a long or short option in args before the program (the
// first non-option argument, as far as the option table knows). It returns
// the value, the index range [i, j) the option occupies and whether it was
// found. long is like "--nodes", short like "-N" ("" for none). withValue
// lists the launcher's options that take a separate value, so that the
// program is found correctly.
func optValue(args []string, long, short string, withValue map[string]bool) (val string, i, j int, ok bool) {
	for k := 0; k < len(args); k++ {
		a := args[k]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return "", 0, 0, false
		}
		if long != "" && (a == long) {
			if k+1 < len(args) {
				return args[k+1], k, k + 2, true
			}
			return "", k, k + 1, true
		}
		if long != "" && strings.HasPrefix(a, long+"=") {
			return a[len(long)+1:], k, k + 1, true
		}
		if short != "" && a == short {
			if k+1 < len(args) {
				return args[k+1], k, k + 2, true
			}
			return "", k, k + 1, true
		}
		if short != "" && len(short) == 2 && strings.HasPrefix(a, short) && !strings.HasPrefix(a, "--") {
			v := a[len(short):]
			v = strings.TrimPrefix(v, "=")
			return v, k, k + 1, true
		}
		name := a
		if e := strings.IndexByte(a, '='); e >= 0 {
			name = a[:e]
		} else if withValue[name] {
			k++ // skip the option's separate value
		}
	}
	return "", 0, 0, false
}

// progIndex is the index of the first non-option argument (the program).
func progIndex(args []string, withValue map[string]bool) int {
	for k := 0; k < len(args); k++ {
		a := args[k]
		if a == "--" {
			return k + 1
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			return k
		}
		if !strings.Contains(a, "=") && withValue[a] {
			k++
		}
	}
	return len(args)
}

func atoiPos(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func joinNodes(nodes []string) string { return strings.Join(nodes, ",") }

func cloneArgs(a []string) []string { return append([]string(nil), a...) }

package launch

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/scr-go/scr/internal/hostlist"
)

func init() {
	register(Srun{}, "srun")
	register(Flux{}, "flux")
	register(Jsrun{}, "jsrun")
	register(Lrun{}, "lrun")
	register(Mpirun{}, "mpirun", "mpiexec")
	register(Local{}, "scr_launch")
}

// ---- srun ----

// Srun is Slurm's srun: down nodes go to --exclude (merged with the user's
// own), the step gets a name to find its id, and when nodes are left out and
// the user gave no --nodes, --nodes=<healthy count> stops srun from asking for
// the whole allocation (it defaults to SLURM_NNODES). Relaunches get
// --overlap (see Build).
type Srun struct{}

var srunWithValue = setOf("-A", "--account", "-b", "--begin", "-c", "--cpus-per-task", "-d",
	"--dependency", "-D", "--chdir", "-e", "--error", "-i", "--input", "-J", "--job-name", "-L",
	"--licenses", "-m", "--distribution", "-n", "--ntasks", "-N", "--nodes", "-o", "--output", "-p",
	"--partition", "-q", "--qos", "-t", "--time", "-w", "--nodelist", "-x", "--exclude", "-C",
	"--constraint", "-G", "--gpus", "-M", "--clusters", "-T", "--threads", "-W", "--wait",
	"--mpi", "--ntasks-per-node", "--mem", "--mem-per-cpu", "--cpu-bind", "--export", "--gres",
	"--signal", "--comment", "--het-group", "--kill-on-bad-exit", "-K", "--ntasks-per-socket",
	"--mem-bind", "--gpus-per-node", "--gpus-per-task", "--cpus-per-gpu", "--network",
	"--switches", "--time-min", "--reservation", "--task-epilog", "--task-prolog", "--epilog",
	"--prolog", "--open-mode", "--propagate", "--slurmd-debug", "--tmp", "-r", "--relative")

func setOf(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, x := range s {
		m[x] = true
	}
	return m
}

func (Srun) Name() string { return "srun" }

func (Srun) WantedNodes(args []string) int {
	v, _, _, ok := optValue(args, "--nodes", "-N", srunWithValue)
	if !ok {
		return 0
	}
	// -N min[-max]: the minimum is what the run needs.
	return atoiPos(v)
}

func (s Srun) Build(r Request) (Command, error) {
	args := cloneArgs(r.Args)
	if progIndex(args, srunWithValue) >= len(args) {
		return Command{}, &ArgsError{Launcher: "srun", Msg: "no program to run: scr_run srun [srun options] PROG [args]"}
	}
	var pre []string
	exclude := append([]string(nil), r.Down...)
	if v, i, j, ok := optValue(args, "--exclude", "-x", srunWithValue); ok {
		// Keep the user's exclusions (they may be ranges or a file name
		// srun resolves) and add ours as a separate list.
		args = append(args[:i:i], args[j:]...)
		if len(exclude) > 0 {
			pre = append(pre, "--exclude="+v+","+hostlist.Compress(exclude))
		} else {
			pre = append(pre, "--exclude="+v)
		}
	} else if len(exclude) > 0 {
		pre = append(pre, "--exclude="+hostlist.Compress(exclude))
	}
	if len(r.Down) > 0 {
		if v, i, j, ok := optValue(args, "--nodelist", "-w", srunWithValue); ok {
			// The user fixed the nodes: keep the healthy ones and put a
			// spare in the place of each down one, so the run keeps its size.
			nl, err := replaceDown("--nodelist", v, r)
			if err != nil {
				return Command{}, &ArgsError{Launcher: "srun", Msg: err.Error()}
			}
			args = append(args[:i:i], args[j:]...)
			pre = append(pre, "--nodelist="+nl)
		} else if _, _, _, ok := optValue(args, "--nodes", "-N", srunWithValue); !ok {
			pre = append(pre, "--nodes="+strconv.Itoa(len(r.Healthy())))
		}
	}
	if r.RunID > 1 && !hasFlag(args, "--overlap", srunWithValue) && !hasFlag(args, "--exclusive", srunWithValue) {
		// A killed step that spanned a dead node stays COMPLETING until
		// Slurm declares the node down (SlurmdTimeout, often 300 s) and
		// keeps its CPUs on the surviving nodes: without --overlap the
		// relaunch waits with "Requested nodes are busy".
		pre = append(pre, "--overlap")
	}
	name, _, _, ok := optValue(args, "--job-name", "-J", srunWithValue)
	if !ok {
		name = fmt.Sprintf("scr.%s.%d", r.JobID, r.RunID)
		pre = append(pre, "--job-name="+name)
	}
	argv := append([]string{"srun"}, pre...)
	argv = append(argv, args...)
	return Command{Argv: argv, Exclude: exclude, StepName: name}, nil
}

// replaceDown rewrites a user's node list (a hostlist expression given with
// option opt): every down node is replaced by a healthy node of the
// allocation that the list does not name yet, in allocation order. A list
// given as a file cannot be rewritten.
func replaceDown(opt, list string, r Request) (string, error) {
	if strings.Contains(list, "/") {
		return "", fmt.Errorf("%s %s names a file, so scr_run cannot replace the down nodes %s in it: "+
			"give the nodes as a host list, or a node count (-N) with spare nodes in the allocation", opt, list, joinNodes(r.Down))
	}
	nodes, err := hostlist.Expand(list)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", opt, list, err)
	}
	down := make(map[string]bool, len(r.Down))
	for _, n := range r.Down {
		down[n] = true
	}
	named := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		named[n] = true
	}
	var spares []string
	for _, n := range r.Healthy() {
		if !named[n] {
			spares = append(spares, n)
		}
	}
	out := make([]string, 0, len(nodes))
	var lost []string
	for _, n := range nodes {
		if !down[n] {
			out = append(out, n)
			continue
		}
		if len(spares) == 0 {
			lost = append(lost, n)
			continue
		}
		out, spares = append(out, spares[0]), spares[1:]
	}
	if len(lost) > 0 {
		return "", fmt.Errorf("%s %s: no healthy spare node left to replace the down nodes %s: "+
			"allocate spare nodes, or lower the run's node count", opt, list, joinNodes(lost))
	}
	return hostlist.Compress(out), nil
}

// Cancel finds the newest step of the job with the command's step name
// (squeue --steps) and cancels it (scancel JOB.STEP). No step means the
// launcher died before Slurm created one: nothing to cancel.
func (Srun) Cancel(ctx context.Context, run Runner, jobID string, c Command, _ string) error {
	if jobID == "" || c.StepName == "" {
		return nil
	}
	out, err := run(ctx, []string{"squeue", "-h", "-s", "-j", jobID, "-o", "%i %j"})
	if err != nil {
		return fmt.Errorf("srun: find step %q of job %s: %w", c.StepName, jobID, err)
	}
	id := newestStep(out, jobID, c.StepName)
	if id == "" {
		return nil
	}
	if _, err := run(ctx, []string{"scancel", id}); err != nil {
		return fmt.Errorf("srun: scancel step %s: %w (cancel it by hand: scancel %s)", id, err, id)
	}
	return nil
}

// newestStep picks, from `squeue -h -s -o "%i %j"` output, the step of job
// jobID named name with the highest step number.
func newestStep(out []byte, jobID, name string) string {
	best, bestN := "", -1
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != name {
			continue
		}
		job, step, ok := strings.Cut(f[0], ".")
		if !ok || job != jobID {
			continue
		}
		n, err := strconv.Atoi(step)
		if err != nil {
			continue
		}
		if n > bestN {
			best, bestN = f[0], n
		}
	}
	return best
}

// ---- flux ----

// Flux is `flux run` / `flux submit`. Both become `flux submit` (which prints
// the job id) followed by `flux job attach ID` (waits, forwards output and
// exits with the job's code), so scr_run always knows the id to cancel. Down
// nodes become --requires=-host:LIST. A user's own host constraint
// (--requires=host:LIST, the counterpart of srun -w) gets a spare in place of
// each down node: Flux ANDs all --requires, so host:LIST with a down node in
// it and -host:DOWN together would leave the run too few nodes.
type Flux struct{}

var fluxWithValue = setOf("-N", "--nodes", "-n", "--ntasks", "-c", "--cores-per-task", "-g",
	"--gpus-per-task", "-t", "--time-limit", "--requires", "--require", "-o", "--setopt", "-S", "--setattr",
	"--env", "--env-remove", "--env-file", "--urgency", "--job-name", "--input", "--output",
	"--error", "--label-io", "--flags", "--dependency", "--taskmap", "--queue", "-q", "--bank",
	"-B", "--conf", "--cwd", "--begin-time", "--signal", "--add-file", "--tasks-per-node",
	"--tasks-per-core", "--gpus-per-node", "--cores", "--cc", "--bcc", "--quiet", "-u")

func (Flux) Name() string { return "flux" }

func (Flux) WantedNodes(args []string) int {
	if len(args) == 0 {
		return 0
	}
	v, _, _, ok := optValue(args[1:], "--nodes", "-N", fluxWithValue)
	if !ok {
		return 0
	}
	return atoiPos(v)
}

func (Flux) Build(r Request) (Command, error) {
	if len(r.Args) == 0 || (r.Args[0] != "run" && r.Args[0] != "submit") {
		return Command{}, &ArgsError{Launcher: "flux", Msg: "scr_run needs `flux run ...` or `flux submit ...`"}
	}
	rest := cloneArgs(r.Args[1:])
	if progIndex(rest, fluxWithValue) >= len(rest) {
		return Command{}, &ArgsError{Launcher: "flux", Msg: "no program to run: scr_run flux run [options] PROG [args]"}
	}
	submit := []string{"flux", "submit"}
	if len(r.Down) > 0 {
		var err error
		if rest, err = fluxReplaceDown(rest, r); err != nil {
			return Command{}, &ArgsError{Launcher: "flux", Msg: err.Error()}
		}
		submit = append(submit, "--requires=-host:"+hostlist.Compress(r.Down))
	}
	if _, _, _, ok := optValue(rest, "--job-name", "", fluxWithValue); !ok {
		submit = append(submit, fmt.Sprintf("--job-name=scr.%s.%d", r.JobID, r.RunID))
	}
	submit = append(submit, rest...)
	return Command{
		Argv:    []string{"flux", "job", "attach"},
		Submit:  submit,
		Exclude: append([]string(nil), r.Down...),
	}, nil
}

// fluxReplaceDown rewrites each of the user's --requires that is a single
// host term (host:LIST or hosts:LIST, RFC 35) and names a down node, with
// replaceDown. Other constraints are left to Flux (ANDed with -host:DOWN).
func fluxReplaceDown(args []string, r Request) ([]string, error) {
	end := progIndex(args, fluxWithValue)
	for k := 0; k < end; k++ {
		a, vi := args[k], -1
		switch {
		case a == "--requires" || a == "--require":
			vi = k + 1
		case strings.HasPrefix(a, "--requires=") || strings.HasPrefix(a, "--require="):
			vi = k
		case fluxWithValue[a]:
			k++ // skip its value
			continue
		default:
			continue
		}
		if vi >= end {
			break
		}
		v := args[vi]
		prefix := ""
		if vi == k {
			prefix, v, _ = strings.Cut(v, "=")
			prefix += "="
		}
		op, list, ok := strings.Cut(v, ":")
		if !ok || (op != "host" && op != "hosts") || strings.ContainsAny(list, " \t'\"()") {
			continue
		}
		named, err := hostlist.Expand(list)
		if err != nil || len(hostlist.Intersect(named, r.Down)) == 0 {
			continue
		}
		nl, err := replaceDown("--requires="+op+":", list, r)
		if err != nil {
			return nil, err
		}
		args[vi] = prefix + op + ":" + nl
		k = vi
	}
	return args, nil
}

// Cancel runs `flux cancel ID`.
func (Flux) Cancel(ctx context.Context, run Runner, _ string, _ Command, id string) error {
	if id == "" {
		return nil
	}
	if _, err := run(ctx, []string{"flux", "cancel", id}); err != nil {
		return fmt.Errorf("flux: cancel job %s: %w (cancel it by hand: flux cancel %s)", id, err, id)
	}
	return nil
}

// ---- jsrun / lrun ----

// Jsrun is LSF's jsrun: down nodes go to --exclude_hosts. Killing the
// launcher process ends the step; there is no step id to cancel (jskill
// needs a jslist id, which scr_run does not look up).
type Jsrun struct{}

func (Jsrun) Name() string                  { return "jsrun" }
func (Jsrun) WantedNodes(args []string) int { return 0 }
func (Jsrun) Build(r Request) (Command, error) {
	if len(r.Args) == 0 {
		return Command{}, &ArgsError{Launcher: "jsrun", Msg: "no program to run"}
	}
	argv := []string{"jsrun"}
	if len(r.Down) > 0 {
		argv = append(argv, "--exclude_hosts", joinNodes(r.Down))
	}
	argv = append(argv, r.Args...)
	return Command{Argv: argv, Exclude: append([]string(nil), r.Down...)}, nil
}
func (Jsrun) Cancel(context.Context, Runner, string, Command, string) error { return nil }

// Lrun is LLNL's lrun wrapper: down nodes go to --exclude_hosts=LIST.
type Lrun struct{}

func (Lrun) Name() string { return "lrun" }
func (Lrun) WantedNodes(args []string) int {
	v, _, _, ok := optValue(args, "", "-N", nil)
	if !ok {
		return 0
	}
	return atoiPos(v)
}
func (Lrun) Build(r Request) (Command, error) {
	if len(r.Args) == 0 {
		return Command{}, &ArgsError{Launcher: "lrun", Msg: "no program to run"}
	}
	argv := []string{"lrun"}
	if len(r.Down) > 0 {
		argv = append(argv, "--exclude_hosts="+joinNodes(r.Down))
	}
	argv = append(argv, r.Args...)
	return Command{Argv: argv, Exclude: append([]string(nil), r.Down...)}, nil
}
func (Lrun) Cancel(context.Context, Runner, string, Command, string) error { return nil }

// ---- mpirun ----

// Mpirun is mpirun/mpiexec (Open MPI, MPICH hydra): scr_run writes the
// healthy nodes, one per line, to <MetaDir>/hostfile and passes --hostfile.
// A hostfile of the user's own cannot be merged and is refused.
type Mpirun struct{}

var mpirunHostOpts = []string{"--hostfile", "-hostfile", "--machinefile", "-machinefile", "-f", "--host", "-host", "-H"}

func (Mpirun) Name() string                  { return "mpirun" }
func (Mpirun) WantedNodes(args []string) int { return 0 }
func (Mpirun) Build(r Request) (Command, error) {
	if len(r.Args) == 0 {
		return Command{}, &ArgsError{Launcher: "mpirun", Msg: "no program to run"}
	}
	for _, a := range r.Args {
		for _, o := range mpirunHostOpts {
			if a == o || strings.HasPrefix(a, o+"=") {
				return Command{}, &ArgsError{Launcher: "mpirun", Msg: fmt.Sprintf(
					"%s: scr_run writes the host list itself (the healthy nodes); drop %s", o, o)}
			}
		}
	}
	healthy := r.Healthy()
	if len(healthy) == 0 {
		return Command{}, &ArgsError{Launcher: "mpirun", Msg: "no healthy node to write into the hostfile"}
	}
	if r.MetaDir == "" {
		return Command{}, &ArgsError{Launcher: "mpirun", Msg: "no directory for the hostfile (set SCR_PREFIX)"}
	}
	var b bytes.Buffer
	for _, n := range healthy {
		b.WriteString(n)
		b.WriteByte('\n')
	}
	path := filepath.Join(r.MetaDir, "hostfile")
	argv := append([]string{"mpirun", "--hostfile", path}, r.Args...)
	return Command{Argv: argv, Files: []File{{Path: path, Content: b.Bytes()}}, Nodes: healthy}, nil
}
func (Mpirun) Cancel(context.Context, Runner, string, Command, string) error { return nil }

// ---- scr_launch (local) ----

// Local is scr-go's own launcher for a simulated cluster on one machine:
// `scr_launch -n N --nodes a,b,c PROG`. The --nodes list is rebuilt with the
// same length: the user's nodes that are still healthy, then spare healthy
// nodes of the allocation in order. Killing its process group ends every rank.
type Local struct{}

var localWithValue = setOf("-n", "--nodes", "--dir", "--ppn", "--ranks-per-node", "--cache-root")

func (Local) Name() string { return "scr_launch" }

func (Local) WantedNodes(args []string) int {
	v, _, _, ok := optValue(args, "--nodes", "", localWithValue)
	if !ok || v == "" {
		return 0
	}
	nodes, err := hostlist.Expand(v)
	if err != nil {
		return 0
	}
	return len(nodes)
}

func (l Local) Build(r Request) (Command, error) {
	args := cloneArgs(r.Args)
	if progIndex(args, localWithValue) >= len(args) {
		return Command{}, &ArgsError{Launcher: "scr_launch", Msg: "no program to run: scr_run scr_launch -n N --nodes a,b PROG"}
	}
	down := setOf(r.Down...)
	v, i, j, ok := optValue(args, "--nodes", "", localWithValue)
	var want []string
	if ok {
		var err error
		if want, err = hostlist.Expand(v); err != nil {
			return Command{}, &ArgsError{Launcher: "scr_launch", Msg: fmt.Sprintf("--nodes %q: %v", v, err)}
		}
		args = append(args[:i:i], args[j:]...)
	}
	alloc := r.Nodes
	if len(alloc) == 0 {
		alloc = want
	}
	var nodes []string
	used := map[string]bool{}
	for _, n := range want {
		if !down[n] && !used[n] {
			nodes = append(nodes, n)
			used[n] = true
		}
	}
	size := len(want)
	if size == 0 {
		// No list given: every healthy node of the allocation.
		size = len(Request{Nodes: alloc, Down: r.Down}.Healthy())
	}
	for _, n := range alloc {
		if len(nodes) >= size {
			break
		}
		if !down[n] && !used[n] {
			nodes = append(nodes, n)
			used[n] = true
		}
	}
	if len(nodes) < size {
		return Command{}, &ArgsError{Launcher: "scr_launch", Msg: fmt.Sprintf(
			"only %d healthy nodes (%s) for the %d asked; down: %s", len(nodes), joinNodes(nodes), size, joinNodes(r.Down))}
	}
	argv := append([]string{"scr_launch", "--nodes", joinNodes(nodes)}, args...)
	return Command{Argv: argv, Nodes: nodes, Exclude: append([]string(nil), r.Down...)}, nil
}
func (Local) Cancel(context.Context, Runner, string, Command, string) error { return nil }

// hasFlag reports whether a boolean option (or --opt=value) appears before
// the program.
func hasFlag(args []string, flag string, withValue map[string]bool) bool {
	end := progIndex(args, withValue)
	for _, a := range args[:end] {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

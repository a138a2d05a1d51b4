// Package runcmd is the shared main of scr_run and its shortcuts (scr_srun,
// scr_flux_run): argument handling, signals, and the one switch that maps
// the loop's outcome to an exit code.
package runcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/jobrun"
	"github.com/scr-go/scr/internal/launch"
)

// Exit codes of scr_run (documented in Usage).
const (
	ExitDone        = 0   // the last run exited 0, or a halt condition stopped the loop
	ExitNotDone     = 1   // runs used up, too few nodes, or launches never started
	ExitUsage       = 2   // bad command line or launcher arguments
	ExitCannotRun   = 3   // not in an allocation, launcher missing, bad configuration, prerun failed, halt file unreadable
	ExitPostrun     = 4   // the scavenge after the loop failed: the newest checkpoint may be in cache only
	ExitInterrupted = 130 // SIGINT/SIGTERM: the step was killed and postrun ran
)

// Usage is the --help text; name is the command, launcher the fixed
// launcher of a shortcut ("" for scr_run).
func Usage(name, launcher string) string {
	synopsis := name + " LAUNCHER [launcher args] PROG [args]"
	extended := name + " LAUNCHER [launcher args] [-rc|--run-cmd=CMD] [-rs|--restart-cmd=CMD] [launcher args]"
	if launcher != "" {
		synopsis = fmt.Sprintf("%s [%s args] PROG [args]      (= scr_run %s ...)", name, launcher, launcher)
		extended = fmt.Sprintf("%s [%s args] [-rc|--run-cmd=CMD] [-rs|--restart-cmd=CMD] [%s args]", name, launcher, launcher)
	}
	return fmt.Sprintf(`Usage: %s
       %s

Run a parallel job under scr-go's recovery loop: launch it on the healthy
nodes of the allocation, confirm that it started, kill the step at once when
a node fails, a rank reports a lost peer, scr_halt --immediate is given or the
watchdog fires, then relaunch without the failed nodes (spare nodes replace
them) until the job ends, a halt condition holds, SCR_RUNS is used up or too
few nodes are left. Afterwards, datasets still only in cache are scavenged to
the prefix.

With --run-cmd / --restart-cmd (SCR's extended form) the launcher arguments
hold the launcher's options only: a launch runs LAUNCHER [launcher args] CMD,
where CMD is the run command, or, when a checkpoint can be restarted from, the
restart command with every SCR_CKPT_NAME replaced by that checkpoint's name.
Which checkpoint that is, scr_have_restart says: before each launch it runs
under the same launcher on the same nodes (it rebuilds and fetches as the
application's Init would) and prints the name. A restart command without a run
command is appended to the launcher arguments only when there is a checkpoint.
CMD is split at white space (no shell quoting). -rc CMD and -rs CMD (a separate
word) work too.

Launchers: %s.
Each phase prints one timestamped line on stderr ("scr_run: TIME: ...") and
the same event goes to <prefix>/.scr/timeline as a JSON line.

Parameters (environment or config files): SCR_PREFIX, SCR_ENABLE (0 = run the
launcher directly and exit with its code), SCR_RUNS (-1 = unlimited),
SCR_MIN_NODES, SCR_EXCLUDE_NODES, SCR_NODELIST, SCR_LAUNCH_TIMEOUT (seconds to
wait for the ranks to report in; 0 = do not wait), SCR_WATCH_INTERVAL,
SCR_WATCHDOG, SCR_WATCHDOG_TIMEOUT, SCR_WATCHDOG_TIMEOUT_PFS, SCR_HALT_SECONDS.
The allocation must survive node failure (sbatch --no-kill; flux alloc
-o exit-timeout=none).

EXIT STATUS
  0    done: the last run exited 0, or a halt condition stopped the loop
  1    not done: runs used up, too few healthy nodes, or launches never started
  2    usage: bad command line or launcher arguments
  3    cannot run: not in an allocation, launcher not found, bad configuration,
       prerun failed, or the halt file cannot be read (nothing more is
       launched; fix or remove it with scr_halt --remove)
  4    postrun failed: the newest checkpoint may still be only in node caches
  130  interrupted by SIGINT/SIGTERM (the step was killed, postrun ran)
  With SCR_ENABLE=0: the launcher's own exit code.
`, synopsis, extended, strings.Join(launch.Names(), ", "))
}

// Main runs scr_run (launcher "") or a shortcut with its launcher fixed, and
// returns the exit code.
func Main(name, launcher string, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, Usage(name, launcher))
		return ExitDone
	}
	o := jobrun.CmdOptions{Launcher: launcher, Args: args, Stdout: stdout, Stderr: stderr}
	if launcher == "" {
		if len(args) == 0 {
			fmt.Fprint(stderr, Usage(name, launcher))
			return ExitUsage
		}
		o.Launcher, o.Args = args[0], args[1:]
	}
	var err error
	if o.Args, o.RunCmd, o.RestartCmd, err = SplitCommands(o.Args); err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := jobrun.ScrRun(ctx, o)
	return exitCode(name, res, err, ctx.Err() != nil, stderr)
}

// exitCode is the one switch from outcome to exit code.
func exitCode(name string, res jobrun.CmdResult, err error, interrupted bool, stderr io.Writer) int {
	var (
		usage   *jobrun.UsageError
		args    *launch.ArgsError
		start   *launch.StartError
		param   *config.ParamError
		postrun *jobrun.PostrunError
	)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
	}
	switch {
	case res.Passthrough && err == nil:
		return res.LastExit
	case errors.As(err, &postrun):
		return ExitPostrun
	case interrupted:
		return ExitInterrupted
	case errors.As(err, &usage), errors.As(err, &args):
		return ExitUsage
	case errors.As(err, &start), errors.As(err, &param), errors.Is(err, jobrun.ErrNotInAllocation):
		return ExitCannotRun
	case err != nil:
		return ExitCannotRun
	case res.Success():
		if res.Halted && res.LastExit > 0 {
			fmt.Fprintf(stderr, "%s: note: stopped by the halt file (%s), but the last run exited %d\n", name, res.Reason, res.LastExit)
		}
		return ExitDone
	default:
		fmt.Fprintf(stderr, "%s: the job did not finish: %s\n", name, res.Reason)
		return ExitNotDone
	}
}

// SplitCommands takes SCR's extended options out of the launcher arguments:
// -rc/--run-cmd and -rs/--restart-cmd, each as OPT=CMD or OPT CMD. The
// other arguments, before and after them, stay launcher arguments, in
// order. Only these exact spellings are options: a launcher's own -r...
// flags pass through.
func SplitCommands(args []string) (launcherArgs []string, runCmd, restartCmd string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		var dst *string
		name, val, hasVal := strings.Cut(a, "=")
		switch name {
		case "-rc", "--run-cmd":
			dst = &runCmd
		case "-rs", "--restart-cmd":
			dst = &restartCmd
		default:
			launcherArgs = append(launcherArgs, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, "", "", fmt.Errorf("%s needs a command (%s=CMD or %s CMD)", name, name, name)
			}
			i++
			val = args[i]
		}
		if strings.TrimSpace(val) == "" {
			return nil, "", "", fmt.Errorf("%s: empty command", name)
		}
		*dst = val
	}
	return launcherArgs, runCmd, restartCmd, nil
}

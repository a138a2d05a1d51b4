package runcmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/jobrun"
	"github.com/scr-go/scr/internal/launch"
	"github.com/scr-go/scr/internal/prefix"
)

func TestExitCode(t *testing.T) {
	ok := jobrun.CmdResult{Result: jobrun.Result{LastExit: 0}}
	failed := jobrun.CmdResult{Result: jobrun.Result{LastExit: 75, Reason: "no runs left"}}
	halted := jobrun.CmdResult{Result: jobrun.Result{LastExit: 75, Halted: true}}
	tests := []struct {
		name        string
		res         jobrun.CmdResult
		err         error
		interrupted bool
		want        int
	}{
		{"done", ok, nil, false, ExitDone},
		{"halted", halted, nil, false, ExitDone},
		{"not done", failed, nil, false, ExitNotDone},
		{"usage", failed, &jobrun.UsageError{Msg: "x"}, false, ExitUsage},
		{"launcher args", failed, fmt.Errorf("attempt 2: %w", &launch.ArgsError{Launcher: "srun", Msg: "x"}), false, ExitUsage},
		{"launcher missing", failed, &launch.StartError{Argv: []string{"srun"}, Err: errors.New("not found")}, false, ExitCannotRun},
		{"no allocation", failed, jobrun.ErrNotInAllocation, false, ExitCannotRun},
		{"postrun", ok, &jobrun.PostrunError{Err: errors.New("x")}, false, ExitPostrun},
		{"interrupted", failed, errors.New("context canceled"), true, ExitInterrupted},
		{"passthrough", jobrun.CmdResult{Passthrough: true, Result: jobrun.Result{LastExit: 7}}, nil, false, 7},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		if got := exitCode("scr_run", tc.res, tc.err, tc.interrupted, &b); got != tc.want {
			t.Errorf("%s: exit %d, want %d (%s)", tc.name, got, tc.want, b.String())
		}
	}
}

func TestMainPassthroughAndErrors(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("SCR_ENABLE", "0")
	if code := Main("scr_run", "", []string{"sh", "-c", "echo hi; exit 7"}, &out, &errb); code != 7 || out.String() != "hi\n" {
		t.Fatalf("passthrough: exit %d out %q err %q", code, out.String(), errb.String())
	}
	t.Setenv("SCR_ENABLE", "1")
	for _, k := range []string{"SCR_NODELIST", "SLURM_JOB_ID", "FLUX_URI", "LSB_JOBID", "SCR_RESOURCE_MANAGER"} {
		t.Setenv(k, "")
	}
	t.Setenv("SCR_PREFIX", t.TempDir())
	errb.Reset()
	if code := Main("scr_srun", "srun", []string{"-N", "2", "./app"}, &out, &errb); code != ExitCannotRun || !strings.Contains(errb.String(), "not inside an allocation") {
		t.Fatalf("no allocation: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := Main("scr_run", "", []string{"aprun", "./app"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), "unknown launcher") {
		t.Fatalf("unknown launcher: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := Main("scr_run", "", nil, &out, &errb); code != ExitUsage {
		t.Fatalf("no args: exit %d", code)
	}
	out.Reset()
	if code := Main("scr_flux_run", "flux", []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "EXIT STATUS") {
		t.Fatalf("help: %d", code)
	}
}

func TestSplitCommands(t *testing.T) {
	tests := []struct {
		in                 string
		args, run, restart string
		err                string
	}{
		{"-N2 ./app -x", "-N2 ./app -x", "", "", ""},
		{"-N2 --run-cmd=./app_-x -n4", "-N2 -n4", "./app_-x", "", ""},
		{"-N2 -rc ./app -rs=./app_--restart_SCR_CKPT_NAME -n4", "-N2 -n4", "./app", "./app_--restart_SCR_CKPT_NAME", ""},
		{"--restart-cmd ./r -N2", "-N2", "", "./r", ""},
		{"-N2 -rcx", "-N2 -rcx", "", "", ""}, // a launcher's own flag
		{"-N2 -rc", "", "", "", "-rc needs a command"},
		{"-N2 --run-cmd=", "", "", "", "empty command"},
	}
	for _, tc := range tests {
		in := strings.Fields(tc.in)
		for i := range in {
			in[i] = strings.ReplaceAll(in[i], "_", " ")
		}
		args, run, restart, err := SplitCommands(in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(args, " ") != tc.args || run != strings.ReplaceAll(tc.run, "_", " ") || restart != strings.ReplaceAll(tc.restart, "_", " ") {
			t.Errorf("%q: %q %q %q %v", tc.in, args, run, restart, err)
		}
	}
}

// A corrupt halt file stops scr_run before it launches anything (SCR's
// rule), and scr_run says so and exits non-zero: nobody asked the job to
// stop, so the job script must not take it for a finished job (it exited 0).
func TestCorruptHaltFileIsNotSuccess(t *testing.T) {
	pfx, root := t.TempDir(), t.TempDir()
	for _, n := range []string{"n1", "n2"} {
		os.MkdirAll(filepath.Join(root, n, "shm"), 0o700)
	}
	t.Setenv("SCR_PREFIX", pfx)
	t.Setenv("SCR_NODELIST", "n[1-2]")
	t.Setenv("SCR_LOCAL_ROOT", root)
	t.Setenv("SCR_RESOURCE_MANAGER", "local")
	t.Setenv("SCR_NODE_TESTS", "ping")
	t.Setenv("SCR_ENABLE", "1")
	// The nodes' caches are empty: a per-node listing that says so lets
	// postrun succeed, so only the halt file decides the exit code.
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "scr_postrun"), []byte("#!/bin/sh\necho '[]'\n"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	os.MkdirAll(filepath.Join(pfx, ".scr"), 0o700)
	if err := os.WriteFile(prefix.HaltPath(pfx), []byte(`{"format":"scr-halt","version":1,"exit_reason":`), 0o600); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(pfx, "launched")
	var out, errb bytes.Buffer
	code := Main("scr_run", "", []string{"scr_launch", "-n", "2", "touch", marker}, &out, &errb)
	if code == ExitDone {
		t.Fatalf("scr_run exited 0 on a corrupt halt file:\n%s", errb.String())
	}
	if code != ExitCannotRun || !strings.Contains(errb.String(), "halt file") || !strings.Contains(errb.String(), prefix.HaltPath(pfx)) {
		t.Fatalf("exit %d, want %d with the halt file named:\n%s", code, ExitCannotRun, errb.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the step was launched despite the halt file")
	}
}

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMakeDemoDefault: `make demo`, the README's first command, runs the
// Slurm scenario; make's built-in RM ("rm -f") must not reach --rm, and
// RM=flux on the command line picks Flux.
func TestMakeDemoDefault(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--rm slurm"},
		{[]string{"RM=flux"}, "--rm flux"},
	} {
		cmd := exec.Command("make", append([]string{"-n", "-C", "../..", "demo"}, tc.args...)...)
		// Not the settings of a make this test runs under, nor an RM of
		// the caller's environment.
		for _, kv := range os.Environ() {
			if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" && k != "RM" {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make -n demo %v: %v\n%s", tc.args, err, out)
		}
		var line string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "scr_demo ") {
				line = l
			}
		}
		if !strings.HasSuffix(strings.TrimSpace(line), tc.want) {
			t.Errorf("make demo %v runs %q, want it to end with %q", tc.args, line, tc.want)
		}
	}
}

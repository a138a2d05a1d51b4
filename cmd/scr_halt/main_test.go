package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
)

func buildCmd(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH: cannot build the command")
	}
	bin := filepath.Join(t.TempDir(), "scr_halt")
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func exitOf(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), so.String(), se.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, so.String(), se.String()
}

func TestExitCodes(t *testing.T) {
	bin := buildCmd(t)
	dir, dir2 := t.TempDir(), t.TempDir()
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		out  string
	}{
		{"help", nil, []string{"-h"}, 0, "EXIT STATUS"},
		{"halt via env prefix", []string{"SCR_PREFIX=" + dir}, []string{"-v"}, 0, "JOB_HALTED"},
		{"list two dirs, flags after dirs", nil, []string{dir, dir2, "-l"}, 0, "no halt file"},
		{"bad number", nil, []string{"-c", "many", dir}, 2, ""},
		{"bad time", nil, []string{"--before", "soon", dir}, 2, ""},
		{"unknown flag", nil, []string{"--frobnicate"}, 2, ""},
		{"missing prefix", nil, []string{filepath.Join(dir, "nope")}, 1, ""},
		{"immediate", nil, []string{"-i", dir2, "--json"}, 0, `"immediate":true`},
		{"remove", nil, []string{"-r", dir, "-v"}, 0, "removed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, e := exitOf(t, bin, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out, e)
			}
		})
	}
	if _, ok, _ := prefix.ReadHalt(dir); ok {
		t.Error("halt file not removed")
	}
	os.WriteFile(prefix.HaltPath(dir2), []byte("\x00\x00"), 0o600)
	code, _, e := exitOf(t, bin, nil, "-l", dir2)
	if code != 1 || !strings.Contains(e, prefix.HaltPath(dir2)) {
		t.Fatalf("damaged halt file: %d %s", code, e)
	}
}

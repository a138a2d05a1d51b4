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

// buildCmd builds this command into a temp dir and returns its path.
func buildCmd(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH: cannot build the command")
	}
	bin := filepath.Join(t.TempDir(), "scr_index")
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
	dir := t.TempDir()
	// A dataset with a summary and rank2file but a missing file.
	s := &prefix.Summary{Dataset: prefix.Dataset{ID: 3, Name: "ckpt.3", Checkpoint: true}, Ranks: 1, RanksPerPart: 1}
	prefix.WriteRank2FilePart(dir, 3, 0, &prefix.Rank2FilePart{Ranks: [][]prefix.File{{{Path: "ckpt.3/a", Size: 1}}}})
	prefix.WriteSummary(dir, s)

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		out  string
	}{
		{"help", nil, []string{"--help"}, 0, "EXIT STATUS"},
		{"empty list via env prefix", []string{"SCR_PREFIX=" + dir}, nil, 0, "no datasets"},
		{"bad flag", nil, []string{"--nope"}, 2, ""},
		{"two actions", nil, []string{"-p", dir, "--drop", "a", "--add", "b"}, 2, ""},
		{"bad id", nil, []string{"-p", dir, "--build", "x"}, 2, ""},
		{"stray argument", nil, []string{"-p", dir, "extra"}, 2, ""},
		{"unknown name", nil, []string{"-p", dir, "--current", "nope"}, 1, ""},
		{"incomplete build", nil, []string{"-p", dir, "--build", "3"}, 3, "missing"},
		// A prefix that does not exist is not an empty one (a typo).
		{"missing prefix", nil, []string{"--prefix", dir + "/nonexistent", "--list"}, 1, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := exitOf(t, bin, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if code != 0 && !strings.HasPrefix(errOut, "scr_index: ") {
				t.Errorf("stderr %q", errOut)
			}
		})
	}
	// After the file appears, build succeeds and --current works.
	os.MkdirAll(filepath.Join(dir, "ckpt.3"), 0o700)
	os.WriteFile(filepath.Join(dir, "ckpt.3/a"), []byte("x"), 0o600)
	if code, out, e := exitOf(t, bin, nil, "-p", dir, "-b", "3"); code != 0 {
		t.Fatalf("build: %d %s %s", code, out, e)
	}
	if code, _, e := exitOf(t, bin, nil, "-p", dir, "-c", "ckpt.3"); code != 0 {
		t.Fatalf("current: %d %s", code, e)
	}
	x, err := prefix.ReadIndex(dir)
	if err != nil || x.Current != "ckpt.3" || !x.Get(3).Valid() {
		t.Fatalf("%+v %v", x, err)
	}
	// A damaged index: exit 1, the file is named.
	os.WriteFile(prefix.IndexPath(dir), []byte("{"), 0o600)
	code, _, e := exitOf(t, bin, nil, "-p", dir)
	if code != 1 || !strings.Contains(e, prefix.IndexPath(dir)) {
		t.Fatalf("corrupt index: %d %s", code, e)
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestHelpAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "EXIT STATUS") {
		t.Fatalf("--help: %d %q", code, out.String())
	}
	for _, args := range [][]string{
		{"-n", "3"},         // no program
		{"--bogus", "true"}, // unknown option
		{"-n", "3", "--nodes", "a", "--ppn", "1", "true"}, // does not fit
		{"--nodes", "n[3-1]", "true"},                     // bad host list
	} {
		errb.Reset()
		if code := run(context.Background(), args, nil, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

func TestExitCodeOfFirstFailure(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("SCR_LOCAL_ROOT", t.TempDir())
	code := run(context.Background(), []string{"-n", "3", "--nodes", "x[1-3]", "sh", "-c", `[ "$PMI_RANK" = 2 ] && exit 5; exec sleep 30`}, nil, &out, &errb)
	if code != 5 || !strings.Contains(errb.String(), "rank 2 on x3 exited with 5") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if _, err := os.Stat(os.Getenv("SCR_LOCAL_ROOT") + "/x2/shm"); err != nil {
		t.Fatal(err)
	}
}

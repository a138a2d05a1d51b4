package jobrun

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/config"
)

// A bad scr_run parameter stops scr_run with the parameter named, instead
// of being replaced by a default (SCR's scr_run clamped SCR_RUNS < 1 to 1).
func TestScrRunRejectsBadParameters(t *testing.T) {
	for _, tc := range []struct{ key, val string }{
		{"SCR_RUNS", "0"},
		{"SCR_RUNS", "-2"},
		{"SCR_MIN_NODES", "-1"},
		{"SCR_LAUNCH_TIMEOUT", "soon"},
	} {
		t.Run(tc.key+"="+tc.val, func(t *testing.T) {
			env := map[string]string{
				"SCR_PREFIX":           t.TempDir(),
				"SCR_NODELIST":         "n[1-2]",
				"SCR_LOCAL_ROOT":       t.TempDir(),
				"SCR_RESOURCE_MANAGER": "local",
				tc.key:                 tc.val,
			}
			_, err := ScrRun(context.Background(), CmdOptions{
				Launcher: "scr_launch", Args: []string{"-n", "2", "true"},
				Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
			})
			var pe *config.ParamError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want a *config.ParamError naming %s", err, tc.key)
			}
		})
	}
}

// scr_run gives every run it launches, and its scavenge, one cache
// identity: the allocation's (here the local cluster's, no SCR_JOB_ID set),
// whatever the launcher itself tells its tasks. The launcher and
// scr_postrun are stand-ins that record what they were given.
func TestScrRunNamesOneCacheForRunsAndScavenge(t *testing.T) {
	bin, pfx, root := t.TempDir(), t.TempDir(), t.TempDir()
	rec := filepath.Join(bin, "record")
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// mpirun: a run that exits 0 at once (SCR_LAUNCH_TIMEOUT=0).
	write("mpirun", `echo "run SCR_JOB_ID=$SCR_JOB_ID" >> `+rec+"\n")
	// scr_postrun --list-node: an empty cache, with its arguments recorded.
	write("scr_postrun", `echo "postrun $*" >> `+rec+"\necho '[]'\n")
	for _, n := range []string{"n1", "n2"} {
		if err := os.MkdirAll(filepath.Join(root, n, "shm"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	env := map[string]string{
		"SCR_PREFIX": pfx, "SCR_NODELIST": "n[1-2]", "SCR_LOCAL_ROOT": root,
		"SCR_RESOURCE_MANAGER": "local", "SCR_LAUNCH_TIMEOUT": "0", "SCR_NODE_TESTS": "ping",
		"PATH": os.Getenv("PATH"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log strings.Builder
	res, err := ScrRun(ctx, CmdOptions{
		Launcher: "mpirun", Args: []string{"-np", "2", "app"}, Stderr: &log,
		Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil || res.LastExit != 0 {
		t.Fatalf("scr_run: %+v, %v\n%s", res, err, log.String())
	}
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.Contains(got, "run SCR_JOB_ID=defjobid\n") {
		t.Errorf("the run was not given the allocation's cache id:\n%s", got)
	}
	if !strings.Contains(got, "--list-node --job-id defjobid") {
		t.Errorf("the scavenge does not name the allocation's cache:\n%s", got)
	}
}

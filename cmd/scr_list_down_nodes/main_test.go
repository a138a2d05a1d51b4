package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/rm/local"
)

// The test binary is also the remote storage check: run() handles
// --check-storage first, as the real command does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "--check-storage" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cluster sets up a local cluster of n nodes and points the environment at it.
func cluster(t *testing.T, n int) string {
	root := t.TempDir()
	for i := 1; i <= n; i++ {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("n%d", i), "shm"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"SLURM_JOB_ID", "SLURM_JOBID", "FLUX_URI", "LSB_JOBID", "SCR_RESOURCE_MANAGER", "SCR_EXCLUDE_NODES", "SCR_NODE_TESTS"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("SCR_NODELIST", fmt.Sprintf("n[1-%d]", n))
	t.Setenv("SCR_LOCAL_ROOT", root)
	t.Setenv("SCR_PREFIX", filepath.Join(root, "prefix"))
	return root
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestNoneDown(t *testing.T) {
	cluster(t, 3)
	code, out, errs := runCmd()
	if code != exitNoneDown || out != "\n" {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, errs)
	}
}

func TestSomeDown(t *testing.T) {
	root := cluster(t, 6)
	os.WriteFile(filepath.Join(root, "n2", local.PowerOffFile), nil, 0o644)
	os.WriteFile(filepath.Join(root, "n3", local.DownFile), []byte("psu\n"), 0o644)
	t.Setenv("SCR_EXCLUDE_NODES", "n5,n99")
	start := time.Now()
	code, out, errs := runCmd("--fail-if-down", "--reason", "-d", "n6", "--log", "-s", "30")
	t.Logf("6 nodes, one powered off: %v", time.Since(start))
	want := "n2: Failed to ping\nn3: Reported down by resource manager (local: psu)\nn5: User excluded via SCR_EXCLUDE_NODES\nn6: Specified as down\n"
	if code != exitSomeDown || out != want {
		t.Fatalf("exit %d\nout %q\nwant %q\nstderr %q", code, out, want, errs)
	}
	evs, err := prefix.ReadTimeline(filepath.Join(root, "prefix"))
	if err != nil || len(evs) != 4 {
		t.Fatalf("timeline: %v, %d events", err, len(evs))
	}
	if evs[0].Event != "node_down" || evs[0].Fields["node"] != "n2" || evs[0].Fields["reason"] != "Failed to ping" || evs[0].Fields["secs"] != "30" {
		t.Errorf("event %+v", evs[0])
	}
	// By default the exit status is 0 whenever the check ran, as SCR's.
	code, out, _ = runCmd("-d", "n6")
	if code != exitNoneDown || out != "n[2-3,5-6]\n" {
		t.Errorf("plain: exit %d out %q", code, out)
	}
	// Combined switches and nodes after flags, as SCR's argparse takes them.
	code, out, _ = runCmd("-rl", "n1,n3", "-d", "n1")
	if code != exitNoneDown || out != "n1: Specified as down\nn3: Reported down by resource manager (local: psu)\n" {
		t.Errorf("-rl: exit %d out %q", code, out)
	}
}

func TestStorageFailureShowsNodeOutput(t *testing.T) {
	root := cluster(t, 2)
	// n2's storage is a file, not a directory: the remote check fails.
	shm := filepath.Join(root, "n2", "shm")
	os.RemoveAll(shm)
	os.WriteFile(shm, nil, 0o644)
	t.Setenv("SCR_NODE_TESTS", "echo,dir_capacity")
	code, out, errs := runCmd("-r", "--fail-if-down")
	if code != exitSomeDown || !strings.HasPrefix(out, "n2: scr_check_node: FAIL: cntl directory "+shm) {
		t.Fatalf("exit %d out %q stderr %q", code, out, errs)
	}
}

func TestJSON(t *testing.T) {
	root := cluster(t, 4)
	os.WriteFile(filepath.Join(root, "n4", local.DownFile), nil, 0o644)
	type listing struct {
		Nodes, Down string
		RM          string `json:"resource_manager"`
		Reasons     []struct{ Node, Reason string }
		ExitCode    int `json:"exit_code"`
	}
	code, out, _ := runCmd("--json", "n[1-4]")
	var j listing
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 || j.ExitCode != 0 || j.Down != "n4" {
		t.Fatalf("exit %d json %s (%v)", code, out, err)
	}
	code, out, _ = runCmd("--json", "--fail-if-down", "n[1-4]")
	j = listing{}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if code != exitSomeDown || j.ExitCode != 1 || len(j.Reasons) != 1 || j.Reasons[0].Node != "n4" || j.Reasons[0].Reason != "Reported down by resource manager (local: marked down)" {
		t.Fatalf("exit %d json %s", code, out)
	}
}

func TestExitCodes(t *testing.T) {
	cluster(t, 2)
	if code, _, _ := runCmd("--nope"); code != exitUsage {
		t.Errorf("bad flag: exit %d", code)
	}
	if code, _, _ := runCmd("n[1-"); code != exitUsage {
		t.Errorf("bad host list: exit %d", code)
	}
	t.Setenv("SCR_NODE_TESTS", "ping,bogus")
	if code, _, _ := runCmd(); code != exitUsage {
		t.Errorf("bad SCR_NODE_TESTS: exit %d", code)
	}
	os.Unsetenv("SCR_NODELIST")
	os.Unsetenv("SCR_NODE_TESTS")
	if code, _, errs := runCmd(); code != exitNoCheck || !strings.Contains(errs, "no nodes to check") {
		t.Errorf("outside an allocation: exit %d, %q", code, errs)
	}
	if code, out, _ := runCmd("--help"); code != 0 || !strings.Contains(out, "EXIT STATUS") {
		t.Errorf("--help: exit %d", code)
	}
}

// SCR_EXCLUDE_NODES and CACHEDIR ... BYTES come from the user config file
// (<prefix>/.scrconf), as in SCR.
func TestConfigFile(t *testing.T) {
	root := cluster(t, 3)
	pfx := filepath.Join(root, "prefix")
	os.MkdirAll(pfx, 0o755)
	// The cache directory must hold an exabyte (1048576 TB): none does.
	conf := "SCR_EXCLUDE_NODES=n1\nCACHEDIR=" + filepath.Join(root, "n3", "shm") + " BYTES=1048576TB\n"
	if err := os.WriteFile(filepath.Join(pfx, ".scrconf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("-r")
	if code != exitNoneDown || !strings.HasPrefix(out, "n1: User excluded via SCR_EXCLUDE_NODES\nn2: scr_check_node: FAIL: cache directory") ||
		!strings.Contains(out, "insufficient space") {
		t.Fatalf("exit %d\nout %q\nstderr %q", code, out, errs)
	}
	os.WriteFile(filepath.Join(pfx, ".scrconf"), []byte("CACHEDIR=/x BYTES=lots\n"), 0o644)
	if code, _, errs := runCmd(); code != exitUsage || !strings.Contains(errs, "BYTES=lots") {
		t.Errorf("bad BYTES: exit %d, %q", code, errs)
	}
}

// Listing down nodes needs no prefix: not even a working directory.
func TestNoPrefixNeeded(t *testing.T) {
	root := cluster(t, 3)
	t.Setenv("SCR_PREFIX", "")
	d := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(d, 0o700)
	t.Chdir(d)
	t.Setenv("PWD", "")
	os.Remove(d)
	code, out, errs := runCmd()
	if code != exitNoneDown || out != "\n" {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, errs)
	}
	os.WriteFile(filepath.Join(root, "n2", local.DownFile), []byte("psu\n"), 0o644)
	code, out, errs = runCmd("--log")
	if code != exitNoneDown || out != "n2\n" || !strings.Contains(errs, "--log") || !strings.Contains(errs, "SCR_PREFIX") {
		t.Fatalf("--log without a prefix: exit %d, out %q, stderr %q", code, out, errs)
	}
}

// Outside any resource manager, SCR_NODELIST names real hosts: made-up
// ones were reported healthy (the local cluster's node checks, with no
// SCR_LOCAL_ROOT, vouched for every name and ran the echo on this
// machine). They must be reported down.
func TestMadeUpHostsOutsideAResourceManagerAreDown(t *testing.T) {
	cluster(t, 1)
	os.Unsetenv("SCR_LOCAL_ROOT")
	t.Setenv("SCR_NODELIST", "scr-nohost-a.invalid,scr-nohost-b.invalid")
	code, out, errs := runCmd("--reason", "--fail-if-down")
	if code != exitSomeDown || !strings.Contains(out, "scr-nohost-a.invalid: ") || !strings.Contains(out, "scr-nohost-b.invalid: ") {
		t.Fatalf("made-up hosts: exit %d\n%s%s", code, out, errs)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	scr "github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/jobrun"
)

// The test binary doubles as scr_postrun on the "nodes": the local cluster's
// transport runs `scr_postrun --scavenge-node ...`, found in PATH, which is
// a link to this binary.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "scr_postrun" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out, &out); code != 0 || !strings.Contains(out.String(), "EXIT STATUS") {
		t.Fatalf("code %d: %s", code, out.String())
	}
	if code := run([]string{"--bogus"}, &out, &out); code != 2 {
		t.Fatalf("bad flag: code %d", code)
	}
}

// TestScavengeLocalCluster: three simulated nodes write a checkpoint with
// the real library (kept in cache), then scr_postrun copies it to the prefix
// with one real process per node, and a lost node makes it fail with exit 1.
func TestScavengeLocalCluster(t *testing.T) {
	root, pfx, common := localCluster(t, "77", "SINGLE")
	nodes := []string{"n1", "n2", "n3"}
	writeCheckpoint(t, nodes, root, common)

	var stdout, stderr bytes.Buffer
	if code := run([]string{"--json", "-v"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var res jobrun.ScavengeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Current != "scr.dataset.1" {
		t.Fatalf("result %s (%v)\n%s", stdout.String(), err, stderr.String())
	}
	for r := range nodes {
		if b, err := os.ReadFile(filepath.Join(pfx, fmt.Sprintf("rank_%d", r))); err != nil || len(b) != 1000+r {
			t.Fatalf("rank %d in prefix: %v", r, err)
		}
	}

	// A new checkpoint only in cache, and node n2's storage gone: its rank
	// cannot be recovered, so the older checkpoint (already in the prefix)
	// stays current, and scr_postrun says what was lost.
	writeCheckpoint(t, nodes, root, common)
	if err := os.RemoveAll(filepath.Join(root, "n2", "shm")); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	code := run([]string{"--json"}, &stdout, &stderr)
	res = jobrun.ScavengeResult{}
	json.Unmarshal(stdout.Bytes(), &res)
	if code != 0 || res.Current != "scr.dataset.1" || !strings.Contains(stderr.String(), "dataset 2 not scavenged") || !strings.Contains(stderr.String(), "ranks 1") {
		t.Fatalf("exit %d %+v\n%s", code, res, stderr.String())
	}
}

func writeCheckpoint(t *testing.T, nodes []string, root string, common map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	comms := comm.NewLocal(nodes)
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for r, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer comms[r].Close()
			env := func(k string) (string, bool) {
				if k == "SCR_CACHE_BASE" || k == "SCR_CNTL_BASE" {
					return filepath.Join(root, node, "shm"), true
				}
				v, ok := common[k]
				return v, ok
			}
			errs[r] = func() error {
				h, err := scr.Init(ctx, scr.Options{Comm: comms[r], Node: node, Env: env})
				if err != nil {
					return err
				}
				if err := h.StartOutput(ctx, "", scr.Checkpoint); err != nil {
					return err
				}
				p, err := h.Route(fmt.Sprintf("rank_%d", r))
				if err != nil {
					return err
				}
				if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, 1000+r), 0o600); err != nil {
					return err
				}
				if err := h.Complete(ctx, true); err != nil {
					return err
				}
				return h.Finalize(ctx)
			}()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// TestScavengeRebuildsLostNodeFromXOR: the same with XOR: node n2's storage
// is gone, yet scr_postrun (real processes per node) completes the
// checkpoint by rebuilding rank 1 from the other nodes' redundancy data.
func TestScavengeRebuildsLostNodeFromXOR(t *testing.T) {
	root, pfx, common := localCluster(t, "78", "XOR")
	nodes := []string{"n1", "n2", "n3"}
	writeCheckpoint(t, nodes, root, common)
	if err := os.RemoveAll(filepath.Join(root, "n2", "shm")); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--json", "-v"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var res jobrun.ScavengeResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Current != "scr.dataset.1" || len(res.Rebuilt[1]) != 1 || res.Rebuilt[1][0] != 1 {
		t.Fatalf("result %s (%v)\n%s", stdout.String(), err, stderr.String())
	}
	for r := range nodes {
		b, err := os.ReadFile(filepath.Join(pfx, fmt.Sprintf("rank_%d", r)))
		if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{'x'}, 1000+r)) {
			t.Fatalf("rank %d in prefix: %v (%d bytes)", r, err, len(b))
		}
	}
	if !strings.Contains(stderr.String(), "ranks 1 rebuilt from redundancy data") {
		t.Fatalf("log:\n%s", stderr.String())
	}
}

// localCluster lays out three simulated nodes n1..n3 of the local resource
// manager under a temporary root, puts this test binary on PATH as
// scr_postrun (its --scavenge-node mode runs per node), and sets the job's
// environment. It returns the root, the prefix and that environment.
func localCluster(t *testing.T, jobID, copyType string) (root, pfx string, env map[string]string) {
	t.Helper()
	root = t.TempDir()
	pfx = filepath.Join(root, "prefix")
	bin := filepath.Join(root, "bin")
	for _, d := range []string{pfx, bin} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "scr_postrun")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	env = map[string]string{
		"SCR_JOB_ID": jobID, "SCR_USER_NAME": "tester", "SCR_COPY_TYPE": copyType, "SCR_FLUSH": "0",
		"SCR_PREFIX": pfx, "SCR_NODELIST": "n[1-3]", "SCR_LOCAL_ROOT": root, "SCR_NODE_TESTS": "ping",
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return root, pfx, env
}

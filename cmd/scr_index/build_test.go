package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	scr "github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/flush"
	"github.com/scr-go/scr/internal/prefix"
)

// xorJob: four nodes, one rank each, one XOR set; one checkpoint written
// with the real library and kept in the node caches.
type xorJob struct {
	root, prefix string
	nodes        []string
}

func (j *xorJob) env(node string) func(string) (string, bool) {
	m := map[string]string{
		"SCR_JOB_ID": "9", "SCR_USER_NAME": "tester", "SCR_COPY_TYPE": "XOR", "SCR_SET_SIZE": "8",
		"SCR_FLUSH": "0", "SCR_PREFIX": j.prefix,
		"SCR_CACHE_BASE": filepath.Join(j.root, node), "SCR_CNTL_BASE": filepath.Join(j.root, node),
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func content(r int) []byte { return bytes.Repeat([]byte{byte('a' + r)}, 3000+17*r) }

func newXORJob(t *testing.T) *xorJob {
	root := t.TempDir()
	j := &xorJob{root: root, prefix: filepath.Join(root, "prefix"), nodes: []string{"n1", "n2", "n3", "n4"}}
	if err := os.MkdirAll(j.prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	comms := comm.NewLocal(j.nodes)
	errs := make([]error, len(j.nodes))
	var wg sync.WaitGroup
	for r, node := range j.nodes {
		wg.Go(func() {
			defer comms[r].Close()
			errs[r] = func() error {
				h, err := scr.Init(ctx, scr.Options{Comm: comms[r], Node: node, Env: j.env(node)})
				if err != nil {
					return err
				}
				if err := h.StartOutput(ctx, "ckpt.1", scr.Checkpoint); err != nil {
					return err
				}
				p, err := h.Route(fmt.Sprintf("ckpt.1/rank_%d", r))
				if err != nil {
					return err
				}
				if err := os.WriteFile(p, content(r), 0o640); err != nil {
					return err
				}
				if err := h.Complete(ctx, true); err != nil {
					return err
				}
				return h.Finalize(ctx)
			}()
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return j
}

// partialScavenge is what a scavenge that could not rebuild leaves: the
// surviving nodes' files and redundancy data in the prefix, the dataset
// recorded incomplete with the other ranks lost.
func (j *xorJob) partialScavenge(t *testing.T, nodes ...string) {
	t.Helper()
	ctx := context.Background()
	var ds cache.Dataset
	perRank := make([][]prefix.File, len(j.nodes))
	recovered := make([]bool, len(j.nodes))
	for _, n := range nodes {
		res, err := flush.Scavenge(ctx, cache.NewLayout(cache.Lookup(j.env(n))), 1, j.prefix)
		if err != nil {
			t.Fatalf("scavenge on %s: %v", n, err)
		}
		ds = res.Dataset
		for _, rr := range res.Ranks {
			if rr.Err != "" || !rr.Redundancy {
				t.Fatalf("%s rank %d: %+v", n, rr.Rank, rr)
			}
			perRank[rr.Rank], recovered[rr.Rank] = rr.Files, true
		}
	}
	if err := flush.CommitScavenged(ctx, j.prefix, ds, perRank, recovered); !errors.Is(err, flush.ErrIncomplete) {
		t.Fatalf("commit: %v", err)
	}
}

// TestBuildRebuildsAfterPartialScavenge: node n2 was gone at scavenge
// time; scr_index --build regenerates its rank from the scavenged XOR data
// and the entry becomes valid, with the bytes the rank wrote.
func TestBuildRebuildsAfterPartialScavenge(t *testing.T) {
	bin := buildCmd(t)
	j := newXORJob(t)
	j.partialScavenge(t, "n1", "n3", "n4")
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1/rank_1")); !os.IsNotExist(err) {
		t.Fatalf("rank 1's file is in the prefix before the build: %v", err)
	}
	code, out, e := exitOf(t, bin, nil, "-p", j.prefix, "--build", "1", "--json")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s\n%s", code, out, e)
	}
	var res struct {
		Complete bool
		Files    int64
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Complete || res.Files != 4 {
		t.Fatalf("answer %s (%v)", out, err)
	}
	for r := range j.nodes {
		b, err := os.ReadFile(filepath.Join(j.prefix, fmt.Sprintf("ckpt.1/rank_%d", r)))
		if err != nil || !bytes.Equal(b, content(r)) {
			t.Fatalf("rank %d in the prefix: %v (%d bytes)", r, err, len(b))
		}
	}
	st, err := os.Stat(filepath.Join(j.prefix, "ckpt.1/rank_1"))
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("rebuilt file mode: %v %v", st, err)
	}
	x, err := prefix.ReadIndex(j.prefix)
	if err != nil || !x.Get(1).Valid() {
		t.Fatalf("index %+v %v", x, err)
	}
	// The rebuilt rank is in rank2file now: a second build has nothing to do.
	if code, out, e := exitOf(t, bin, nil, "-p", j.prefix, "--build", "1"); code != 0 || !strings.Contains(out, "0 missing") {
		t.Fatalf("second build: exit %d\n%s\n%s", code, out, e)
	}
	// A file of a recovered rank deleted from the prefix later: rebuilt
	// too (the rebuilt rank's redundancy data was rebuilt with it, so
	// losing rank 1 again would also be repaired).
	if err := os.Remove(filepath.Join(j.prefix, "ckpt.1/rank_3")); err != nil {
		t.Fatal(err)
	}
	if code, out, e := exitOf(t, bin, nil, "-p", j.prefix, "--build", "1"); code != 0 {
		t.Fatalf("build after a deletion: exit %d\n%s\n%s", code, out, e)
	}
	if b, err := os.ReadFile(filepath.Join(j.prefix, "ckpt.1/rank_3")); err != nil || !bytes.Equal(b, content(3)) {
		t.Fatalf("rank 3 after the rebuild: %v (%d bytes)", err, len(b))
	}
}

// TestBuildTooManyLost: two members of the XOR set were gone; --build
// cannot rebuild, records the dataset incomplete, exits 3 and names the set
// and ranks.
func TestBuildTooManyLost(t *testing.T) {
	bin := buildCmd(t)
	j := newXORJob(t)
	j.partialScavenge(t, "n1", "n4")
	code, out, e := exitOf(t, bin, nil, "-p", j.prefix, "--build", "1")
	if code != 3 || !strings.Contains(e, "set 0 lost rank 1") || !strings.Contains(e, "rank 2") {
		t.Fatalf("exit %d\n%s\n%s", code, out, e)
	}
	x, err := prefix.ReadIndex(j.prefix)
	if err != nil || x.Get(1) == nil || x.Get(1).Valid() {
		t.Fatalf("index %+v %v", x, err)
	}
	for _, r := range []int{1, 2} {
		if _, err := os.Stat(filepath.Join(j.prefix, fmt.Sprintf("ckpt.1/rank_%d", r))); !os.IsNotExist(err) {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

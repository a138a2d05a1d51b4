package jobrun_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	scr "github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/flush"
	"github.com/scr-go/scr/internal/jobrun"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/remote"
)

func TestPlanScavenge(t *testing.T) {
	e := func(id int64, ckpt, out bool, locs ...string) *prefix.FlushEntry {
		return &prefix.FlushEntry{ID: id, Name: fmt.Sprint("d", id), Checkpoint: ckpt, Output: out, Locations: locs}
	}
	p := jobrun.PlanScavenge([]*prefix.FlushEntry{
		e(1, true, false, prefix.LocCache, prefix.LocPFS),
		e(2, false, true, prefix.LocCache),
		e(3, true, false, prefix.LocCache),
		e(4, false, true, prefix.LocCache, prefix.LocPFS),
		e(5, false, true, prefix.LocCache),
		e(6, true, false, prefix.LocCache),
		e(7, true, false), // gone from cache and never flushed
	})
	if !reflect.DeepEqual(p.Outputs, []int64{2, 5}) || !reflect.DeepEqual(p.Checkpoints, []int64{6, 3, 1}) {
		t.Fatalf("plan %+v", p)
	}
}

// cluster writes checkpoints with the real library: one rank per node, each
// node with its own cache directory, SCR_FLUSH=0 so they stay in cache.
type cluster struct {
	base, prefix string
	nodes        []string
	extra        map[string]string        // parameters over the defaults below
	payload      func(r, step int) []byte // what rank r writes at step; nil = data
}

func (c *cluster) env(node string) func(string) (string, bool) {
	m := map[string]string{
		"SCR_JOB_ID": "77", "SCR_USER_NAME": "tester", "SCR_COPY_TYPE": "SINGLE", "SCR_FLUSH": "0",
		"SCR_PREFIX": c.prefix, "SCR_CACHE_SIZE": "2",
		"SCR_CACHE_BASE": filepath.Join(c.base, node), "SCR_CNTL_BASE": filepath.Join(c.base, node),
	}
	for k, v := range c.extra {
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func data(r, step int) []byte { return bytes.Repeat([]byte{byte(r*7 + step)}, 4096+r) }

func (c *cluster) checkpoint(t testing.TB, steps int) {
	t.Helper()
	c.checkpointRange(t, 1, steps)
}

// checkpointRange is one run writing checkpoints ckpt.from .. ckpt.to.
func (c *cluster) checkpointRange(t testing.TB, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	comms := comm.NewLocal(c.nodes)
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for r := range c.nodes {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			defer comms[r].Close()
			errs[r] = func() error {
				h, err := scr.Init(ctx, scr.Options{Comm: comms[r], Node: c.nodes[r], Env: c.env(c.nodes[r])})
				if err != nil {
					return err
				}
				for s := from; s <= to; s++ {
					if err := h.StartOutput(ctx, fmt.Sprintf("ckpt.%d", s), scr.Checkpoint); err != nil {
						return err
					}
					p, err := h.Route(fmt.Sprintf("ckpt.%d/rank_%d", s, r))
					if err != nil {
						return err
					}
					b := data(r, s)
					if c.payload != nil {
						b = c.payload(r, s)
					}
					if err := os.WriteFile(p, b, 0o600); err != nil {
						return err
					}
					if err := h.Complete(ctx, true); err != nil {
						return err
					}
				}
				return h.Finalize(ctx)
			}()
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func (c *cluster) copier() jobrun.Copier {
	return jobrun.FuncCopier{
		Fn: func(ctx context.Context, node string, id int64) (flush.ScavengeResult, error) {
			return jobrun.ScavengeNode(ctx, c.env(node), id, c.prefix)
		},
		List: func(ctx context.Context, node string) ([]cache.Dataset, error) { return jobrun.ListNode(c.env(node)) },
	}
}

func newCluster(t *testing.T) *cluster {
	base := t.TempDir()
	c := &cluster{base: base, prefix: filepath.Join(base, "prefix"), nodes: []string{"n1", "n2", "n3"}}
	if err := os.MkdirAll(c.prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestScavengeNewestCheckpointFromNodeCaches(t *testing.T) {
	c := newCluster(t)
	c.checkpoint(t, 2)
	var log bytes.Buffer
	res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: c.nodes, Copier: c.copier(), Log: &log})
	if err != nil {
		t.Fatalf("scavenge: %v\n%s", err, log.String())
	}
	if res.Current != "ckpt.2" || len(res.Scavenged) != 1 {
		t.Fatalf("result %+v\n%s", res, log.String())
	}
	for r := range c.nodes {
		b, err := os.ReadFile(filepath.Join(c.prefix, fmt.Sprintf("ckpt.2/rank_%d", r)))
		if err != nil || !bytes.Equal(b, data(r, 2)) {
			t.Fatalf("rank %d file in prefix: %v (len %d)", r, err, len(b))
		}
	}
	idx, err := prefix.ReadIndex(c.prefix)
	if err != nil {
		t.Fatal(err)
	}
	if e := idx.ByName("ckpt.2"); e == nil || !e.Valid() {
		t.Fatalf("index entry %+v", e)
	}
	evs, _ := prefix.ReadTimeline(c.prefix)
	found := false
	for _, ev := range evs {
		found = found || (ev.Event == "scavenge" && ev.Fields["name"] == "ckpt.2")
	}
	if !found {
		t.Fatal("no scavenge event in the timeline")
	}
	// A second postrun finds nothing left to do for the current checkpoint.
	res, err = jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: c.nodes, Copier: c.copier()})
	if err != nil || res.Current != "ckpt.2" || len(res.Scavenged) != 0 {
		t.Fatalf("second scavenge: %+v %v", res, err)
	}
}

func TestScavengeWithALostNodeSaysWhichRanks(t *testing.T) {
	c := newCluster(t)
	c.checkpoint(t, 1)
	if err := os.RemoveAll(filepath.Join(c.base, "n2")); err != nil {
		t.Fatal(err)
	}
	_, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: []string{"n1", "n3"}, Copier: c.copier()})
	if err == nil || !strings.Contains(err.Error(), "ranks 1") {
		t.Fatalf("err = %v", err)
	}
}

func TestScavengeWithoutCopier(t *testing.T) {
	c := newCluster(t)
	c.checkpoint(t, 1)
	_, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: c.nodes})
	if err == nil || !strings.Contains(err.Error(), "no per-node copy routine") {
		t.Fatalf("err = %v", err)
	}
}

func TestScavengeFindsDatasetsTheFlushStateMissed(t *testing.T) {
	c := newCluster(t)
	c.checkpoint(t, 1)
	// Rank 0 died before recording the dataset: no flush state at all.
	if err := os.Remove(prefix.FlushPath(c.prefix)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: c.nodes, Copier: c.copier()})
	if err != nil || res.Current != "ckpt.1" {
		t.Fatalf("res %+v err %v", res, err)
	}
}

// A node that cannot list its cache in time (a dead node the checks missed:
// a remote command to it hangs until the resource manager notices) is left
// out of the copies, which would each wait out the copy's long timeout; its
// ranks are rebuilt from the others' redundancy data.
func TestScavengeLeavesOutANodeThatDoesNotAnswerTheListing(t *testing.T) {
	c := newXORCluster(t, 3, nil)
	c.checkpoint(t, 1)
	inner := c.copier().(jobrun.FuncCopier)
	var mu sync.Mutex
	copied := map[string]bool{}
	cp := jobrun.FuncCopier{
		List: func(ctx context.Context, node string) ([]cache.Dataset, error) {
			if node == "n2" {
				return nil, &remote.NodeError{Node: node, Transport: "flux", Err: fmt.Errorf("%w after 30s", remote.ErrTimeout)}
			}
			return inner.List(ctx, node)
		},
		Fn: func(ctx context.Context, node string, id int64) (flush.ScavengeResult, error) {
			mu.Lock()
			copied[node] = true
			mu.Unlock()
			return inner.Fn(ctx, node, id)
		},
	}
	var log bytes.Buffer
	res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: c.nodes, Copier: cp, Log: &log})
	if err != nil {
		t.Fatalf("scavenge: %v\n%s", err, log.String())
	}
	if copied["n2"] || !copied["n1"] || !copied["n3"] {
		t.Errorf("copies ran on %v, want n1 and n3 only\n%s", copied, log.String())
	}
	if res.Current != "ckpt.1" || res.NodeErrors["n2"] == "" || len(res.Rebuilt[res.Checkpoint]) != 1 {
		t.Errorf("result %+v\n%s", res, log.String())
	}
	if !strings.Contains(log.String(), "left out of the scavenge (no answer to the cache listing): n2") {
		t.Errorf("the log does not say n2 was left out:\n%s", log.String())
	}
}

package scr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
)

func TestFlushStateTracksTheCache(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "2"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, 100, 0); err != nil {
				return err
			}
		}
		return nil // no Finalize: ckpt.3 stays in cache only
	}))
	fs, err := prefix.ReadFlush(j.prefix)
	if err != nil {
		t.Fatal(err)
	}
	// 1 was evicted unflushed (gone), 2 was flushed then evicted (PFS),
	// 3 is in cache only: scr_postrun would scavenge it.
	if e := fs.Get(1); e != nil {
		t.Fatalf("evicted dataset 1 still listed: %+v", e)
	}
	if e := fs.Get(2); e == nil || e.Has(prefix.LocCache) || !e.Has(prefix.LocPFS) {
		t.Fatalf("dataset 2: %+v", e)
	}
	if e := fs.Get(3); e == nil || !e.NeedsFlush() {
		t.Fatalf("dataset 3: %+v", e)
	}
	n, err := prefix.ReadNodes(j.prefix)
	if err != nil || n.Nodes != 4 {
		t.Fatalf("nodes file: %+v %v", n, err)
	}
}

func TestLostPeerDuringCompleteReturnsPeerLost(t *testing.T) {
	j := newJob(t, nil)
	errs := j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := h.StartOutput(ctx, "c", Checkpoint); err != nil {
			return err
		}
		if h.Rank() == 3 {
			comm.KillLocal(h.world, "test kills rank 3")
			return nil
		}
		p, _ := h.Route("c/f" + fmt.Sprint(h.Rank()))
		os.WriteFile(p, []byte("x"), 0o600)
		return h.Complete(ctx, true)
	})
	for r := 0; r < 3; r++ {
		if !errors.Is(errs[r], comm.ErrPeerLost) {
			t.Fatalf("rank %d: %v, want an error wrapping comm.ErrPeerLost", r, errs[r])
		}
	}
}

func TestCacheFullIsAClearErrorAndLosesNothing(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("mounts a tiny tmpfs: runs with SCR_E2E=1 (as root)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_CACHE_SIZE": "2"})
	mnt := j.nodeBase("n2")
	os.MkdirAll(mnt, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	errs := j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 100_000, 0); err != nil {
			return fmt.Errorf("small checkpoint: %w", err)
		}
		// 2 MB per rank does not fit on n2's 1 MB cache.
		err := checkpoint(ctx, h, 2, 2<<20, 0)
		if !errors.Is(err, ErrInvalid) {
			return fmt.Errorf("oversized checkpoint: got %v, want ErrInvalid", err)
		}
		if !errorsContain(err, "cache filesystem") || errorsContain(err, "cindex") {
			return fmt.Errorf("error does not say why: %v", err)
		}
		return h.Finalize(ctx)
	})
	mustAll(t, errs)
	// Nothing lost: ckpt.1 is still the restart, from the cache.
	sameName(t, restartAll(t, j, four, nil, 100_000), "ckpt.1")
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1", "rank_1.ckpt")); err != nil {
		t.Fatal(err)
	}
}

func errorsContain(err error, s string) bool {
	return err != nil && contains(err.Error(), s)
}

func contains(a, b string) bool {
	for i := 0; i+len(b) <= len(a); i++ {
		if a[i:i+len(b)] == b {
			return true
		}
	}
	return false
}

func TestFlushFailureKeepsTheCheckpoint(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	// A regular file where the checkpoint's prefix directory would go.
	os.WriteFile(filepath.Join(j.prefix, "ckpt.1"), []byte("in the way"), 0o600)
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		err := checkpoint(ctx, h, 1, 10, 0)
		if !errors.Is(err, ErrFlush) || errors.Is(err, ErrInvalid) {
			return fmt.Errorf("Complete with a failing flush: %v", err)
		}
		return nil // no Finalize: it would retry the flush and fail again
	}))
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_FLUSH": "0"}, 10), "ckpt.1")
}

// markIncomplete rewrites a node's cache index as if the node died before
// it recorded dataset id complete.
func markIncomplete(t *testing.T, j *job, node string, id int) {
	t.Helper()
	p := filepath.Join(j.nodeBase(node), "tester", "scr.77", "cindex.json")
	ix, err := cache.ReadIndex(p)
	if err != nil || ix.Datasets[id] == nil {
		t.Fatalf("index of %s: %v", node, err)
	}
	ix.Datasets[id].Dataset.Complete = false
	if err := ix.Write(p); err != nil {
		t.Fatal(err)
	}
}

func TestCompleteMarkOnOneNodeIsEnough(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, 64, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	// ckpt.2: marked complete on n1 only (the others died just before);
	// the encode had finished everywhere, so its data is good: restart.
	for _, n := range []string{"n2", "n3", "n4"} {
		markIncomplete(t, j, n, 2)
	}
	sameName(t, restartAll(t, j, four, nil, 64), "ckpt.2")
	// Now no node has it complete: it never completed, ckpt.1 is used.
	for _, n := range four {
		markIncomplete(t, j, n, 2)
	}
	sameName(t, restartAll(t, j, four, nil, 64), "ckpt.1")
	if _, err := os.Stat(filepath.Join(j.cacheDir("n1"), "scr.dataset.2")); !os.IsNotExist(err) {
		t.Fatalf("never-completed dataset kept: %v", err)
	}
}

func TestInterruptedAsyncFlushIsNotResumedButKept(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_FLUSH_ASYNC": "1"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		return checkpoint(ctx, h, 1, 1<<20, 0) // the job "dies": no Finalize, no poll
	}))
	fs, err := prefix.ReadFlush(j.prefix)
	if err != nil || fs.Get(1) == nil || !fs.Get(1).Has(prefix.LocFlushing) {
		t.Fatalf("flush state during the async flush: %+v %v", fs, err)
	}
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_FLUSH": "0"}, 1<<20), "ckpt.1")
	fs, _ = prefix.ReadFlush(j.prefix)
	if e := fs.Get(1); e == nil || e.Has(prefix.LocFlushing) || !e.NeedsFlush() {
		t.Fatalf("flush state after Init: %+v (want CACHE, not FLUSHING, not PFS)", e)
	}
}

func TestLostCacheIndexLosesOnlyThatNode(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_COPY_TYPE": "XOR"})
	writeCkpts(t, j, four, 1, 3000)
	// n3's control state is gone (its index), its cached files remain:
	// they cannot be trusted, n3's rank is rebuilt and the orphan removed.
	os.Remove(filepath.Join(j.cacheDir("n3"), "cindex.json"))
	sameName(t, restartAll(t, j, four, nil, 3000), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

func TestBadConfigOnOneRankFailsInitEverywhere(t *testing.T) {
	j := newJob(t, nil)
	errs := j.runPerNode(four, func(node string) map[string]string {
		if node == "n3" {
			return map[string]string{"SCR_CACHE_SIZE": "lots"}
		}
		return nil
	}, nil, func(ctx context.Context, h *Handle) error { return nil })
	for r, err := range errs {
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("rank %d: %v, want ErrConfig", r, err)
		}
	}
	if !strings.Contains(errs[2].Error(), "SCR_CACHE_SIZE") {
		t.Fatalf("rank 2 does not name the parameter: %v", errs[2])
	}
}

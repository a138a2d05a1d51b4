package scr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
)

var errorsIs = errors.Is

var four = []string{"n1", "n2", "n3", "n4"}

// collect runs fn per rank and gathers each rank's result.
type results[T any] struct {
	mu sync.Mutex
	m  map[int]T
}

func (r *results[T]) set(rank int, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[int]T{}
	}
	r.m[rank] = v
}

// restartAll runs a restart on hosts and returns what every rank saw.
func restartAll(t *testing.T, j *job, hosts []string, extra map[string]string, size int) map[int]restartResult {
	t.Helper()
	var res results[restartResult]
	mustAll(t, j.run(hosts, extra, func(ctx context.Context, h *Handle) error {
		rr, err := restart(ctx, h, size)
		res.set(h.Rank(), rr)
		if err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	return res.m
}

func sameName(t *testing.T, m map[int]restartResult, want string) {
	t.Helper()
	for r, rr := range m {
		if want == "" && rr.ok {
			t.Fatalf("rank %d restarted from %s, want a fresh start", r, rr.name)
		}
		if want != "" && (!rr.ok || rr.name != want) {
			t.Fatalf("rank %d restarted from %q (ok=%v), want %s", r, rr.name, rr.ok, want)
		}
	}
}

func TestCheckpointThenRestartFromCache(t *testing.T) {
	j := newJob(t, nil)
	const size = 4096
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if _, ok, err := h.HaveRestart(ctx); err != nil || ok {
			return fmt.Errorf("fresh job offers a restart: %v %v", ok, err)
		}
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, size, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	// SCR_CACHE_SIZE=1: only the newest stays.
	ents, _ := filepath.Glob(filepath.Join(j.cacheDir("n1"), "scr.dataset.*"))
	if len(ents) != 1 || filepath.Base(ents[0]) != "scr.dataset.3" {
		t.Fatalf("n1 cache holds %v, want only scr.dataset.3", ents)
	}
	st, _ := os.Stat(filepath.Join(j.cacheDir("n1"), "scr.dataset.3"))
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("dataset dir mode %v, want 0700", st.Mode().Perm())
	}
	if hf, _, err := prefix.ReadHalt(j.prefix); err != nil || hf.ExitReason != prefix.ReasonFinalizeCalled {
		t.Fatalf("halt file after Finalize: %+v %v", hf, err)
	}
	// One `finalized` event (rank 0, once every rank is through): scr_run
	// ends a step that lingers after it (SCR_FINALIZE_TIMEOUT).
	if evs := j.events("finalized"); len(evs) != 1 {
		t.Fatalf("finalized events after one Finalize of 4 ranks: %+v", evs)
	}
	// The library ignores its own finalize mark: a relaunch restarts and
	// ShouldExit says no.
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.3")
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if exit, reason, err := h.ShouldExit(ctx); exit || err != nil {
			return fmt.Errorf("ShouldExit after a finalized run: %v %q %v", exit, reason, err)
		}
		return nil
	}))
	if evs := j.events("restart"); len(evs) != 1 || evs[0].Fields["from"] != "cache" {
		t.Fatalf("restart events %+v", evs)
	}
	if evs := j.events("checkpoint"); len(evs) != 3 {
		t.Fatalf("checkpoint events %+v", evs)
	}
	if evs := j.events("started"); len(evs) != 3 || fmt.Sprint(evs[0].Fields["nodes"]) != "[n1 n2 n3 n4]" || evs[0].Fields["ranks"] != float64(4) {
		t.Fatalf("started events %+v", evs)
	}
}

func TestIDsContinueAcrossRuns(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	hosts := []string{"a", "b"}
	for run := 0; run < 2; run++ {
		mustAll(t, j.run(hosts, nil, func(ctx context.Context, h *Handle) error {
			if err := h.StartOutput(ctx, "", Checkpoint); err != nil {
				return err
			}
			if err := h.Complete(ctx, true); err != nil {
				return err
			}
			return h.Finalize(ctx)
		}))
	}
	evs := j.events("checkpoint")
	if len(evs) != 2 || evs[0].Fields["name"] != "scr.dataset.1" || evs[1].Fields["name"] != "scr.dataset.2" {
		t.Fatalf("checkpoints %+v", evs)
	}
}

func TestRanksOnOtherNodesMigrate(t *testing.T) {
	j := newJob(t, nil)
	const size = 1000
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, size, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	// Same nodes, ranks in reverse order: every rank's files are elsewhere.
	rev := []string{"n4", "n3", "n2", "n1"}
	sameName(t, restartAll(t, j, rev, nil, size), "ckpt.1")
	if evs := j.events("restart"); evs[len(evs)-1].Fields["from"] != "cache" {
		t.Fatalf("restart %+v", evs)
	}
}

// TestMigrateInPieces: files larger than a message move in several
// pieces (the last one short) and arrive whole.
func TestMigrateInPieces(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_MPI_BUF_SIZE": "64KB"})
	const size = 5*(64<<10) + 777
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, size, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	sameName(t, restartAll(t, j, []string{"n2", "n3", "n4", "n1"}, nil, size), "ckpt.1")
	if evs := j.events("restart"); evs[len(evs)-1].Fields["from"] != "cache" {
		t.Fatalf("restart %+v", evs)
	}
}

func TestSpareNodeWithSingleFallsBackToPrefix(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	const size = 2048
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, size, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	j.wipe("n4")
	// n4 is dead; the spare n5 takes its rank. SINGLE cannot rebuild: fetch.
	sameName(t, restartAll(t, j, []string{"n1", "n2", "n3", "n5"}, nil, size), "ckpt.1")
	if evs := j.events("restart"); evs[len(evs)-1].Fields["from"] != "prefix" {
		t.Fatalf("restart %+v", evs)
	}
}

func TestWipeEveryCacheFetchesFromPrefix(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "2"})
	const size = 3000
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ { // flushed: 2 only (and 3 at Finalize)
			if err := checkpoint(ctx, h, step, size, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	for _, n := range four {
		j.wipe(n)
	}
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.3")
	// The fetched copy is on the prefix at the original paths.
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.2", "rank_3.ckpt")); err != nil {
		t.Fatal(err)
	}
}

func TestNoFetchStartsFresh(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_FETCH": "0"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 10, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	for _, n := range four {
		j.wipe(n)
	}
	sameName(t, restartAll(t, j, four, nil, 10), "")
}

func TestCorruptCachedFileIsNeverRestartedFrom(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2", "SCR_CRC_ON_COPY": "1"})
	const size = 5000
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, size, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	// Flip one byte of rank 2's newest file: same size, other content.
	p := filepath.Join(j.cacheDir("n3"), "scr.dataset.2", "rank.2", "ckpt.2", "rank_2.ckpt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff
	os.WriteFile(p, b, 0o640)
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.1")
}

func TestNewestLostOnTwoNodesFallsBackToOlderCached(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2"})
	const size = 100
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, size, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	for _, n := range []string{"n1", "n2"} {
		os.RemoveAll(filepath.Join(j.cacheDir(n), "scr.dataset.2"))
	}
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.1")
	// ckpt.2 is gone from every cache; ids go on after it.
	if _, err := os.Stat(filepath.Join(j.cacheDir("n3"), "scr.dataset.2")); !os.IsNotExist(err) {
		t.Fatalf("stale newer dataset kept: %v", err)
	}
}

func TestInvalidRestartOffersOlder(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2", "SCR_FLUSH": "1"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, 64, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	var res results[[]string]
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		var seen []string
		for {
			name, ok, err := h.HaveRestart(ctx)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			seen = append(seen, name)
			h.StartRestart(ctx)
			err = h.CompleteRestart(ctx, h.Rank() != 1) // rank 1 cannot read anything
			if !errors.Is(err, ErrInvalid) {
				return fmt.Errorf("CompleteRestart(invalid on rank 1) = %v", err)
			}
		}
		res.set(h.Rank(), seen)
		return h.Finalize(ctx)
	}))
	// Cache: ckpt.2, ckpt.1; then the prefix has nothing valid left.
	for r, seen := range res.m {
		if fmt.Sprint(seen) != "[ckpt.2 ckpt.1]" {
			t.Fatalf("rank %d was offered %v", r, seen)
		}
	}
}

func TestMisuse(t *testing.T) {
	j := newJob(t, nil)
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if err := h.Complete(ctx, true); !errors.Is(err, ErrState) {
			return fmt.Errorf("Complete before StartOutput: %v", err)
		}
		if p, err := h.Route("x/y"); err != nil || p != "x/y" {
			return fmt.Errorf("Route outside a phase: %q, %v (want the name unchanged)", p, err)
		}
		if _, err := h.StartRestart(ctx); !errors.Is(err, ErrState) {
			return fmt.Errorf("StartRestart without HaveRestart: %v", err)
		}
		if _, err := h.Config("SCR_FLUSH=3"); !errors.Is(err, ErrState) {
			return fmt.Errorf("Config set after Init: %v", err)
		}
		if v, err := h.Config("SCR_CACHE_BYPASS"); err != nil || v != "0" {
			return fmt.Errorf("Config query: %q %v", v, err)
		}
		if err := h.StartOutput(ctx, "d1", Checkpoint); err != nil {
			return err
		}
		if err := h.StartOutput(ctx, "d2", Checkpoint); !errors.Is(err, ErrState) {
			return fmt.Errorf("StartOutput twice: %v", err)
		}
		for _, bad := range []string{"../outside", "/etc/passwd", "a/../../b", ".scr/index.json", ""} {
			if _, err := h.Route(bad); !errors.Is(err, ErrPath) {
				return fmt.Errorf("Route(%q): %v", bad, err)
			}
		}
		// Both ranks write one prefix file: duplicate.
		p, err := h.Route("shared.dat")
		if err != nil {
			return err
		}
		os.WriteFile(p, []byte("x"), 0o600)
		err = h.Complete(ctx, true)
		var de *DuplicateError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &de) || de.Path != "shared.dat" {
			return fmt.Errorf("duplicate file: %v", err)
		}
		// Ranks disagree on the name.
		err = h.StartOutput(ctx, fmt.Sprintf("d%d", h.Rank()), Checkpoint)
		if !errors.Is(err, ErrMismatch) {
			return fmt.Errorf("mismatched names: %v", err)
		}
		if err := h.Finalize(ctx); err != nil {
			return err
		}
		if err := h.StartOutput(ctx, "late", Checkpoint); !errors.Is(err, ErrState) {
			return fmt.Errorf("StartOutput after Finalize: %v", err)
		}
		return nil
	}))
}

func TestInvalidOnOneRankDiscardsDataset(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 10, 0); err != nil {
			return err
		}
		if err := h.StartOutput(ctx, "ckpt.2", Checkpoint); err != nil {
			return err
		}
		p, _ := h.Route(fileName(2, h.Rank()))
		if h.Rank() != 2 { // rank 2 never writes its file
			os.WriteFile(p, []byte("data"), 0o600)
		}
		err := h.Complete(ctx, true)
		var ie *InvalidError
		if !errors.As(err, &ie) || fmt.Sprint(ie.Ranks) != "[2]" {
			return fmt.Errorf("Complete with a missing file on rank 2: %v", err)
		}
		return h.Finalize(ctx)
	}))
	// The failed dataset is gone; the older one is kept and offered.
	sameName(t, restartAll(t, j, four, nil, 10), "ckpt.1")
}

func TestDisabled(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_ENABLE": "0"})
	mustAll(t, j.run([]string{"a"}, nil, func(ctx context.Context, h *Handle) error {
		if p, err := h.Route("x/y"); err != nil || p != "x/y" {
			return fmt.Errorf("Route disabled: %q %v", p, err)
		}
		if err := h.StartOutput(ctx, "c", Checkpoint); !errors.Is(err, ErrDisabled) {
			return fmt.Errorf("StartOutput disabled: %v", err)
		}
		if _, ok, err := h.HaveRestart(ctx); ok || !errors.Is(err, ErrDisabled) {
			return fmt.Errorf("HaveRestart disabled: %v", err)
		}
		return nil
	}))
	if _, err := os.Stat(j.cacheDir("a")); !os.IsNotExist(err) {
		t.Fatalf("disabled SCR created its cache: %v", err)
	}
}

func TestBypassWritesToPrefix(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_BYPASS": "1"})
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 10, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1", "rank_1.ckpt")); err != nil {
		t.Fatal(err)
	}
	if evs := j.events("flush"); len(evs) != 1 {
		t.Fatalf("flush events %+v", evs)
	}
	sameName(t, restartAll(t, j, []string{"a", "b"}, nil, 10), "ckpt.1")
}

func TestAsyncFlush(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_FLUSH_ASYNC": "1"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, 1<<16, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	if evs := j.events("flush"); len(evs) != 3 {
		t.Fatalf("flush events %d, want 3", len(evs))
	}
	for _, n := range four {
		j.wipe(n)
	}
	sameName(t, restartAll(t, j, four, nil, 1<<16), "ckpt.3")
}

func TestOutputAlwaysFlushed(t *testing.T) {
	j := newJob(t, nil) // SCR_FLUSH=0
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 10, Output); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1", "rank_0.ckpt")); err != nil {
		t.Fatalf("output not flushed: %v", err)
	}
}

func TestShouldExitAndNeedCheckpointOnHalt(t *testing.T) {
	j := newJob(t, nil)
	os.MkdirAll(filepath.Join(j.prefix, ".scr"), 0o700)
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if need, err := h.NeedCheckpoint(ctx); err != nil || need {
			return fmt.Errorf("NeedCheckpoint without policy or halt: %v %v", need, err)
		}
		if exit, _, err := h.ShouldExit(ctx); err != nil || exit {
			return fmt.Errorf("ShouldExit: %v %v", exit, err)
		}
		if h.Rank() == 0 {
			if err := writeHalt(ctx, j.prefix, "JOB_HALTED"); err != nil {
				return err
			}
		}
		h.world.Barrier(ctx)
		if need, err := h.NeedCheckpoint(ctx); err != nil || !need {
			return fmt.Errorf("NeedCheckpoint while halted: %v %v", need, err)
		}
		exit, reason, err := h.ShouldExit(ctx)
		if err != nil || !exit || reason != "JOB_HALTED" {
			return fmt.Errorf("ShouldExit while halted: %v %q %v", exit, reason, err)
		}
		return h.Finalize(ctx)
	}))
}

func TestNeedCheckpointPolicy(t *testing.T) {
	const s = 1_000_000_000 // one second in ns
	cases := []struct {
		name string
		p    ckptPolicy
		h    ckptHistory
		want bool
	}{
		{"all off", ckptPolicy{}, ckptHistory{Calls: 5, Since: 1000 * s}, false},
		{"interval hit", ckptPolicy{Interval: 3}, ckptHistory{Calls: 6}, true},
		{"interval miss", ckptPolicy{Interval: 3}, ckptHistory{Calls: 7}, false},
		{"seconds reached", ckptPolicy{Seconds: 10}, ckptHistory{Since: 10 * s}, true},
		{"seconds not yet", ckptPolicy{Seconds: 10}, ckptHistory{Since: 9 * s}, false},
		{"overhead first", ckptPolicy{Overhead: 5}, ckptHistory{}, true},
		{"overhead low", ckptPolicy{Overhead: 5}, ckptHistory{Ckpts: 1, AvgCost: 1 * s, Since: 99 * s}, true},
		{"overhead high", ckptPolicy{Overhead: 5}, ckptHistory{Ckpts: 1, AvgCost: 1 * s, Since: 9 * s}, false},
	}
	for _, c := range cases {
		if got := c.p.need(c.h); got != c.want {
			t.Errorf("%s: got %v want %v", c.name, got, c.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "512k": 512 << 10, "64MB": 64 << 20, "1g": 1 << 30, "2KiB": -1, "x": -1,
		// 16EB was 0 (the multiplication wrapped): an overflow is an error.
		"7EB": 7 << 60, "8e": -1, "16EB": -1, "9223372036854775807k": -1} {
		got, err := ParseSize(in)
		if want < 0 {
			if err == nil {
				t.Errorf("%s: no error", in)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	env := func(k string) (string, bool) {
		if k == "SCR_FLUSH" {
			return "7", true
		}
		return "", false
	}
	v, _, _ := Config(env, []string{"SCR_FLUSH=3", "SCR_CACHE_SIZE=4"}, "scr_flush")
	if v != "7" {
		t.Fatalf("env must win over Config: %q", v)
	}
	v, _, _ = Config(env, []string{"SCR_CACHE_SIZE=4"}, "SCR_CACHE_SIZE")
	if v != "4" {
		t.Fatalf("Config must win over default: %q", v)
	}
	v, _, _ = Config(env, []string{"SCR_CACHE_SIZE=4", "SCR_CACHE_SIZE="}, "SCR_CACHE_SIZE")
	if v != "1" {
		t.Fatalf("unset must restore the default: %q", v)
	}
}

func TestCurrentPicksAnOlderCheckpoint(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_CACHE_SIZE": "3"})
	writeN := func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, 50, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}
	mustAll(t, j.run(four, nil, writeN))
	// In cache: ckpt.2 offered, ckpt.3 deleted from the cache.
	var res results[restartResult]
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := h.Current(ctx, "ckpt.2"); err != nil {
			return err
		}
		rr, err := restart(ctx, h, 50)
		res.set(h.Rank(), rr)
		return err
	}))
	sameName(t, res.m, "ckpt.2")
	if _, err := os.Stat(filepath.Join(j.cacheDir("n1"), "scr.dataset.3")); !os.IsNotExist(err) {
		t.Fatalf("newer dataset kept after Current: %v", err)
	}
	// SCR_CURRENT with the cache gone: fetched from the prefix.
	for _, n := range four {
		j.wipe(n)
	}
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_CURRENT": "ckpt.1"}, 50), "ckpt.1")
	errs := j.run(four, nil, func(ctx context.Context, h *Handle) error { return h.Current(ctx, "nope") })
	for r, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("rank %d: Current(unknown) = %v", r, err)
		}
	}
}

func TestDropAndDelete(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_CACHE_SIZE": "2"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, 20, 0); err != nil {
				return err
			}
		}
		if err := h.Drop(ctx, "ckpt.1"); err != nil {
			return err
		}
		if err := h.Drop(ctx, "ckpt.1"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("second Drop: %v", err)
		}
		if err := h.Delete(ctx, "ckpt.3"); err != nil {
			return err
		}
		if err := h.Delete(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("Delete unknown: %v", err)
		}
		return h.Finalize(ctx)
	}))
	// Drop keeps the files, Delete removes files, metadata and the cache copy.
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1", "rank_0.ckpt")); err != nil {
		t.Fatalf("Drop removed files: %v", err)
	}
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.3")); !os.IsNotExist(err) {
		t.Fatalf("Delete left the directory: %v", err)
	}
	ix, err := prefix.ReadIndex(j.prefix)
	if err != nil || ix.ByName("ckpt.1") != nil || ix.ByName("ckpt.3") != nil || ix.ByName("ckpt.2") == nil {
		t.Fatalf("index after Drop/Delete: %+v %v", ix, err)
	}
	if _, err := os.Stat(filepath.Join(j.cacheDir("n1"), "scr.dataset.3")); !os.IsNotExist(err) {
		t.Fatalf("Delete left the cached copy: %v", err)
	}
	sameName(t, restartAll(t, j, four, nil, 20), "ckpt.2")
}

func TestBadFlagsFailEveryRank(t *testing.T) {
	j := newJob(t, nil)
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if err := h.StartOutput(ctx, "x", 4); !errors.Is(err, ErrConfig) {
			return fmt.Errorf("flags 4: %v", err)
		}
		if err := h.StartOutput(ctx, "x", Checkpoint|Output); err != nil {
			return err
		}
		return h.Complete(ctx, true)
	}))
}

// SCR_FLAG_NONE: a dataset that is cached but neither restarted from nor
// flushed.
func TestFlagNone(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if err := h.StartOutput(ctx, "plain", 0); err != nil {
			return err
		}
		p, err := h.Route(fmt.Sprintf("plain/r%d", h.Rank()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			return err
		}
		if err := h.Complete(ctx, true); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	if _, err := os.Stat(filepath.Join(j.prefix, "plain")); !os.IsNotExist(err) {
		t.Errorf("a SCR_FLAG_NONE dataset reached the prefix: %v", err)
	}
	mustAll(t, j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if name, ok, err := h.HaveRestart(ctx); err != nil || ok {
			return fmt.Errorf("HaveRestart offered %q (%v, %v); a SCR_FLAG_NONE dataset is no checkpoint", name, ok, err)
		}
		return h.Finalize(ctx)
	}))
}

// SCR_HALT_EXIT=1: a halt condition at Init, or reached by a checkpoint,
// closes the handle with ErrHalted after the flushes, and the reason is
// recorded for scr_run.
func TestHaltExit(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_HALT_EXIT": "1", "SCR_FLUSH": "2"})
	os.MkdirAll(filepath.Join(j.prefix, ".scr"), 0o700)
	ctx := context.Background()
	if _, err := prefix.UpdateHalt(ctx, j.prefix, func(hf *prefix.Halt, _ bool) error {
		hf.CheckpointsLeft = prefix.Int64(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	errs := j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		if err := h.StartOutput(ctx, "ckpt.1", Checkpoint); err != nil {
			return err
		}
		p, err := h.Route(fmt.Sprintf("ckpt.1/r%d", h.Rank()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, content(h.Rank(), 1, 100), 0o644); err != nil {
			return err
		}
		err = h.Complete(ctx, true)
		var he *HaltError
		if !errors.As(err, &he) || he.Reason != prefix.ReasonNoCheckpoints {
			return fmt.Errorf("Complete of the last checkpoint allowed: %v, want a HaltError (%s)", err, prefix.ReasonNoCheckpoints)
		}
		if err := h.StartOutput(ctx, "ckpt.2", Checkpoint); !errors.Is(err, ErrState) {
			return fmt.Errorf("StartOutput after the halt: %v, want ErrState", err)
		}
		return nil
	})
	mustAll(t, errs)
	// SCR_FLUSH=2 would not flush checkpoint 1; the halt did.
	for r := range 2 {
		if _, err := os.Stat(filepath.Join(j.prefix, fmt.Sprintf("ckpt.1/r%d", r))); err != nil {
			t.Errorf("the halt did not flush the last checkpoint: %v", err)
		}
	}
	hf, _, err := prefix.ReadHalt(j.prefix)
	if err != nil || hf.ExitReason != prefix.ReasonNoCheckpoints {
		t.Fatalf("halt file: %+v, %v; want the reason recorded", hf, err)
	}
	// The next run halts at Init.
	errs = j.run([]string{"a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		return errors.New("Init returned a handle under an active halt condition")
	})
	for r, err := range errs {
		if !errors.Is(err, ErrHalted) {
			t.Errorf("rank %d: Init: %v, want ErrHalted", r, err)
		}
	}
}

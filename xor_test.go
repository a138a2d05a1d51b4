package scr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests run the redundancy schemes of internal/redundancy through the
// library: SCR's test recipes (reference section 10) with ranks as
// goroutines and one tmpfs directory per simulated node.

func xorJob(t *testing.T, extra map[string]string) *job {
	env := map[string]string{"SCR_COPY_TYPE": "XOR", "SCR_CRC_ON_COPY": "1"}
	for k, v := range extra {
		env[k] = v
	}
	return newJob(t, env)
}

func writeCkpts(t *testing.T, j *job, hosts []string, n, size int) {
	t.Helper()
	mustAll(t, j.run(hosts, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= n; step++ {
			if err := checkpoint(ctx, h, step, size, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
}

func lastRestartFrom(t *testing.T, j *job) string {
	t.Helper()
	evs := j.events("restart")
	if len(evs) == 0 {
		t.Fatal("no restart event")
	}
	s, _ := evs[len(evs)-1].Fields["from"].(string)
	return s
}

func TestXORWipeOneNodeRebuilds(t *testing.T) {
	j := xorJob(t, nil)
	eight := []string{"n1", "n1", "n2", "n2", "n3", "n3", "n4", "n4"}
	const size = 100_003
	writeCkpts(t, j, eight, 2, size)
	j.wipe("n3")
	sameName(t, restartAll(t, j, eight, nil, size), "ckpt.2")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q, want cache-rebuild", got)
	}
	if evs := j.events("rebuilt"); len(evs) != 1 || evs[0].Fields["dataset"] != float64(2) {
		t.Fatalf("rebuilt events %+v", evs)
	}
}

func TestXORSpareNodeTakesTheLostRank(t *testing.T) {
	j := xorJob(t, nil)
	const size = 65_536
	writeCkpts(t, j, four, 1, size)
	j.wipe("n2")
	sameName(t, restartAll(t, j, []string{"n1", "n5", "n3", "n4"}, nil, size), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q, want cache-rebuild", got)
	}
	// The rebuilt rank lives on the spare now, with its redundancy data.
	if _, err := os.Stat(filepath.Join(j.cacheDir("n5"), "scr.dataset.1", "rank.1", "ckpt.1", "rank_1.ckpt")); err != nil {
		t.Fatal(err)
	}
}

func TestXORNewestLostOnTwoNodesOfOneSetFallsBack(t *testing.T) {
	j := xorJob(t, map[string]string{"SCR_CACHE_SIZE": "2"})
	const size = 4096
	writeCkpts(t, j, four, 2, size)
	for _, n := range []string{"n1", "n2"} {
		os.RemoveAll(filepath.Join(j.cacheDir(n), "scr.dataset.2"))
	}
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache" {
		t.Fatalf("restart from %q, want cache", got)
	}
}

func TestXORCorruptFileIsRebuilt(t *testing.T) {
	j := xorJob(t, nil)
	const size = 10_000
	writeCkpts(t, j, four, 1, size)
	p := filepath.Join(j.cacheDir("n4"), "scr.dataset.1", "rank.3", "ckpt.1", "rank_3.ckpt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[7] ^= 1
	os.WriteFile(p, b, 0o640)
	// restartAll verifies every byte: the corrupt copy was not used.
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q, want cache-rebuild", got)
	}
}

func TestXORWipeAllFetchesFromPrefix(t *testing.T) {
	j := xorJob(t, map[string]string{"SCR_FLUSH": "1"})
	const size = 2000
	writeCkpts(t, j, four, 2, size)
	for _, n := range four {
		j.wipe(n)
	}
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.2")
	if got := lastRestartFrom(t, j); got != "prefix" {
		t.Fatalf("restart from %q, want prefix", got)
	}
	// The fetched checkpoint is protected again: lose a node, rebuild.
	j.wipe("n1")
	sameName(t, restartAll(t, j, four, nil, size), "ckpt.2")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("second restart from %q, want cache-rebuild", got)
	}
}

func TestMultiLevelDescriptorsFromConfig(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2"})
	delete(j.env, "SCR_COPY_TYPE")
	api := []string{"SCR_COPY_TYPE=FILE", "CKPT=0 INTERVAL=1 TYPE=SINGLE", "CKPT=1 INTERVAL=2 TYPE=XOR"}
	var schemes results[[]string]
	comms := j.runWithConfig(four, api, func(ctx context.Context, h *Handle) error {
		var got []string
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, 999, 0); err != nil {
				return err
			}
			got = append(got, h.cached[h.dsID].Scheme)
		}
		schemes.set(h.Rank(), got)
		if v, err := h.Config("CKPT=1 TYPE"); err != nil || v != "XOR" {
			return fmt.Errorf("query CKPT=1 TYPE: %q %v", v, err)
		}
		return h.Finalize(ctx)
	})
	mustAll(t, comms)
	if fmt.Sprint(schemes.m[0]) != "[SINGLE XOR]" {
		t.Fatalf("schemes %v", schemes.m[0])
	}
	// app.conf has the API values for the job scripts.
	b, err := os.ReadFile(filepath.Join(j.prefix, ".scr", "app.conf"))
	if err != nil || !strings.Contains(string(b), "XOR") {
		t.Fatalf("app.conf: %q %v", b, err)
	}
	j.wipe("n2")
	sameName(t, restartAll(t, j, four, nil, 999), "ckpt.2")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

func TestXORShuffledRanksAndALostNode(t *testing.T) {
	j := xorJob(t, nil)
	before := []string{"n1", "n1", "n2", "n2", "n3", "n3", "n4", "n4"}
	const size = 30_000
	writeCkpts(t, j, before, 1, size)
	j.wipe("n4")
	// Relaunch with n4 replaced by n5 and the ranks rotated by one node:
	// most directories must move, ranks 6 and 7 must be rebuilt.
	after := []string{"n2", "n2", "n3", "n3", "n5", "n5", "n1", "n1"}
	sameName(t, restartAll(t, j, after, nil, size), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q, want cache-rebuild", got)
	}
	// Every directory lives where its rank runs now; none stayed behind.
	for r, n := range after {
		if _, err := os.Stat(filepath.Join(j.cacheDir(n), "scr.dataset.1", fmt.Sprintf("rank.%d", r), "ckpt.1")); err != nil {
			t.Fatalf("rank %d on %s: %v", r, n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(j.cacheDir("n1"), "scr.dataset.1", "rank.0")); !os.IsNotExist(err) {
		t.Fatalf("moved directory left behind on n1: %v", err)
	}
}

func TestXORManyRanks(t *testing.T) {
	if testing.Short() {
		t.Skip("64 ranks")
	}
	j := xorJob(t, nil)
	var hosts, spare []string
	for n := 0; n < 16; n++ {
		for k := 0; k < 4; k++ {
			hosts = append(hosts, fmt.Sprintf("m%02d", n))
			if n == 5 {
				spare = append(spare, "spare")
			} else {
				spare = append(spare, fmt.Sprintf("m%02d", n))
			}
		}
	}
	writeCkpts(t, j, hosts, 2, 5000)
	j.wipe("m05")
	sameName(t, restartAll(t, j, spare, nil, 5000), "ckpt.2")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

func TestRSLosesTwoNodes(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_COPY_TYPE": "RS", "SCR_SET_FAILURES": "2"})
	six := []string{"r1", "r2", "r3", "r4", "r5", "r6"}
	writeCkpts(t, j, six, 1, 12_345)
	j.wipe("r2")
	j.wipe("r5")
	sameName(t, restartAll(t, j, six, nil, 12_345), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

func TestPartnerLosesOneNode(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_COPY_TYPE": "PARTNER"})
	writeCkpts(t, j, four, 1, 7_000)
	j.wipe("n3")
	sameName(t, restartAll(t, j, four, nil, 7_000), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

func TestTwoStoresEvictSeparately(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "1"})
	delete(j.env, "SCR_COPY_TYPE")
	// SINGLE every checkpoint in the cache base, XOR every 2nd in its own
	// store (the reference's multi-level example): each store keeps one.
	api := []string{"STORE=${XOR_BASE} COUNT=1", "SCR_COPY_TYPE=FILE",
		"CKPT=0 INTERVAL=1 TYPE=SINGLE", "CKPT=1 INTERVAL=2 TYPE=XOR STORE=${XOR_BASE}"}
	extra := func(node string) map[string]string {
		return map[string]string{"XOR_BASE": filepath.Join(j.base, "nodes", node, "xor")}
	}
	errs := j.runPerNode(four, extra, api, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, 777, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	})
	mustAll(t, errs)
	// ckpt.3 (SINGLE) in the cache base, ckpt.2 (XOR) in the xor store.
	xorDir := filepath.Join(j.base, "nodes", "n2", "xor", "tester", "scr.77")
	if _, err := os.Stat(filepath.Join(xorDir, "scr.dataset.2", "rank.1", "ckpt.2", "rank_1.ckpt")); err != nil {
		t.Fatalf("XOR checkpoint not in its store: %v", err)
	}
	if got, _ := filepath.Glob(filepath.Join(j.cacheDir("n2"), "scr.dataset.*")); len(got) != 1 || filepath.Base(got[0]) != "scr.dataset.3" {
		t.Fatalf("cache base holds %v, want scr.dataset.3", got)
	}
	// Lose n2: ckpt.3 (SINGLE) is gone, ckpt.2 is rebuilt from its store.
	j.wipe("n2")
	var res results[restartResult]
	mustAll(t, j.runPerNode(four, extra, nil, func(ctx context.Context, h *Handle) error {
		rr, err := restart(ctx, h, 777)
		res.set(h.Rank(), rr)
		return err
	}))
	sameName(t, res.m, "ckpt.2")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

func TestBypassWithXORRebuildsTheMetadata(t *testing.T) {
	j := xorJob(t, map[string]string{"SCR_CACHE_BYPASS": "1"})
	writeCkpts(t, j, four, 1, 900)
	// The files are on the prefix; the caches hold the protected filemaps.
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1", "rank_2.ckpt")); err != nil {
		t.Fatal(err)
	}
	j.wipe("n3")
	sameName(t, restartAll(t, j, four, nil, 900), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q", got)
	}
}

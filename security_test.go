package scr

// Regression tests of issue 11: shared nodes (/dev/shm and the prefix are
// shared with other users, played here by other uids through
// internal/safefs/safefstest) and damaged metadata must never make scr-go
// leak, destroy or silently misuse data.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/safefs"
	"github.com/scr-go/scr/internal/safefs/safefstest"
	"github.com/scr-go/scr/internal/testio"
)

var two = []string{"n1", "n2"}

// Defect 1: another user prepares the cache directory in a shared 1777
// base (mode 0777, with a planted checkpoint in it, or a link to a
// directory of hers): Init refuses it on every rank, naming it, and the
// planted data is never offered. A directory we made ourselves cannot be
// moved away by her afterwards (the sticky bit), which the check relies on.
func TestCacheDirectoryPreparedByAnotherUserIsRefused(t *testing.T) {
	safefstest.RequireRoot(t)
	for plant, problem := range map[string]string{
		"mkdir -m 0777 {shm}/tester {shm}/tester/scr.77 && echo planted > {shm}/tester/scr.77/cindex.json": "is owned by uid 4242",
		"mkdir -m 0777 {shm}/mal && ln -s {shm}/mal {shm}/tester":                                          "is a symbolic link",
	} {
		shm := safefstest.SharedDir(t)
		safefstest.As(t, safefstest.Mallory, strings.ReplaceAll(plant, "{shm}", shm))
		j := newJob(t, nil)
		base := map[string]string{"SCR_CACHE_BASE": shm, "SCR_CNTL_BASE": shm}
		errs := j.run(two, base, func(ctx context.Context, h *Handle) error {
			_, ok, err := h.HaveRestart(ctx)
			return fmt.Errorf("Init accepted the directory (restart offered: %v, %v)", ok, err)
		})
		for r, err := range errs {
			if !strings.Contains(fmt.Sprint(err), filepath.Join(shm, "tester")+": "+problem) {
				t.Fatalf("%s: rank %d: %v", plant, r, err)
			}
		}
		if _, err := os.Stat(filepath.Join(shm, "mal", "scr.77")); err == nil {
			t.Fatalf("%s: a directory was made through Mallory's link", plant)
		}
		t.Log(errs[1])
	}
	// Our own directory: Mallory can neither replace nor remove it.
	shm := safefstest.SharedDir(t)
	j := newJob(t, nil)
	base := map[string]string{"SCR_CACHE_BASE": shm, "SCR_CNTL_BASE": shm}
	mustAll(t, j.run([]string{"n1"}, base, func(ctx context.Context, h *Handle) error {
		return checkpoint(ctx, h, 1, 100, 0)
	}))
	if out, err := safefstest.Try(safefstest.Mallory, "mv "+shm+"/tester "+shm+"/gone || rm -rf "+shm+"/tester"); err == nil {
		t.Fatalf("Mallory moved our cache directory away: %s", out)
	}
	sameName(t, restartAll(t, j, []string{"n1"}, base, 100), "ckpt.1")
}

// Defect 2: paths in the cache index are metadata. A planted or damaged
// cindex.json whose entry points outside the cache (with an id that does
// not match its key, and as a never-completed dataset that Init purges)
// must not make Init remove that directory; the node's cache is dropped,
// loudly, instead.
func TestCacheIndexPathsNeverReachRemoveAll(t *testing.T) {
	j := newJob(t, nil)
	log := &testio.LockedBuffer{}
	j.stderr = log
	victim := filepath.Join(j.base, "victim")
	os.MkdirAll(filepath.Join(victim, "keep"), 0o700)
	os.WriteFile(filepath.Join(victim, "keep", "data"), []byte("precious"), 0o600)
	mustAll(t, j.run([]string{"n1"}, nil, func(ctx context.Context, h *Handle) error {
		return checkpoint(ctx, h, 1, 100, 0)
	}))
	for _, entries := range []string{
		`"7":{"dataset":{"id":8},"path":%q}`,
		`"9":{"dataset":{"id":9,"complete":false},"path":%q}`,
		`"3":{"dataset":{"id":3,"complete":false},"path":"/tmp/../` + victim[1:] + `/../victim"}`,
	} {
		cidx := filepath.Join(j.cacheDir("n1"), "cindex.json")
		body := fmt.Sprintf(`{"version":1,"datasets":{`+entries+`}}`, victim)
		if !strings.Contains(entries, "%q") {
			body = `{"version":1,"datasets":{` + entries + `}}`
		}
		if err := os.WriteFile(cidx, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		mustAll(t, j.run([]string{"n1"}, nil, func(ctx context.Context, h *Handle) error {
			_, _, err := h.HaveRestart(ctx)
			return err
		}))
		if b, err := os.ReadFile(filepath.Join(victim, "keep", "data")); err != nil || string(b) != "precious" {
			t.Fatalf("%s: the directory the index pointed at was removed: %v", entries, err)
		}
	}
	if !strings.Contains(log.String(), "cache index cannot be trusted") || len(j.events("cache_dropped")) == 0 {
		t.Fatalf("the dropped cache was silent:\n%s", log.String())
	}
}

// writeRank2File replaces a rank2file part with raw JSON (as a damaged or
// planted file: the writer refuses such parts).
func writeRank2File(t *testing.T, pfx string, id int64, ranks [][]prefix.File) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"format": "scr-rank2file", "version": 1, "dataset": id, "first": 0, "ranks": ranks})
	if err := prefix.WriteFileAtomic(prefix.Rank2FilePath(pfx, id, 0), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Defect 3: a filemap path leaving the prefix makes the flush fail
// without writing anything outside.
func TestFlushRefusesAFilemapPathLeavingThePrefix(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "100"})
	victim := filepath.Join(j.base, "victim")
	os.MkdirAll(victim, 0o700)
	os.WriteFile(filepath.Join(victim, ".bashrc"), []byte("echo hi\n"), 0o600)
	errs := j.run([]string{"n1"}, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 8, 0); err != nil {
			return err
		}
		// The cached filemap is damaged (or planted) before Finalize
		// flushes the checkpoint.
		dir := filepath.Join(j.cacheDir("n1"), "scr.dataset.1", "rank.0")
		fm, err := cache.ReadFilemap(dir)
		if err != nil {
			return err
		}
		fm.Files[0].Rel = "../victim/.bashrc"
		if err := cache.WriteFilemap(dir, fm); err != nil {
			return err
		}
		return h.Finalize(ctx)
	})
	if !errors.Is(errs[0], ErrFlush) || !strings.Contains(errs[0].Error(), "../victim/.bashrc") {
		t.Fatalf("flush with a path leaving the prefix: %v", errs[0])
	}
	if b, _ := os.ReadFile(filepath.Join(victim, ".bashrc")); string(b) != "echo hi\n" {
		t.Fatalf("the victim's file was overwritten: %q", b)
	}
}

// Defect 3: SCR_PREFIX_SIZE deletes the files rank2file lists: a listed
// path leaving the prefix is not deleted, and emptied directories are
// removed up to the prefix, never above it.
func TestPrefixSizeDeletesOnlyInsideThePrefix(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_PREFIX_SIZE": "1"})
	victim := filepath.Join(j.base, "victim")
	os.MkdirAll(filepath.Join(victim, "empty"), 0o700)
	os.WriteFile(filepath.Join(victim, ".bashrc"), []byte("mine"), 0o600)
	mustAll(t, j.run([]string{"n1"}, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 8, 0); err != nil {
			return err
		}
		writeRank2File(t, j.prefix, 1, [][]prefix.File{{{Path: "../victim/.bashrc", Size: 4}, {Path: "../victim/empty/x", Size: 1}}})
		err := checkpoint(ctx, h, 2, 8, 0) // flushed: ckpt.1 slides out of the window
		if err == nil || !strings.Contains(err.Error(), "prefix") {
			return fmt.Errorf("deleting a dataset whose rank2file leaves the prefix: %v", err)
		}
		return nil
	}))
	if b, err := os.ReadFile(filepath.Join(victim, ".bashrc")); err != nil || string(b) != "mine" {
		t.Fatalf("SCR_PREFIX_SIZE removed a file outside the prefix: %v", err)
	}
	if _, err := os.Stat(filepath.Join(victim, "empty")); err != nil {
		t.Fatalf("an empty directory outside the prefix was removed: %v", err)
	}
	// A normal deletion removes the emptied directories up to the prefix.
	j2 := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_PREFIX_SIZE": "1"})
	mustAll(t, j2.run([]string{"n1"}, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, 8, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	if _, err := os.Stat(filepath.Join(j2.prefix, "ckpt.1")); !os.IsNotExist(err) {
		t.Fatalf("ckpt.1 not deleted: %v", err)
	}
	if _, err := os.Stat(j2.prefix); err != nil {
		t.Fatal("the prefix itself was removed")
	}
}

// flushTwo writes two checkpoints on two nodes, each flushed, then wipes
// the caches so that a restart must fetch from the prefix.
func flushTwo(t *testing.T, j *job, size int) {
	t.Helper()
	mustAll(t, j.run(two, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, size, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	for _, n := range two {
		j.wipe(n)
	}
}

// restartFromPrefix checks that a restart falls back from the damaged
// ckpt.2 to ckpt.1, loudly: a warning on Options.Stderr and a bad_dataset event
// naming ckpt.2 with why, and ckpt.2 failed in the index, so the next
// run goes straight to ckpt.1 (it never blocks the job).
func restartFromPrefix(t *testing.T, j *job, size int, why string) {
	t.Helper()
	log := &testio.LockedBuffer{}
	j.stderr = log
	sameName(t, restartAll(t, j, two, nil, size), "ckpt.1")
	evs := j.events("bad_dataset")
	if len(evs) != 1 || evs[0].Fields["name"] != "ckpt.2" || evs[0].Fields["from"] != "prefix" || !strings.Contains(fmt.Sprint(evs[0].Fields["reason"]), why) {
		t.Fatalf("bad_dataset events %+v, want one for ckpt.2 saying %q", evs, why)
	}
	if !strings.Contains(log.String(), `checkpoint "ckpt.2"`) || !strings.Contains(log.String(), why) {
		t.Fatalf("no line on stderr about ckpt.2: %q", log.String())
	}
	x, err := prefix.ReadIndex(j.prefix)
	if err != nil || x.ByName("ckpt.2").Valid() {
		t.Fatalf("ckpt.2 still valid in the index (%v)", err)
	}
	for _, n := range two {
		j.wipe(n)
	}
	sameName(t, restartAll(t, j, two, nil, size), "ckpt.1")
}

// Defects 3, 6 and 9: a rank2file path leaving the prefix (here towards
// /etc/passwd) is never fetched; the restart falls back to the older
// checkpoint, says so, and the next relaunch does not try it again.
func TestFetchRefusesRank2FilePathsAndFallsBack(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	flushTwo(t, j, 16)
	s, err := prefix.ReadSummary(j.prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	writeRank2File(t, j.prefix, 2, [][]prefix.File{{{Path: "../../../../../../../../etc/passwd", Size: 1}}, {{Path: "ckpt.2/rank_1.ckpt", Size: 16}}})
	_ = s
	restartFromPrefix(t, j, 16, "leaves")
	for _, n := range two {
		filepath.WalkDir(j.nodeBase(n), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "passwd" {
				t.Errorf("a file from outside the prefix reached the cache: %s", p)
			}
			return nil
		})
	}
}

// Defects 5 and 9: SCR_CRC_ON_FLUSH records a CRC32C per file in
// rank2file; a flipped byte in the prefix (same size) is found by the
// fetch, and the restart falls back to the older checkpoint, loudly.
func TestFetchChecksTheCRC32COfFlushedFiles(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	flushTwo(t, j, 64)
	s, _ := prefix.ReadSummary(j.prefix, 2)
	files, err := prefix.RankFiles(j.prefix, s, 1)
	if err != nil || len(files) != 1 || files[0].CRC32C == "" {
		t.Fatalf("rank2file of ckpt.2 has no CRC32C: %+v %v", files, err)
	}
	p := filepath.Join(j.prefix, fileName(2, 1))
	b, _ := os.ReadFile(p)
	b[10] ^= 0x01
	os.WriteFile(p, b, 0o640)
	restartFromPrefix(t, j, 64, "crc32c")
}

// Defect 9: a damaged cached checkpoint (no redundancy to rebuild it) is
// dropped and the restart goes to the older cached one, loudly.
func TestCachedFallbackIsNeverSilent(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CACHE_SIZE": "2", "SCR_CRC_ON_COPY": "1"})
	log := &testio.LockedBuffer{}
	j.stderr = log
	mustAll(t, j.run(two, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, 100, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	p := filepath.Join(j.cacheDir("n2"), "scr.dataset.2", "rank.1", fileName(2, 1))
	b, _ := os.ReadFile(p)
	b[5] ^= 0xff
	os.WriteFile(p, b, 0o640)
	sameName(t, restartAll(t, j, two, nil, 100), "ckpt.1")
	evs := j.events("bad_dataset")
	if len(evs) != 1 || evs[0].Fields["name"] != "ckpt.2" || evs[0].Fields["from"] != "cache" {
		t.Fatalf("bad_dataset events %+v", evs)
	}
	if !strings.Contains(log.String(), `checkpoint "ckpt.2"`) {
		t.Fatalf("no line on stderr: %q", log.String())
	}
}

// Defect 8: a second job (another job id) on a prefix in use is refused
// with a message naming the job that holds it; once that one finalized,
// the prefix is free. A relaunch of the same job is not refused.
func TestTwoJobsDoNotShareAPrefix(t *testing.T) {
	j := newJob(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	initAs := func(job string) (*Handle, error) {
		c := comm.NewLocal([]string{"n1"})[0]
		return Init(ctx, Options{Comm: c, Node: "n1", Env: j.envFor("n1", map[string]string{"SCR_JOB_ID": job})})
	}
	a, err := initAs("77")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := initAs("88"); !errors.Is(err, prefix.ErrPrefixBusy) || !strings.Contains(err.Error(), "job 77") {
		t.Fatalf("a second job on a prefix in use: %v", err)
	} else {
		t.Log(err)
	}
	same, err := initAs("77") // a relaunch of job 77 while its old rank 0 lingers
	if err != nil {
		t.Fatalf("a relaunch of the same job was refused: %v", err)
	}
	same.owner.Release()
	if err := a.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := initAs("88")
	if err != nil {
		t.Fatalf("the prefix is free after the first job finalized: %v", err)
	}
	b.Finalize(ctx)
}

// Defect 10: the rank that knows why Init failed is not the only one to
// say it. With kill-on-first-failure (srun -K, scr_launch) whichever rank
// exits first is all the user sees: every rank's error carries the cause
// (here a corrupt flush.json that only rank 0 reads).
func TestInitCauseReachesEveryRank(t *testing.T) {
	j := newJob(t, nil)
	os.MkdirAll(prefix.MetaDir(j.prefix), 0o700)
	os.WriteFile(prefix.FlushPath(j.prefix), []byte(`{"format":"scr-flush","version":1,"datasets":{"1":`), 0o600)
	errs := j.run(four, nil, func(ctx context.Context, h *Handle) error { return errors.New("Init succeeded") })
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), prefix.FlushPath(j.prefix)) {
			t.Fatalf("rank %d does not name the cause: %v", r, err)
		}
	}
	t.Log(errs[3])
}

// Defect 12: dataset names are checked (a newline would forge lines in
// listings; a 1 MiB name is no name), and a file called "..data/f" is a
// file inside the prefix like any other: flushed, and scr_index --build
// finds the dataset complete.
func TestDatasetNamesAndDotDotFileNames(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	mustAll(t, j.run(two, nil, func(ctx context.Context, h *Handle) error {
		for _, name := range []string{"ckpt\nforged 1 CKPT YES", strings.Repeat("x", 1<<20), "bad\x00"} {
			if err := h.StartOutput(ctx, name, Checkpoint); !errors.Is(err, ErrName) {
				return fmt.Errorf("StartOutput(%.20q...): %v", name, err)
			}
		}
		if err := h.StartOutput(ctx, "ckpt.1", Checkpoint); err != nil {
			return err
		}
		p, err := h.Route(fmt.Sprintf("..data/rank_%d", h.Rank()))
		if err != nil {
			return err
		}
		os.WriteFile(p, []byte("dot-dot"), 0o600)
		return h.Complete(ctx, true)
	}))
	chk, err := prefix.BuildDataset(context.Background(), j.prefix, 1, nil, time.Now())
	if err != nil || !chk.Complete() {
		t.Fatalf("scr_index --build of a dataset with ..data/: %+v %v", chk, err)
	}
	x, _ := prefix.ReadIndex(j.prefix)
	if e := x.ByName("ckpt.1"); e == nil || !e.Valid() {
		t.Fatalf("the good dataset was marked failed: %+v", e)
	}
}

// Defect 13: a symbolic link inside the prefix, planted by another user of
// a shared (1777) prefix, must not lead a flush outside the prefix.
func TestFlushDoesNotFollowALinkOutOfThePrefix(t *testing.T) {
	safefstest.RequireRoot(t)
	shared := safefstest.SharedDir(t)
	pfx := filepath.Join(shared, "prefix")
	os.Mkdir(pfx, 0o755)
	os.Chmod(pfx, 0o777|os.ModeSticky)
	safefstest.As(t, safefstest.Mallory, "mkdir -m 0777 "+shared+"/mal && ln -s "+shared+"/mal "+pfx+"/ckpt.1")
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_PREFIX": pfx})
	j.prefix = pfx
	errs := j.run(two, nil, func(ctx context.Context, h *Handle) error {
		err := checkpoint(ctx, h, 1, 32, 0)
		if !errors.Is(err, ErrFlush) {
			return fmt.Errorf("flush through a link out of the prefix: %v", err)
		}
		return nil
	})
	mustAll(t, errs)
	if ents, _ := os.ReadDir(filepath.Join(shared, "mal")); len(ents) != 0 {
		t.Fatalf("the flush wrote into Mallory's directory: %v", ents)
	}
}

// Defect 14: a flush that runs out of space on the prefix leaves no
// partial files behind (neither the part written nor the other ranks'
// complete files of the dataset), and the checkpoint stays in the cache.
func TestFullPrefixLeavesNoPartialFiles(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" || os.Geteuid() != 0 {
		t.Skip("mounts a tiny tmpfs as the prefix: runs with SCR_E2E=1 as root")
	}
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", j.prefix).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", j.prefix).Run() }) // lazy: a handle left without Finalize holds the prefix lock
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 200_000, 0); !errors.Is(err, ErrFlush) {
			return fmt.Errorf("flush of 800 kB to a 512 kB prefix: %v", err)
		}
		return nil
	}))
	filepath.WalkDir(j.prefix, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == j.prefix {
			return err
		}
		if d.IsDir() && d.Name() == ".scr" {
			return filepath.SkipDir
		}
		t.Errorf("left in the prefix after the failed flush: %s", p)
		return nil
	})
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_FLUSH": "0"}, 200_000), "ckpt.1")
}

// Keep the previous checkpoint: with SCR_CACHE_SIZE=1 and room for two,
// the previous checkpoint stays in the cache until the new one is
// complete, so a failure while the new one is written (here: the run ends
// between StartOutput and Complete, as when a node loses power) still
// restarts from it. After a Complete only one is kept. Without room it is
// evicted first, as before.
func TestPreviousCheckpointKeptUntilTheNewOneIsComplete(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_COPY_TYPE": "XOR", "SCR_SET_SIZE": "2"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 1000, 0); err != nil {
			return err
		}
		if err := h.StartOutput(ctx, "ckpt.2", Checkpoint); err != nil {
			return err
		}
		p, err := h.Route(fileName(2, h.Rank()))
		if err != nil {
			return err
		}
		return os.WriteFile(p, content(h.Rank(), 2, 500), 0o600) // then the power goes
	}))
	sameName(t, restartAll(t, j, four, nil, 1000), "ckpt.1")

	// A completed checkpoint replaces the previous one (SCR_CACHE_SIZE=1).
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 3, 1000, 0); err != nil {
			return err
		}
		if len(h.cached) != 1 || h.cached[h.dsID].Name != "ckpt.3" {
			return fmt.Errorf("cached after Complete: %v", h.cached)
		}
		return h.Finalize(ctx)
	}))
	for _, n := range four {
		ds, _ := filepath.Glob(filepath.Join(j.cacheDir(n), "scr.dataset.*"))
		if len(ds) != 1 {
			t.Fatalf("%s holds %v, want only ckpt.3's dataset", n, ds)
		}
	}

	// No room for two: the previous one goes first.
	old := freeSpace
	freeSpace = func(string) (int64, error) { return 100, nil }
	defer func() { freeSpace = old }()
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := h.StartOutput(ctx, "ckpt.4", Checkpoint); err != nil {
			return err
		}
		if len(h.cached) != 0 {
			return fmt.Errorf("kept without room: %v", h.cached)
		}
		return nil
	}))
}

// The containment check for the cache's own paths: Layout.Create makes
// only directories we own, and refuses a user name or job id that is not
// one directory name.
func TestUserAndJobNamesAreOneDirectory(t *testing.T) {
	j := newJob(t, nil)
	for _, kv := range [][2]string{{"SCR_USER_NAME", "../../tmp/x"}, {"SCR_JOB_ID", "1/../../x"}} {
		errs := j.run([]string{"n1"}, map[string]string{kv[0]: kv[1]}, func(ctx context.Context, h *Handle) error {
			return errors.New("Init succeeded")
		})
		if !errors.Is(errs[0], ErrConfig) || !strings.Contains(errs[0].Error(), kv[0]) {
			t.Fatalf("%s=%s: %v", kv[0], kv[1], errs[0])
		}
	}
	_ = safefs.ErrUnsafe
}

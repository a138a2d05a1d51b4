package prefix

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
)

func ckpt(id int64, name string) Dataset {
	return Dataset{ID: id, Name: name, Checkpoint: true, CkptID: id, Created: time.Unix(1700000000+id, 0).UTC()}
}

func TestIndexRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	err := UpdateIndex(ctx, dir, func(x *Index) error {
		for i := int64(1); i <= 3; i++ {
			if _, err := x.Put(ckpt(i, "ckpt."+string(rune('0'+i)))); err != nil {
				return err
			}
			if err := x.MarkFlushed(i, true, t0); err != nil {
				return err
			}
		}
		x.MarkFetched(2, t0)
		x.MarkFetched(2, t0.Add(time.Hour))
		return x.SetCurrent("ckpt.3")
	})
	if err != nil {
		t.Fatal(err)
	}
	x, err := ReadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if x.Current != "ckpt.3" || len(x.Datasets) != 3 || len(x.Get(2).Fetched) != 2 || !x.Get(1).Flushed.Equal(t0) {
		t.Fatalf("read back %+v", x)
	}
	if e := x.Entries(); e[0].Dataset.ID != 3 || e[2].Dataset.ID != 1 {
		t.Errorf("not newest first")
	}
}

func TestIndexMissingIsEmpty(t *testing.T) {
	x, err := ReadIndex(t.TempDir())
	if err != nil || len(x.Datasets) != 0 || x.Current != "" {
		t.Fatalf("%+v %v", x, err)
	}
}

func TestFetchCandidate(t *testing.T) {
	now := time.Now()
	build := func() *Index {
		x := NewIndex()
		for i, n := range []string{"c1", "c2", "c3", "c4"} {
			id := int64(i + 1)
			x.Put(ckpt(id, n))
			x.MarkFlushed(id, true, now)
		}
		out := Dataset{ID: 5, Name: "out5", Output: true}
		x.Put(out)
		x.MarkFlushed(5, true, now)
		return x
	}
	tests := []struct {
		name  string
		setup func(x *Index)
		below int64
		want  string
	}{
		{"newest complete checkpoint, not pure output", func(x *Index) {}, 0, "c4"},
		{"skips failed", func(x *Index) { x.MarkFailed(4, now) }, 0, "c3"},
		{"skips incomplete", func(x *Index) { x.MarkFlushed(4, false, now) }, 0, "c3"},
		{"below the last tried", func(x *Index) {}, 3, "c2"},
		{"current first", func(x *Index) { x.SetCurrent("c2") }, 0, "c2"},
		{"explicit current even if failed", func(x *Index) { x.MarkFailed(2, now); x.Current = "c2" }, 0, "c2"},
		{"current not below the bound is skipped", func(x *Index) { x.SetCurrent("c3") }, 3, "c2"},
		{"nothing left", func(x *Index) {}, 1, ""},
		{"failing current unsets it", func(x *Index) { x.SetCurrent("c4"); x.MarkFailed(4, now) }, 0, "c3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := build()
			tc.setup(x)
			e := x.FetchCandidate(tc.below)
			got := ""
			if e != nil {
				got = e.Dataset.Name
			}
			if got != tc.want {
				t.Errorf("got %q want %q", got, tc.want)
			}
		})
	}
}

func TestDropAndDropAfter(t *testing.T) {
	x := NewIndex()
	for i := int64(1); i <= 5; i++ {
		x.Put(ckpt(i, "c"+string(rune('0'+i))))
	}
	x.Current = "c5"
	dropped, err := x.DropAfter("c2")
	if err != nil || len(dropped) != 3 || dropped[0] != 5 || x.Current != "" || len(x.Datasets) != 2 {
		t.Fatalf("dropped %v err %v current %q left %d", dropped, err, x.Current, len(x.Datasets))
	}
	if err := x.Drop("c1"); err != nil || x.ByName("c1") != nil {
		t.Fatal(err)
	}
	if err := x.Drop("nope"); !errors.Is(err, ErrNoDataset) {
		t.Errorf("drop unknown: %v", err)
	}
	if _, err := x.Put(ckpt(9, "c2")); err == nil {
		t.Error("duplicate name accepted")
	}
}

func TestIndexConcurrentUpdates(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var wg sync.WaitGroup
	const n = 20
	errs := make(chan error, n)
	for i := int64(1); i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- UpdateIndex(ctx, dir, func(x *Index) error {
				_, err := x.Put(ckpt(i, "c"+time.Duration(i).String()))
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	x, err := ReadIndex(dir)
	if err != nil || len(x.Datasets) != n {
		t.Fatalf("%d entries after %d locked updates, err %v", len(x.Datasets), n, err)
	}
}

func TestCorruptIndexFixtures(t *testing.T) {
	fixtures, _ := filepath.Glob("testdata/index-*")
	if len(fixtures) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range fixtures {
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir()
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(MetaDir(dir), 0o700)
			os.WriteFile(IndexPath(dir), b, 0o600)
			_, err = ReadIndex(dir)
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Path != IndexPath(dir) {
				t.Fatalf("got %v, want a CorruptError naming %s", err, IndexPath(dir))
			}
			// An update must not overwrite the damaged file.
			err = UpdateIndex(context.Background(), dir, func(*Index) error { return nil })
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("update over corrupt index: %v", err)
			}
			after, _ := os.ReadFile(IndexPath(dir))
			if string(after) != string(b) {
				t.Fatal("corrupt index was rewritten")
			}
		})
	}
}

func TestPrefixSizeVictims(t *testing.T) {
	now := time.Now()
	x := NewIndex()
	for i := int64(1); i <= 6; i++ {
		d := ckpt(i, fmt.Sprintf("c%d", i))
		if i == 2 {
			d.Output = true // checkpoint and output: never deleted
		}
		x.Put(d)
		x.MarkFlushed(i, true, now)
	}
	x.MarkFailed(6, now) // a failed newest does not count as kept
	x.Current = "c1"
	names := func(es []*IndexEntry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Dataset.Name)
		}
		return strings.Join(s, ",")
	}
	for keep, want := range map[int]string{0: "", 1: "c4,c3", 2: "c3", 3: "", 9: ""} {
		if got := names(x.PrefixSizeVictims(keep)); got != want {
			t.Errorf("keep %d: %q, want %q", keep, got, want)
		}
	}
}

package prefix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeDataset writes a dataset of `ranks` ranks, each with two files, in
// blocks of per ranks, and creates the files unless skip says otherwise.
func writeDataset(t *testing.T, dir string, id int64, ranks, per int, skip func(rank, file int) bool) *Summary {
	t.Helper()
	s := &Summary{Dataset: Dataset{ID: id, Name: fmt.Sprintf("ckpt.%d", id), Checkpoint: true, CkptID: id}, Ranks: ranks, RanksPerPart: per}
	for p := 0; p < s.Parts(); p++ {
		part := &Rank2FilePart{First: p * per}
		for r := p * per; r < min((p+1)*per, ranks); r++ {
			var files []File
			for f := 0; f < 2; f++ {
				rel := fmt.Sprintf("ckpt.%d/rank_%d.%d", id, r, f)
				data := []byte(fmt.Sprintf("rank %d file %d", r, f))
				files = append(files, File{Path: rel, Size: int64(len(data))})
				if skip == nil || !skip(r, f) {
					p := filepath.Join(dir, rel)
					os.MkdirAll(filepath.Dir(p), 0o700)
					if err := os.WriteFile(p, data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			part.Ranks = append(part.Ranks, files)
		}
		if err := WriteRank2FilePart(dir, id, p, part); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteSummary(dir, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRank2FileBlocks(t *testing.T) {
	dir := t.TempDir()
	s := writeDataset(t, dir, 4, 10, 4, nil)
	if s.Parts() != 3 {
		t.Fatalf("parts %d", s.Parts())
	}
	s2, err := ReadSummary(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < 10; r++ {
		files, err := RankFiles(dir, s2, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2 || files[1].Path != fmt.Sprintf("ckpt.4/rank_%d.1", r) {
			t.Fatalf("rank %d: %+v", r, files)
		}
	}
	if _, err := RankFiles(dir, s2, 10); err == nil {
		t.Error("rank out of range accepted")
	}
}

func TestCheckAndBuild(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	writeDataset(t, dir, 7, 6, 4, func(r, f int) bool { return r == 5 && f == 0 })
	// A wrong size counts as missing too.
	os.WriteFile(filepath.Join(dir, "ckpt.7/rank_2.1"), []byte("x"), 0o600)
	chk, err := CheckDataset(ctx, dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	if chk.Files != 12 || chk.Complete() || len(chk.Missing) != 2 || chk.Missing[0].Rank != 2 || chk.Missing[1].Reason != "missing" {
		t.Fatalf("check %+v", chk)
	}
	now := time.Now().UTC()
	chk, err = BuildDataset(ctx, dir, 7, nil, now)
	if err != nil || chk.Complete() {
		t.Fatalf("build without rebuilder: %v complete=%v", err, chk.Complete())
	}
	x, _ := ReadIndex(dir)
	if e := x.Get(7); e == nil || e.Complete || e.Valid() {
		t.Fatalf("index entry %+v", e)
	}
	// A rebuilder that restores the files makes the build complete.
	rb := rebuildFunc(func(ctx context.Context, dir string, id int64, missing []Missing) error {
		for _, m := range missing {
			p, _ := PrefixFilePath(dir, m.Path)
			var r, f int
			fmt.Sscanf(filepath.Base(m.Path), "rank_%d.%d", &r, &f)
			if err := os.WriteFile(p, []byte(fmt.Sprintf("rank %d file %d", r, f)), 0o600); err != nil {
				return err
			}
		}
		return nil
	})
	x.MarkFailed(7, now)
	WriteIndex(dir, x)
	chk, err = BuildDataset(ctx, dir, 7, rb, now)
	if err != nil || !chk.Complete() {
		t.Fatalf("build with rebuilder: %v %+v", err, chk)
	}
	x, _ = ReadIndex(dir)
	if e := x.Get(7); !e.Valid() || !e.Flushed.Equal(now) {
		t.Fatalf("entry after rebuild %+v", e)
	}
	s, _ := ReadSummary(dir, 7)
	if !s.Complete {
		t.Error("summary not complete")
	}
	// A failing rebuilder's error is reported.
	os.Remove(filepath.Join(dir, "ckpt.7/rank_0.0"))
	_, err = BuildDataset(ctx, dir, 7, rebuildFunc(func(context.Context, string, int64, []Missing) error { return errors.New("two members of set 0 lost") }), now)
	if err == nil {
		t.Fatal("rebuild failure hidden")
	}
}

type rebuildFunc func(ctx context.Context, dir string, id int64, missing []Missing) error

func (f rebuildFunc) RebuildDataset(ctx context.Context, dir string, id int64, missing []Missing) error {
	return f(ctx, dir, id, missing)
}

func TestAddDataset(t *testing.T) {
	dir := t.TempDir()
	s := writeDataset(t, dir, 3, 2, 256, nil)
	s.Complete = true
	WriteSummary(dir, s)
	writeDataset(t, dir, 4, 2, 256, nil)
	if _, err := AddDataset(context.Background(), dir, "ckpt.3", time.Now()); err != nil {
		t.Fatal(err)
	}
	x, _ := ReadIndex(dir)
	if e := x.ByName("ckpt.3"); e == nil || !e.Valid() || len(x.Datasets) != 1 {
		t.Fatalf("index %+v", x.Datasets)
	}
	if _, err := AddDataset(context.Background(), dir, "nope", time.Now()); !errors.Is(err, ErrNoDataset) {
		t.Errorf("add unknown: %v", err)
	}
	ids, _ := DatasetIDs(dir)
	if len(ids) != 2 || ids[0] != 4 {
		t.Errorf("ids %v", ids)
	}
}

func TestPrefixFilePath(t *testing.T) {
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../../x", "."} {
		if p, err := PrefixFilePath("/p", bad); err == nil {
			t.Errorf("%q -> %q accepted", bad, p)
		}
	}
	if p, err := PrefixFilePath("/p", "a/./b/../c"); err != nil || p != "/p/a/c" {
		t.Errorf("got %q %v", p, err)
	}
}

func TestFlushState(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	err := UpdateFlush(ctx, dir, func(fs *FlushState) error {
		e := fs.Ensure(2, "c2", true, false)
		e.Set(LocCache, true)
		e.Set(LocFlushing, true)
		fs.Ensure(1, "o1", false, true).Set(LocCache, true)
		fs.Get(1).Set(LocPFS, true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := ReadFlush(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !fs.Get(2).NeedsFlush() || fs.Get(1).NeedsFlush() || fs.Entries()[0].ID != 1 {
		t.Fatalf("%+v", fs.Datasets)
	}
	UpdateFlush(ctx, dir, func(fs *FlushState) error {
		fs.Get(2).Set(LocFlushing, false)
		fs.Get(2).Set(LocPFS, true)
		fs.Remove(1)
		return nil
	})
	fs, _ = ReadFlush(dir)
	if fs.Get(2).NeedsFlush() || fs.Get(1) != nil || fs.Get(2).Has(LocFlushing) {
		t.Fatalf("%+v", fs.Get(2))
	}
}

func TestNodesFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadNodes(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing nodes file: %v", err)
	}
	if err := WriteNodes(dir, &Nodes{Nodes: 3, Hosts: []string{"a", "b", "c"}}); err != nil {
		t.Fatal(err)
	}
	n, err := ReadNodes(dir)
	if err != nil || n.Nodes != 3 {
		t.Fatal(n, err)
	}
}

// TestDamagedFixtures loads every damaged file under testdata/ (named
// <kind>-<failure>.json) and checks that it is reported as corrupt, naming
// the file, never read as empty.
func TestDamagedFixtures(t *testing.T) {
	readers := map[string]struct {
		path func(dir string) string
		read func(dir string) error
	}{
		"halt":  {HaltPath, func(d string) error { _, _, err := ReadHalt(d); return err }},
		"flush": {FlushPath, func(d string) error { _, err := ReadFlush(d); return err }},
		"nodes": {NodesPath, func(d string) error { _, err := ReadNodes(d); return err }},
		"summary": {func(d string) string { return SummaryPath(d, 5) }, func(d string) error {
			_, err := ReadSummary(d, 5)
			return err
		}},
		"rank2file": {func(d string) string { return Rank2FilePath(d, 5, 0) }, func(d string) error {
			WriteSummary(d, &Summary{Dataset: Dataset{ID: 5, Name: "c5"}, Ranks: 3, RanksPerPart: 2})
			s, err := ReadSummary(d, 5)
			if err != nil {
				return fmt.Errorf("fixture setup: %w", err)
			}
			_, err = ReadRank2FilePart(d, s, 0)
			return err
		}},
	}
	n := 0
	for kind, rd := range readers {
		fixtures, _ := filepath.Glob("testdata/" + kind + "-*.json")
		for _, f := range fixtures {
			n++
			t.Run(filepath.Base(f), func(t *testing.T) {
				dir := t.TempDir()
				b, _ := os.ReadFile(f)
				p := rd.path(dir)
				os.MkdirAll(filepath.Dir(p), 0o700)
				os.WriteFile(p, b, 0o600)
				err := rd.read(dir)
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.Path != p {
					t.Fatalf("got %v, want a CorruptError naming %s", err, p)
				}
			})
		}
	}
	if n < 5 {
		t.Fatalf("only %d damaged fixtures found", n)
	}
}

func TestLostRanksAreMissing(t *testing.T) {
	dir := t.TempDir()
	s := &Summary{Dataset: Dataset{ID: 8, Name: "c8"}, Ranks: 3, RanksPerPart: 4}
	os.MkdirAll(filepath.Join(dir, "c8"), 0o700)
	os.WriteFile(filepath.Join(dir, "c8/a"), []byte("a"), 0o600)
	// rank 0 wrote one file, rank 1 wrote none, rank 2 was not recovered.
	if err := WriteRank2FilePart(dir, 8, 0, &Rank2FilePart{Ranks: [][]File{{{Path: "c8/a", Size: 1}}, nil, nil}, Lost: []int{2}}); err != nil {
		t.Fatal(err)
	}
	WriteSummary(dir, s)
	b, _ := os.ReadFile(Rank2FilePath(dir, 8, 0))
	if strings.Contains(string(b), "null") {
		t.Errorf("a rank without files is written as null:\n%s", b)
	}
	chk, err := CheckDataset(context.Background(), dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	if chk.Complete() || len(chk.Missing) != 1 || chk.Missing[0].Rank != 2 {
		t.Fatalf("%+v", chk.Missing)
	}
	if err := WriteRank2FilePart(dir, 8, 0, &Rank2FilePart{Ranks: [][]File{nil}, Lost: []int{5}}); err == nil {
		t.Error("lost rank outside the block accepted")
	}
}

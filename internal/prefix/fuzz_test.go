package prefix

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/safefs"
)

// FuzzReadMetadata: any bytes in a metadata file give either a consistent
// value or a *CorruptError naming the file; never a panic, never a silent
// empty result for a damaged file.
func FuzzReadMetadata(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.json")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte(`{"format":"scr-index","version":1,"current":"a","datasets":{"1":{"dataset":{"id":1,"name":"a","checkpoint":true},"complete":true}}}`))
	f.Add([]byte(`{"format":"scr-halt","version":1,"checkpoints_left":0}`))
	f.Add([]byte(`{"format":"scr-rank2file","version":1,"dataset":5,"first":0,"ranks":[[{"path":"c/a","size":1,"crc32c":"0000abcd"}],[{"path":"c/../../x","size":1}]]}`))
	f.Add([]byte(`{"format":"scr-rank2file","version":1,"dataset":5,"first":0,"ranks":[[{"path":"..data/f","size":1}],[{"path":"c/./.scr/x","size":1}]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.MkdirAll(MetaDir(dir), 0o700)
		check := func(path string, err error) {
			if err == nil {
				return
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Path != path {
				t.Fatalf("error for %s is not a CorruptError naming it: %v", path, err)
			}
		}
		os.WriteFile(IndexPath(dir), data, 0o600)
		x, err := ReadIndex(dir)
		check(IndexPath(dir), err)
		if err == nil {
			for k, e := range x.Datasets {
				if e == nil || x.Get(e.Dataset.ID) != e {
					t.Fatalf("inconsistent entry %q", k)
				}
			}
			x.FetchCandidate(0)
			x.Entries()
		}
		os.WriteFile(HaltPath(dir), data, 0o600)
		h, _, err := ReadHalt(dir)
		check(HaltPath(dir), err)
		if err == nil {
			h.HaltCheck(time.Unix(1e9, 0), time.Unix(1e9+5, 0), 10, true)
		}
		os.WriteFile(FlushPath(dir), data, 0o600)
		_, err = ReadFlush(dir)
		check(FlushPath(dir), err)
		os.MkdirAll(DatasetDir(dir, 1), 0o700)
		os.WriteFile(SummaryPath(dir, 1), data, 0o600)
		s, err := ReadSummary(dir, 1)
		check(SummaryPath(dir, 1), err)
		if err == nil {
			s.Parts()
		}
		// rank2file: the part holds ranks 0..1 of dataset 5 (as the
		// fixtures under testdata/ do); the fuzzed bytes are the part.
		if err := WriteSummary(dir, &Summary{Dataset: Dataset{ID: 5, Name: "c5"}, Ranks: 2, RanksPerPart: 2}); err != nil {
			t.Fatal(err)
		}
		s5, err := ReadSummary(dir, 5)
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(Rank2FilePath(dir, 5, 0)), 0o700)
		os.WriteFile(Rank2FilePath(dir, 5, 0), data, 0o600)
		p, err := ReadRank2FilePart(dir, s5, 0)
		check(Rank2FilePath(dir, 5, 0), err)
		if err != nil {
			return
		}
		// Every path a rank2file part hands out stays inside the prefix,
		// outside .scr: it is used to read, write and delete files.
		for r := p.First; r < p.First+len(p.Ranks); r++ {
			files, err := RankFiles(dir, s5, r)
			if err != nil {
				t.Fatalf("rank %d of a part that was read: %v", r, err)
			}
			for _, f := range files {
				abs := filepath.Join(dir, filepath.FromSlash(f.Path))
				if f.Path == "" || filepath.IsAbs(f.Path) || abs == dir || !safefs.Within(dir, abs) || safefs.Within(MetaDir(dir), abs) {
					t.Fatalf("rank2file of rank %d hands out %q (-> %s): outside the prefix or in .scr", r, f.Path, abs)
				}
			}
		}
	})
}

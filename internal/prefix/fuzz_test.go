package prefix

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
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
		if err == nil && s.Ranks > 0 && s.Ranks < 1<<20 {
			os.MkdirAll(filepath.Dir(Rank2FilePath(dir, 1, 0)), 0o700)
			os.WriteFile(Rank2FilePath(dir, 1, 0), data, 0o600)
			p, err := ReadRank2FilePart(dir, s, 0)
			check(Rank2FilePath(dir, 1, 0), err)
			if err == nil {
				RankFiles(dir, s, 0)
				_ = p
			}
		}
	})
}

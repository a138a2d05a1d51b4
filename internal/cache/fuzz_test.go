package cache

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// FuzzReadIndex: any file content gives an index or an error, never a
// panic; every path an accepted index hands out is the directory of its
// own dataset inside this job's cache directories (Layout.ReadIndex checks
// them: a cache index is metadata, and its paths are read, written and
// removed); an index read back writes and reads again unchanged in ids.
func FuzzReadIndex(f *testing.F) {
	f.Add([]byte(`{"version":1,"datasets":{"1":{"dataset":{"id":1,"complete":true},"path":"/x"}}}`))
	f.Add([]byte(`{"version":1,"datasets":{"2":{"dataset":{"id":2},"path":"/home/victim"}}}`))
	f.Add([]byte(`{"version":1,"datasets":{"3":{"dataset":{"id":3},"path":"/b/u/scr.9/scr.dataset.3/../../../../etc"}}}`))
	f.Add([]byte(`{"version":1,"datasets":{"4":{"dataset":{"id":4},"path":"/b/u/scr.9/scr.dataset.5"}}}`))
	f.Add([]byte(`{"version":1,"datasets":{"5":{"dataset":{"id":6},"path":""}}}`))
	f.Add([]byte(`{"version":1,"datasets":{"6":{"dataset":{"id":6},"path":"/other/u/scr.9/scr.dataset.6"}}}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"datasets":null}`))
	f.Add([]byte(`garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l := LayoutOf(t.TempDir(), "/b", "u", "9")
		os.MkdirAll(l.CntlDir, 0o700)
		p := l.IndexPath()
		os.WriteFile(p, b, 0o600)
		ix, err := l.ReadIndex()
		if err != nil {
			return
		}
		for id, e := range ix.Datasets {
			if e.Dataset.ID != id {
				t.Fatalf("entry %d describes dataset %d", id, e.Dataset.ID)
			}
			dir := l.DatasetPath(ix, id)
			if filepath.Clean(dir) != dir || filepath.Base(dir) != "scr.dataset."+strconv.Itoa(id) ||
				filepath.Base(filepath.Dir(dir)) != "scr.9" || filepath.Base(filepath.Dir(filepath.Dir(dir))) != "u" || !filepath.IsAbs(dir) {
				t.Fatalf("entry %d hands out %q: not dataset %d's directory of this job", id, dir, id)
			}
		}
		ids := ix.IDs()
		if err := ix.Write(p); err != nil {
			t.Fatal(err)
		}
		back, err := ReadIndex(p)
		if err != nil || !slices.Equal(back.IDs(), ids) {
			t.Fatalf("round trip: %v %v %v", ids, back, err)
		}
	})
}

// FuzzEvictionPlan: the plan evicts only non-busy datasets, oldest first,
// and when it says ok, one more dataset fits.
func FuzzEvictionPlan(f *testing.F) {
	f.Add([]byte{1, 2, 3}, 2, uint8(1))
	f.Fuzz(func(t *testing.T, raw []byte, count int, busyMask uint8) {
		var ids []int
		seen := map[int]bool{}
		for _, b := range raw {
			if !seen[int(b)] {
				seen[int(b)] = true
				ids = append(ids, int(b))
			}
		}
		busy := func(id int) bool { return busyMask&(1<<(id%8)) != 0 }
		plan, ok := EvictionPlan(ids, count, busy)
		c := max(count, 1)
		for i, id := range plan {
			if busy(id) || !seen[id] || (i > 0 && plan[i-1] >= id) {
				t.Fatalf("bad plan %v for %v", plan, ids)
			}
		}
		if left := len(ids) - len(plan); ok != (left < c) {
			t.Fatalf("ok=%v but %d left with count %d", ok, left, c)
		}
		// Oldest first: every kept non-busy dataset is newer than every evicted one.
		for _, id := range ids {
			if !busy(id) && !slices.Contains(plan, id) && len(plan) > 0 && id < plan[len(plan)-1] {
				t.Fatalf("kept %d older than evicted %v", id, plan)
			}
		}
	})
}

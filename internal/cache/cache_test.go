package cache

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func env(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLayout(t *testing.T) {
	l := NewLayout(env(map[string]string{"SCR_CACHE_BASE": "/c", "SCR_CNTL_BASE": "/k", "SCR_USER_NAME": "u", "SLURM_JOB_ID": "42"}))
	if l.CacheDir != "/c/u/scr.42" || l.CntlDir != "/k/u/scr.42" {
		t.Fatalf("layout %+v", l)
	}
	if got := l.RankDir(3, 7); got != "/c/u/scr.42/scr.dataset.3/rank.7" {
		t.Fatalf("rank dir %s", got)
	}
	l = NewLayout(env(map[string]string{"USER": "x"}))
	if l.CacheDir != "/dev/shm/x/scr.defjobid" {
		t.Fatalf("defaults %+v", l)
	}
	if JobID(env(map[string]string{"SCR_JOB_ID": "a", "SLURM_JOB_ID": "b"})) != "a" {
		t.Fatal("SCR_JOB_ID must win")
	}
}

func TestEvictionPlan(t *testing.T) {
	cases := []struct {
		name  string
		ids   []int
		count int
		busy  []int
		want  []int
		ok    bool
	}{
		{"empty", nil, 1, nil, nil, true},
		{"one kept one", []int{1}, 1, nil, []int{1}, true},
		{"room left", []int{1}, 2, nil, nil, true},
		{"oldest first", []int{3, 1, 2}, 2, nil, []int{1, 2}, true},
		{"skip flushing", []int{1, 2}, 2, []int{1}, []int{2}, true},
		{"all busy", []int{1}, 1, []int{1}, nil, false},
		{"count zero means one", []int{1, 2}, 0, nil, []int{1, 2}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			busy := map[int]bool{}
			for _, b := range c.busy {
				busy[b] = true
			}
			got, ok := EvictionPlan(c.ids, c.count, func(id int) bool { return busy[id] })
			if !reflect.DeepEqual(got, c.want) || ok != c.ok {
				t.Fatalf("got %v %v, want %v %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestIndexRoundTripAndDamage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cntl", "cindex.json")
	ix, err := ReadIndex(p)
	if err != nil || len(ix.Datasets) != 0 {
		t.Fatalf("missing index: %v %v", ix, err)
	}
	ix.Datasets[2] = &Entry{Dataset: Dataset{ID: 2, Name: "ckpt.2", Flags: FlagCheckpoint, CkptID: 1}, Path: "/x"}
	ix.Datasets[1] = &Entry{Dataset: Dataset{ID: 1, Name: "out", Flags: FlagOutput}}
	if err := ix.Write(p); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Dir(p))
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", st.Mode())
	}
	back, err := ReadIndex(p)
	if err != nil || !reflect.DeepEqual(back.IDs(), []int{1, 2}) || back.Datasets[2].Dataset.Name != "ckpt.2" {
		t.Fatalf("back %+v %v", back, err)
	}
	os.WriteFile(p, []byte("{garbage"), 0o600)
	if _, err := ReadIndex(p); err == nil {
		t.Fatal("damaged index read without error")
	}
}

func TestVerifyDetectsCorruption(t *testing.T) {
	rd := t.TempDir()
	os.MkdirAll(filepath.Join(rd, "ckpt"), 0o700)
	p := filepath.Join(rd, "ckpt", "a")
	os.WriteFile(p, []byte("hello world"), 0o600)
	f, err := Stat(p, true)
	if err != nil {
		t.Fatal(err)
	}
	f.Rel, f.Complete = "ckpt/a", true
	fm := Filemap{Rank: 0, Files: []File{f}}
	if err := WriteFilemap(rd, fm); err != nil {
		t.Fatal(err)
	}
	fm, err = ReadFilemap(rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(rd, fm); err != nil {
		t.Fatalf("intact file: %v", err)
	}
	os.WriteFile(p, []byte("hellO world"), 0o600) // same size, other content
	err = Verify(rd, fm)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corruption not detected: %v", err)
	}
	os.WriteFile(p, []byte("short"), 0o600)
	if err := Verify(rd, fm); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("size change not detected: %v", err)
	}
	os.Remove(p)
	if err := Verify(rd, fm); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file not detected: %v", err)
	}
}

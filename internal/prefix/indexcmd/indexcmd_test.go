package indexcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// dataset writes dataset id with `ranks` ranks of one file each into dir,
// as a flush would: files, rank2file, summary; index entry if indexed.
func dataset(t *testing.T, dir string, id int64, ranks int, indexed bool) {
	t.Helper()
	name := fmt.Sprintf("ckpt.%d", id)
	s := &prefix.Summary{Dataset: prefix.Dataset{ID: id, Name: name, Checkpoint: true, CkptID: id, Complete: true},
		Complete: true, Ranks: ranks, RanksPerPart: 2}
	for p := 0; p < s.Parts(); p++ {
		part := &prefix.Rank2FilePart{First: 2 * p}
		for r := 2 * p; r < min(2*p+2, ranks); r++ {
			rel := fmt.Sprintf("%s/rank_%d", name, r)
			os.MkdirAll(filepath.Join(dir, name), 0o700)
			os.WriteFile(filepath.Join(dir, rel), []byte(rel), 0o600)
			part.Ranks = append(part.Ranks, []prefix.File{{Path: rel, Size: int64(len(rel))}})
		}
		if err := prefix.WriteRank2FilePart(dir, id, p, part); err != nil {
			t.Fatal(err)
		}
	}
	if err := prefix.WriteSummary(dir, s); err != nil {
		t.Fatal(err)
	}
	if indexed {
		if _, err := prefix.AddDataset(context.Background(), dir, name, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t *testing.T, o Options) (string, error) {
	t.Helper()
	var out bytes.Buffer
	o.Env = func(string) (string, bool) { return "", false }
	err := Run(context.Background(), o, &out)
	return out.String(), err
}

func TestListCurrentDrop(t *testing.T) {
	dir := t.TempDir()
	for id := int64(1); id <= 4; id++ {
		dataset(t, dir, id, 3, true)
	}
	if _, err := run(t, Options{Prefix: dir, Action: Current, Name: "ckpt.2"}); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, Options{Prefix: dir})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "DSET") || !strings.HasPrefix(lines[1], "4 ") || !strings.Contains(lines[3], "*") {
		t.Fatalf("list:\n%s", out)
	}
	if _, err := run(t, Options{Prefix: dir, Action: DropAfter, Name: "ckpt.2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, Options{Prefix: dir, Action: Drop, Name: "ckpt.1"}); err != nil {
		t.Fatal(err)
	}
	out, _ = run(t, Options{Prefix: dir, JSON: true})
	var lo ListOutput
	if err := json.Unmarshal([]byte(out), &lo); err != nil {
		t.Fatal(err)
	}
	if lo.Current != "ckpt.2" || len(lo.Datasets) != 1 || !lo.Datasets[0].Current || !lo.Datasets[0].Valid {
		t.Fatalf("%+v", lo)
	}
	if _, err := run(t, Options{Prefix: dir, Action: Drop, Name: "ckpt.9"}); !errors.Is(err, prefix.ErrNoDataset) || !strings.Contains(err.Error(), dir) {
		t.Errorf("drop unknown: %v", err)
	}
	if _, err := run(t, Options{Prefix: dir, Action: Current}); !errors.Is(err, ErrUsage) {
		t.Errorf("no name: %v", err)
	}
}

func TestAddAndBuild(t *testing.T) {
	dir := t.TempDir()
	dataset(t, dir, 5, 5, false)
	out, err := run(t, Options{Prefix: dir, Action: Add, Name: "ckpt.5"})
	if err != nil || !strings.Contains(out, "added dataset 5") {
		t.Fatalf("%v: %s", err, out)
	}
	// Lose one file: build reports it and marks the entry incomplete.
	os.Remove(filepath.Join(dir, "ckpt.5/rank_3"))
	out, err = run(t, Options{Prefix: dir, Action: Build, ID: 5, JSON: true})
	if !errors.Is(err, prefix.ErrIncomplete) {
		t.Fatalf("build: %v", err)
	}
	var res struct {
		Complete bool
		Missing  []prefix.Missing
	}
	json.Unmarshal([]byte(out), &res)
	if res.Complete || len(res.Missing) != 1 || res.Missing[0].Rank != 3 {
		t.Fatalf("build report %s", out)
	}
	x, _ := prefix.ReadIndex(dir)
	if x.Get(5).Valid() {
		t.Fatal("incomplete dataset valid in the index")
	}
	// Restore it: build succeeds and the entry is valid.
	os.WriteFile(filepath.Join(dir, "ckpt.5/rank_3"), []byte("ckpt.5/rank_3"), 0o600)
	if _, err := run(t, Options{Prefix: dir, Action: Build, ID: 5}); err != nil {
		t.Fatal(err)
	}
	x, _ = prefix.ReadIndex(dir)
	if !x.Get(5).Valid() {
		t.Fatal("complete dataset not valid")
	}
	if _, err := run(t, Options{Prefix: dir, Action: Build, ID: 6}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("build without summary: %v", err)
	}
}

func TestCorruptIndexIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(prefix.MetaDir(dir), 0o700)
	os.WriteFile(prefix.IndexPath(dir), []byte(`{"format":"scr-index","version":1,"datasets":{`), 0o600)
	_, err := run(t, Options{Prefix: dir})
	if !errors.Is(err, prefix.ErrCorrupt) || !strings.Contains(err.Error(), prefix.IndexPath(dir)) {
		t.Fatalf("%v", err)
	}
}

// A name with a newline (a hand-edited or damaged index: the library
// refuses such names) cannot forge lines in the listing.
func TestListQuotesForgedNames(t *testing.T) {
	dir := t.TempDir()
	x := prefix.NewIndex()
	forged := "ckpt.1\n9  CKPT  YES  NO  -  0  -  *  forged"
	x.Datasets["1"] = &prefix.IndexEntry{Dataset: prefix.Dataset{ID: 1, Name: forged, Checkpoint: true}, Complete: true}
	if err := prefix.WriteIndex(dir, x); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, Options{Prefix: dir})
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], `"ckpt.1\n9`) {
		t.Fatalf("a name forged lines in the listing:\n%s", out)
	}
	if _, err := x.Put(prefix.Dataset{ID: 2, Name: "a\nb"}); err == nil {
		t.Fatal("the index took a name with a newline")
	}
}

// scr_index --build reads every file whose CRC32C rank2file records
// (SCR_CRC_ON_FLUSH): a flipped byte makes the dataset incomplete, with the
// file named, although its size is right. A file named "..data/f" is a
// file inside the prefix like any other.
func TestBuildChecksCRC32C(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{"ckpt.5/rank_0": []byte("rank zero data"), "..data/f": []byte("dot-dot name")}
	var list []prefix.File
	for rel, b := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o700)
		os.WriteFile(filepath.Join(dir, rel), b, 0o600)
		list = append(list, prefix.File{Path: rel, Size: int64(len(b)), CRC32C: prefix.FormatCRC(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))})
	}
	if err := prefix.WriteRank2FilePart(dir, 5, 0, &prefix.Rank2FilePart{Ranks: [][]prefix.File{list}}); err != nil {
		t.Fatal(err)
	}
	prefix.WriteSummary(dir, &prefix.Summary{Dataset: prefix.Dataset{ID: 5, Name: "ckpt.5", Checkpoint: true}, Complete: true, Ranks: 1, RanksPerPart: 1})
	if _, err := run(t, Options{Prefix: dir, Action: Build, ID: 5}); err != nil {
		t.Fatalf("intact dataset: %v", err)
	}
	b := files["ckpt.5/rank_0"]
	b[3] ^= 0x40
	os.WriteFile(filepath.Join(dir, "ckpt.5/rank_0"), b, 0o600)
	_, err := run(t, Options{Prefix: dir, Action: Build, ID: 5})
	if !errors.Is(err, prefix.ErrIncomplete) || !strings.Contains(err.Error(), "ckpt.5/rank_0") || !strings.Contains(err.Error(), "crc32c") {
		t.Fatalf("a damaged file passed --build: %v", err)
	}
	x, _ := prefix.ReadIndex(dir)
	if e := x.Get(5); e == nil || e.Valid() {
		t.Fatalf("the damaged dataset is valid in the index: %+v", e)
	}
}

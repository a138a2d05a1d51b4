package prefix

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkUpdateIndex1000: one locked read-modify-write of an index that
// holds 1,000 datasets (what rank 0 does per flush).
func BenchmarkUpdateIndex1000(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	x := NewIndex()
	for i := int64(1); i <= 1000; i++ {
		x.Put(Dataset{ID: i, Name: fmt.Sprintf("ckpt.%d", i), Checkpoint: true, CkptID: i})
		x.MarkFlushed(i, true, time.Now())
	}
	if err := WriteIndex(dir, x); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := UpdateIndex(ctx, dir, func(x *Index) error { return x.MarkFetched(500, time.Now()) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRank2File10k: write and read back the map of 10,000 ranks with
// 4 files each in 256-rank parts (serially here; ranks write in parallel).
func BenchmarkRank2File10k(b *testing.B) {
	dir := b.TempDir()
	const ranks, per = 10000, DefaultRanksPerPart
	s := &Summary{Dataset: Dataset{ID: 1, Name: "c1"}, Ranks: ranks, RanksPerPart: per}
	parts := make([]*Rank2FilePart, s.Parts())
	for p := range parts {
		parts[p] = &Rank2FilePart{First: p * per}
		for r := p * per; r < min((p+1)*per, ranks); r++ {
			var fs []File
			for f := 0; f < 4; f++ {
				fs = append(fs, File{Path: fmt.Sprintf("ckpt.1/rank_%d.%d", r, f), Size: 1 << 30})
			}
			parts[p].Ranks = append(parts[p].Ranks, fs)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for p, part := range parts {
			if err := WriteRank2FilePart(dir, 1, p, part); err != nil {
				b.Fatal(err)
			}
		}
		WriteSummary(dir, s)
		for p := range parts {
			if _, err := ReadRank2FilePart(dir, s, p); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkCheckDataset10k: scr_index --build's check of a dataset of
// 10,000 ranks with one file each (stat of every file, 16 at a time).
func BenchmarkCheckDataset10k(b *testing.B) {
	dir := b.TempDir()
	const ranks = 10000
	s := &Summary{Dataset: Dataset{ID: 1, Name: "c1"}, Ranks: ranks, RanksPerPart: DefaultRanksPerPart}
	for p := 0; p < s.Parts(); p++ {
		part := &Rank2FilePart{First: p * DefaultRanksPerPart}
		for r := part.First; r < min(part.First+DefaultRanksPerPart, ranks); r++ {
			rel := fmt.Sprintf("c1/r%d", r)
			part.Ranks = append(part.Ranks, []File{{Path: rel, Size: 0}})
		}
		WriteRank2FilePart(dir, 1, p, part)
	}
	WriteSummary(dir, s)
	os.MkdirAll(filepath.Join(dir, "c1"), 0o700)
	for r := 0; r < ranks; r++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("c1/r%d", r)), nil, 0o600)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		chk, err := CheckDataset(context.Background(), dir, 1)
		if err != nil || !chk.Complete() {
			b.Fatal(err)
		}
	}
}

package redundancy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadRed: any bytes in red.data give an error or a checked header,
// never a panic or an allocation beyond the file's size.
func FuzzReadRed(f *testing.F) {
	dir := f.TempDir()
	h := &header{Version: formatVersion, Scheme: "XOR", Failures: 1, Members: []int{0, 1}, Index: 1, Chunk: 3,
		Segments: 1, SegSize: 3, Self: desc{Rank: 1, Files: []fileRec{{Name: "a", Size: 5}}}, Lefts: []desc{{Rank: 0}}}
	w, err := createRed(dir, h)
	if err != nil {
		f.Fatal(err)
	}
	w.write(0, []byte("xyz"))
	if err := w.finish(); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, redName))
	f.Add(good)
	f.Add(good[:20])
	f.Add([]byte(magic + "\xff\xff\xff\x7f"))
	d := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(d, redName), b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := openRed(d, true)
		if err != nil {
			return
		}
		defer r.close()
		if r.h.Index < 0 || r.h.Index >= len(r.h.Members) {
			t.Fatalf("accepted index %d of %d", r.h.Index, len(r.h.Members))
		}
		for _, fr := range r.h.Self.Files {
			if checkName(fr.Name) != nil {
				t.Fatalf("accepted name %q", fr.Name)
			}
		}
	})
}

// TestRedFileDamage: every kind of damage to red.data is detected.
func TestRedFileDamage(t *testing.T) {
	dir := t.TempDir()
	h := &header{Version: formatVersion, Scheme: "RS", Failures: 2, Members: []int{4, 5, 6}, Index: 0, Chunk: 4,
		Segments: 2, SegSize: 4, Self: desc{Rank: 4, Files: []fileRec{{Name: "d/x", Size: 8}}}}
	w, err := createRed(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	w.write(0, []byte("abcd"))
	w.write(1, []byte("ef"))
	w.write(1, []byte("gh"))
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, redName)
	good, _ := os.ReadFile(p)
	r, err := openRed(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if err := r.readAt(1, b, 0); err != nil || string(b) != "efgh" {
		t.Fatalf("segment 1: %q %v", b, err)
	}
	r.close()
	hdrEnd := bytes.Index(good, []byte("}}")) + 2
	for name, bad := range map[string][]byte{
		"header byte":  flip(good, 20),
		"payload byte": flip(good, hdrEnd+6),
		"trailer byte": flip(good, len(good)-1),
		"truncated":    good[:len(good)-3],
		"appended":     append(bytes.Clone(good), 0),
		"empty":        nil,
		"magic":        flip(good, 0),
	} {
		os.WriteFile(p, bad, 0o600)
		if _, err := openRed(dir, true); err == nil {
			t.Errorf("%s: damage not detected", name)
		}
	}
	// A partial write never shows up as red.data.
	w, _ = createRed(dir, h)
	w.write(0, []byte("abcd"))
	if err := w.finish(); err == nil {
		t.Fatal("finish with a short segment succeeded")
	}
	os.Remove(p)
	w, _ = createRed(dir, h)
	w.abort()
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("aborted write left %s: %v", p, err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

// TestCorruptFileCountsAsLost: a byte flipped in a file with a recorded
// CRC32C (same size) makes its rank lost, and the rebuild restores it.
func TestCorruptFileCountsAsLost(t *testing.T) {
	w := newWorld(t, nodes(3, 1), 8)
	files := w.writeData(sizes(4000, 0, 123), 7)
	s := Scheme{Type: XOR, BufSize: 512}
	noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
	}))
	good := w.snapshot()
	if files[2][0].CRC32C == nil {
		t.Fatal("rank 2 should have CRCs")
	}
	w.erase(2, corrupt, files[2])
	w.checkRebuild(s, files, good, map[int]bool{2: true}, 1)
}

package redundancy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
)

// TestRebuildOffline: the ranks' files sit together in one tree (as in the
// prefix after a scavenge) with each rank's redundancy files in its own
// directory; one rank's files and redundancy files are gone. RebuildOffline
// brings them back byte for byte from the headers alone.
func TestRebuildOffline(t *testing.T) {
	for _, s := range []Scheme{{Type: XOR, BufSize: 100}, {Type: RS, Failures: 2, BufSize: 64}, {Type: Partner, BufSize: 50}} {
		t.Run(s.Type.String(), func(t *testing.T) {
			w := newWorld(t, nodes(5, 1), 8)
			files := make([][]FileInfo, 5)
			for r := range 5 {
				var names []string
				for i := range 3 {
					name := fmt.Sprintf("ckpt/rank_%d.%d", r, i)
					p := filepath.Join(w.dir(r), name)
					os.MkdirAll(filepath.Dir(p), 0o700)
					b := make([]byte, 100*r+17*i)
					for j := range b {
						b[j] = byte(j*r + i)
					}
					if err := os.WriteFile(p, b, 0o644); err != nil {
						t.Fatal(err)
					}
					names = append(names, name)
				}
				var err error
				if files[r], err = StatFiles(w.dir(r), names, true); err != nil {
					t.Fatal(err)
				}
			}
			noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
				return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
			}))
			// "Scavenge": data into one shared tree, redundancy per rank.
			pre := t.TempDir()
			dirs := make([]Dirs, 5)
			for r := range 5 {
				dirs[r] = Dirs{Data: pre, Meta: filepath.Join(pre, ".scr", fmt.Sprintf("rank.%d", r))}
				os.MkdirAll(dirs[r].Meta, 0o700)
				for _, f := range files[r] {
					copyFile(t, filepath.Join(w.dir(r), f.Name), filepath.Join(pre, f.Name))
				}
				copyFile(t, filepath.Join(w.dir(r), DataFile), filepath.Join(dirs[r].Meta, redName))
				copyFile(t, filepath.Join(w.dir(r), StateFile), filepath.Join(dirs[r].Meta, stateName))
			}
			want := map[string][]byte{}
			filepath.Walk(pre, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					want[p], _ = os.ReadFile(p)
				}
				return err
			})
			// Rank 3's node was not scavenged.
			for _, f := range files[3] {
				os.Remove(filepath.Join(pre, f.Name))
			}
			os.RemoveAll(dirs[3].Meta)
			res, err := RebuildOffline(context.Background(), dirs, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !res[3].Rebuilt || res[3].Ranks != 1 || !sameFiles(res[3].Files, files[3]) {
				t.Fatalf("result %+v", res[3])
			}
			for p, b := range want {
				got, err := os.ReadFile(p)
				if err != nil || string(got) != string(b) {
					t.Fatalf("%s not rebuilt: %v", p, err)
				}
			}
			// Two neighbours lost: beyond XOR and PARTNER, within RS.
			for _, r := range []int{1, 2} {
				for _, f := range files[r] {
					os.Remove(filepath.Join(pre, f.Name))
				}
				os.RemoveAll(dirs[r].Meta)
			}
			_, err = RebuildOffline(context.Background(), dirs, 0)
			if s.Type == RS {
				if err != nil {
					t.Fatal(err)
				}
			} else if !errors.Is(err, ErrUnrecoverable) {
				t.Fatalf("two neighbours lost: %v", err)
			}
		})
	}
	_, err := RebuildOffline(context.Background(), []Dirs{{Data: t.TempDir(), Meta: t.TempDir()}}, 0)
	if !errors.Is(err, ErrUnrecoverable) {
		t.Fatalf("nothing there: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPrefixRebuilder: the prefix.Rebuilder finds the ranks from the
// scavenged headers and rebuilds a rank whose node was not scavenged.
func TestPrefixRebuilder(t *testing.T) {
	w := newWorld(t, nodes(4, 1), 8)
	files := make([][]FileInfo, 4)
	for r := range 4 {
		name := fmt.Sprintf("ckpt.1/rank_%d", r)
		p := filepath.Join(w.dir(r), name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(strings.Repeat(fmt.Sprint(r), 1000+r)), 0o644)
		var err error
		if files[r], err = StatFiles(w.dir(r), []string{name}, false); err != nil {
			t.Fatal(err)
		}
	}
	s := Scheme{Type: XOR}
	noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
	}))
	pre := t.TempDir()
	for r := range 4 {
		if r == 2 {
			continue // its node died before the scavenge
		}
		copyFile(t, filepath.Join(w.dir(r), files[r][0].Name), filepath.Join(pre, files[r][0].Name))
		copyFile(t, filepath.Join(w.dir(r), DataFile), filepath.Join(PrefixRedDir(pre, 7, r), redName))
		copyFile(t, filepath.Join(w.dir(r), StateFile), filepath.Join(PrefixRedDir(pre, 7, r), stateName))
	}
	err := PrefixRebuilder{}.RebuildDataset(context.Background(), pre, 7, []prefix.Missing{{Rank: 2, Path: files[2][0].Name, Reason: "missing"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(pre, files[2][0].Name))
	if err != nil || string(b) != strings.Repeat("2", 1002) {
		t.Fatalf("rank 2 not rebuilt: %v", err)
	}
	if err := (PrefixRebuilder{}).RebuildDataset(context.Background(), t.TempDir(), 7, nil); err == nil {
		t.Fatal("no redundancy data: no error")
	}
}

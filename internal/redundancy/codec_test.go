package redundancy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
)

// world is a simulated job: ranks as goroutines over comm.NewLocal, one
// directory per node, each rank's dataset files in <root>/<host>/rank.<r>.
type world struct {
	t     testing.TB
	root  string
	hosts []string
	sets  []Set
	comms func(ctx context.Context) []comm.Comm // nil: comm.NewLocal
}

func newWorld(t testing.TB, hosts []string, setSize int) *world {
	sets, err := Sets(hosts, setSize)
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, root: tmpfsDir(t), hosts: hosts, sets: sets}
}

// tmpfsDir is a fresh directory in /dev/shm (node-local memory, like the
// cache), else in t.TempDir(); removed when the test ends.
func tmpfsDir(t testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "scr-red-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (w *world) dir(r int) string {
	return filepath.Join(w.root, w.hosts[r], fmt.Sprintf("rank.%d", r))
}

// run runs f on every rank (with its joined Group) and returns the errors.
func (w *world) run(f func(ctx context.Context, g *Group) error) []error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var comms []comm.Comm
	if w.comms != nil {
		comms = w.comms(ctx)
	} else {
		comms = comm.NewLocal(w.hosts)
	}
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() {
			g, err := Join(ctx, c, w.sets)
			if err != nil {
				errs[r] = err
				return
			}
			errs[r] = f(ctx, g)
		})
	}
	wg.Wait()
	// Close once every rank is done: comm's TCP transport can report a
	// peer's Close to a rank still finishing the last collective.
	for _, c := range comms {
		c.Close()
	}
	return errs
}

func noErrs(t testing.TB, what string, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("%s: rank %d: %v", what, r, err)
		}
	}
}

// layout is what each rank writes: file sizes per rank.
type layout func(r int, rng *rand.Rand) []int

// writeData creates each rank's files with random content and returns
// their descriptions (with CRC32C on every other rank).
func (w *world) writeData(lay layout, seed uint64) [][]FileInfo {
	rng := rand.New(rand.NewPCG(seed, 99))
	out := make([][]FileInfo, len(w.hosts))
	for r := range w.hosts {
		var names []string
		for i, size := range lay(r, rng) {
			name := fmt.Sprintf("ckpt/rank_%d.%d", r, i)
			if i%3 == 2 {
				name = fmt.Sprintf("sub/dir/f%d", i)
			}
			p := filepath.Join(w.dir(r), filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				w.t.Fatal(err)
			}
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if err := os.WriteFile(p, b, 0o640); err != nil {
				w.t.Fatal(err)
			}
			mt := time.Unix(1700000000+int64(r*100+i), int64(i)*1000)
			if err := os.Chtimes(p, mt, mt); err != nil {
				w.t.Fatal(err)
			}
			names = append(names, name)
		}
		fi, err := StatFiles(w.dir(r), names, r%2 == 0)
		if err != nil {
			w.t.Fatal(err)
		}
		out[r] = fi
	}
	return out
}

type fileState struct {
	data  []byte
	mode  fs.FileMode
	mtime time.Time
}

// snapshot reads every file under the root.
func (w *world) snapshot() map[string]fileState {
	m := map[string]fileState{}
	err := filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(w.root, p)
		m[rel] = fileState{data: b, mode: st.Mode(), mtime: st.ModTime()}
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

// restore makes the tree exactly the snapshot, rewriting only what differs.
func (w *world) restore(m map[string]fileState) {
	now := w.snapshot()
	for rel := range now {
		if _, ok := m[rel]; !ok {
			if err := os.Remove(filepath.Join(w.root, rel)); err != nil {
				w.t.Fatal(err)
			}
		}
	}
	for rel, f := range m {
		if g, ok := now[rel]; ok && bytes.Equal(g.data, f.data) && g.mode == f.mode && g.mtime.Equal(f.mtime) {
			continue
		}
		p := filepath.Join(w.root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			w.t.Fatal(err)
		}
		os.Remove(p)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			w.t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			w.t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			w.t.Fatal(err)
		}
	}
}

func diffSnap(t testing.TB, what string, got, want map[string]fileState) {
	t.Helper()
	for rel, f := range want {
		g, ok := got[rel]
		switch {
		case !ok:
			t.Fatalf("%s: %s missing", what, rel)
		case !bytes.Equal(g.data, f.data):
			t.Fatalf("%s: %s differs (%d bytes, want %d)", what, rel, len(g.data), len(f.data))
		case g.mode != f.mode:
			t.Fatalf("%s: %s mode %v, want %v", what, rel, g.mode, f.mode)
		case !g.mtime.Equal(f.mtime) && filepath.Base(rel) != filepath.Base(StateFile) && filepath.Base(rel) != filepath.Base(DataFile):
			t.Fatalf("%s: %s mtime %v, want %v", what, rel, g.mtime, f.mtime)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Fatalf("%s: unexpected file %s", what, rel)
		}
	}
}

// erasure kinds
type eraseKind int

const (
	eraseNode   eraseKind = iota // the node's directory is empty (a spare)
	eraseFiles                   // one data file deleted
	eraseRed                     // the redundancy file deleted
	corrupt                      // one byte of a CRC-protected file flipped (or the red file)
	truncate                     // a data file cut short
	interrupted                  // the state marker says encoding
)

func (w *world) erase(r int, kind eraseKind, files []FileInfo) {
	d := w.dir(r)
	switch kind {
	case eraseNode:
		if err := os.RemoveAll(filepath.Join(w.root, w.hosts[r])); err != nil {
			w.t.Fatal(err)
		}
	case eraseFiles:
		if len(files) == 0 {
			w.erase(r, eraseRed, files)
			return
		}
		os.Remove(filepath.Join(d, filepath.FromSlash(files[len(files)-1].Name)))
	case eraseRed:
		os.Remove(filepath.Join(d, filepath.FromSlash(DataFile)))
	case corrupt:
		// a data file with a recorded CRC, else the header of red.data
		// (a damaged payload is found when it is used: TestDamagedParity)
		p, at := filepath.Join(d, filepath.FromSlash(DataFile)), 20
		for _, f := range files {
			if f.CRC32C != nil && f.Size > 0 {
				p, at = filepath.Join(d, filepath.FromSlash(f.Name)), int(f.Size/2)
				break
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			w.t.Fatal(err)
		}
		b[at] ^= 0x40
		if err := os.WriteFile(p, b, 0o600); err != nil {
			w.t.Fatal(err)
		}
	case truncate:
		for _, f := range files {
			if f.Size > 0 {
				os.Truncate(filepath.Join(d, filepath.FromSlash(f.Name)), f.Size-1)
				return
			}
		}
		w.erase(r, eraseRed, files)
	case interrupted:
		if err := writeState(filepath.Join(d, metaDir), stateEncoding); err != nil {
			w.t.Fatal(err)
		}
	}
}

// subsets returns every subset of 0..n-1 with 1..max elements.
func subsets(n, maxSize int) [][]int {
	var out [][]int
	for mask := 1; mask < 1<<n; mask++ {
		var s []int
		for i := range n {
			if mask&(1<<i) != 0 {
				s = append(s, i)
			}
		}
		if len(s) <= maxSize {
			out = append(out, s)
		}
	}
	return out
}

type codecCase struct {
	name    string
	scheme  Scheme
	nodes   int
	perNode int
	setSize int
	lay     layout
}

func sizes(v ...int) layout { return func(int, *rand.Rand) []int { return v } }

func randomSizes(maxFiles, maxSize int) layout {
	return func(r int, rng *rand.Rand) []int {
		n := rng.IntN(maxFiles + 1)
		out := make([]int, n)
		for i := range out {
			if rng.IntN(4) > 0 {
				out[i] = rng.IntN(maxSize)
			}
		}
		return out
	}
}

func codecCases() []codecCase {
	uneven := func(r int, rng *rand.Rand) []int { return []int{1000 * (r + 1), r * 37, 0} }
	return []codecCase{
		{"xor-4-uneven", Scheme{Type: XOR, BufSize: 512}, 4, 1, 8, uneven},
		{"xor-2", Scheme{Type: XOR, BufSize: 100}, 2, 1, 8, randomSizes(3, 3000)},
		{"xor-5-many-files", Scheme{Type: XOR, BufSize: 4096}, 5, 1, 8, randomSizes(20, 2000)},
		{"xor-2-per-node", Scheme{Type: XOR, BufSize: 333}, 3, 2, 8, uneven},
		{"xor-all-empty", Scheme{Type: XOR}, 3, 1, 8, sizes(0, 0)},
		{"xor-no-files", Scheme{Type: XOR}, 3, 1, 8, sizes()},
		{"rs-4-2", Scheme{Type: RS, Failures: 2, BufSize: 700}, 4, 1, 8, uneven},
		{"rs-6-3", Scheme{Type: RS, Failures: 3, BufSize: 1 << 12}, 6, 1, 8, randomSizes(5, 5000)},
		{"rs-5-1", Scheme{Type: RS, Failures: 1, BufSize: 256}, 5, 1, 8, uneven},
		{"rs-3-2", Scheme{Type: RS, Failures: 2, BufSize: 64}, 3, 1, 8, randomSizes(3, 500)},
		{"partner-4", Scheme{Type: Partner, BufSize: 300}, 4, 1, 8, uneven},
		{"partner-2", Scheme{Type: Partner, BufSize: 300}, 2, 1, 8, randomSizes(4, 2000)},
		{"partner-5-sets-of-2", Scheme{Type: Partner, BufSize: 1000}, 5, 1, 2, randomSizes(4, 2000)},
		{"single-3", Scheme{Type: Single}, 3, 1, 8, uneven},
		{"xor-6-two-sets", Scheme{Type: XOR, BufSize: 999}, 6, 1, 3, uneven},
	}
}

// TestCodecs: encode, then for every pattern of lost members (whole nodes
// replaced by empty spares, and other damage), rebuild and compare every
// byte; patterns beyond the tolerance give the typed error and change
// nothing.
func TestCodecs(t *testing.T) {
	for ci, cc := range codecCases() {
		t.Run(cc.name, func(t *testing.T) {
			w := newWorld(t, nodes(cc.nodes, cc.perNode), cc.setSize)
			files := w.writeData(cc.lay, uint64(ci))
			noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
				return Encode(ctx, g, cc.scheme, files[g.World.Rank()], w.dir(g.World.Rank()))
			}))
			for r := range w.hosts {
				if s := State(w.dir(r)); s != stateEncoded {
					t.Fatalf("rank %d state %q after encode", r, s)
				}
			}
			good := w.snapshot()

			// Nothing lost: rebuild is a no-op that returns the file lists.
			w.checkRebuild(cc.scheme, files, good, nil, 0)

			kinds := []eraseKind{eraseNode, eraseFiles, eraseRed, corrupt, truncate, interrupted}
			for pi, lostNodes := range subsets(cc.nodes, min(cc.nodes, 3)) {
				kind := kinds[pi%len(kinds)]
				for _, n := range lostNodes {
					for r, h := range w.hosts {
						if h == fmt.Sprintf("n%d", n) {
							w.erase(r, kind, files[r])
						}
					}
				}
				lostRanks := map[int]bool{}
				for r, h := range w.hosts {
					for _, n := range lostNodes {
						if h == fmt.Sprintf("n%d", n) {
							lostRanks[r] = true
						}
					}
				}
				ok := true
				for _, s := range w.sets {
					var lost []int
					for i, r := range s.Ranks {
						if lostRanks[r] {
							lost = append(lost, i)
						}
					}
					ok = ok && tolerable(cc.scheme, len(s.Ranks), lost)
				}
				what := fmt.Sprintf("lost nodes %v by %d", lostNodes, kind)
				if ok {
					w.checkRebuild(cc.scheme, files, good, lostRanks, len(lostRanks))
				} else {
					w.checkUnrecoverable(cc.scheme, what, lostRanks)
				}
				w.restore(good)
			}
		})
	}
}

func (w *world) checkRebuild(s Scheme, files [][]FileInfo, good map[string]fileState, lost map[int]bool, nLost int) {
	t := w.t
	t.Helper()
	res := make([]Result, len(w.hosts))
	noErrs(t, fmt.Sprintf("rebuild of %v", lost), w.run(func(ctx context.Context, g *Group) error {
		r, err := Rebuild(ctx, g, s, w.dir(g.World.Rank()))
		res[g.World.Rank()] = r
		return err
	}))
	for r, rr := range res {
		if rr.Ranks != nLost || rr.Rebuilt != lost[r] {
			t.Fatalf("rank %d: result %+v, want %d lost, rebuilt=%v", r, rr, nLost, lost[r])
		}
		if !sameFiles(rr.Files, files[r]) {
			t.Fatalf("rank %d: files %+v, want %+v", r, rr.Files, files[r])
		}
	}
	diffSnap(t, fmt.Sprintf("after rebuild of %v", lost), w.snapshot(), good)
}

func sameFiles(a, b []FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Size != y.Size || x.Mode != y.Mode || !x.ModTime.Equal(y.ModTime) || !reflect.DeepEqual(x.CRC32C, y.CRC32C) {
			return false
		}
	}
	return true
}

func (w *world) checkUnrecoverable(s Scheme, what string, lost map[int]bool) {
	t := w.t
	t.Helper()
	before := w.snapshot()
	errs := w.run(func(ctx context.Context, g *Group) error {
		_, err := Rebuild(ctx, g, s, w.dir(g.World.Rank()))
		return err
	})
	var first string
	for r, err := range errs {
		var ue *UnrecoverableError
		if !errors.As(err, &ue) || !errors.Is(err, ErrUnrecoverable) {
			t.Fatalf("%s: rank %d: got %v, want *UnrecoverableError", what, r, err)
		}
		if r == 0 {
			first = err.Error()
			t.Logf("%s: %v", what, err)
			for _, sl := range ue.Sets {
				for _, lr := range sl.Lost {
					if !lost[lr] {
						t.Fatalf("%s: error names rank %d which was not lost: %v", what, lr, err)
					}
				}
			}
		} else if err.Error() != first {
			t.Fatalf("%s: ranks disagree:\n%v\n%v", what, first, err)
		}
	}
	diffSnap(t, what+": unrecoverable must change nothing", w.snapshot(), before)
}

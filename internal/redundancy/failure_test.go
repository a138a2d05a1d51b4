package redundancy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
)

// TestEncodeLocalFailureAgreed: one rank cannot read its files. Every rank
// returns an *EncodeError naming it (nobody waits forever), and no rank's
// state says encoded, so a later Rebuild refuses the dataset.
func TestEncodeLocalFailureAgreed(t *testing.T) {
	w := newWorld(t, nodes(4, 1), 8)
	files := w.writeData(sizes(5000, 10), 1)
	files[2] = append(files[2], FileInfo{Name: "ckpt/never-written", Size: 100})
	errs := w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, Scheme{Type: XOR, BufSize: 1000}, files[g.World.Rank()], w.dir(g.World.Rank()))
	})
	for r, err := range errs {
		var ee *EncodeError
		if !errors.As(err, &ee) || ee.Failed != 1 || ee.First != 2 {
			t.Fatalf("rank %d: got %v, want *EncodeError for rank 2", r, err)
		}
		if (ee.Err != nil) != (r == 2) {
			t.Fatalf("rank %d: own cause %v", r, ee.Err)
		}
		if s := State(w.dir(r)); s != stateEncoding {
			t.Fatalf("rank %d: state %q after a failed encode", r, s)
		}
	}
	if !strings.Contains(errs[2].Error(), "never-written") {
		t.Fatalf("rank 2's error does not name the file: %v", errs[2])
	}
	w.checkUnrecoverable(Scheme{Type: XOR, BufSize: 1000}, "after failed encode", map[int]bool{0: true, 1: true, 2: true, 3: true})
}

// TestPeerLostDuringEncodeAndRebuild: a rank dies; the others return an
// error wrapping comm.ErrPeerLost instead of hanging.
func TestPeerLostDuringEncodeAndRebuild(t *testing.T) {
	for _, op := range []string{"encode", "rebuild"} {
		t.Run(op, func(t *testing.T) {
			w := newWorld(t, nodes(4, 1), 8)
			files := w.writeData(sizes(300000, 7), 2)
			s := Scheme{Type: RS, Failures: 2, BufSize: 4096}
			if op == "rebuild" {
				noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
					return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
				}))
				w.erase(1, eraseNode, nil)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lg := comm.NewLocalGroup(w.hosts)
			comms := lg.Comms()
			errs := make([]error, len(comms))
			var wg sync.WaitGroup
			joined := make(chan struct{}, len(comms))
			for r, c := range comms {
				wg.Go(func() {
					g, err := Join(ctx, c, w.sets)
					joined <- struct{}{}
					if err != nil {
						errs[r] = err
						return
					}
					if r == 3 {
						return // dies below
					}
					if op == "encode" {
						errs[r] = Encode(ctx, g, s, files[r], w.dir(r))
					} else {
						_, errs[r] = Rebuild(ctx, g, s, w.dir(r))
					}
				})
			}
			for range comms {
				<-joined
			}
			lg.Kill(3, "test: node powered off")
			wg.Wait()
			if ctx.Err() != nil {
				t.Fatal("ranks waited for the dead rank until the deadline")
			}
			for r := range 3 {
				if !errors.Is(errs[r], comm.ErrPeerLost) {
					t.Fatalf("rank %d: got %v, want an error wrapping ErrPeerLost", r, errs[r])
				}
				if op == "encode" && State(w.dir(r)) == stateEncoded {
					t.Fatalf("rank %d: state encoded although the encode failed", r)
				}
			}
		})
	}
}

// TestSchemeRefusesSmallSets: XOR/PARTNER need 2 members, RS more than k.
func TestSchemeRefusesSmallSets(t *testing.T) {
	for _, c := range []struct {
		s  Scheme
		n  int
		ok bool
	}{
		{Scheme{Type: Single}, 1, true},
		{Scheme{Type: XOR}, 1, false},
		{Scheme{Type: XOR}, 2, true},
		{Scheme{Type: Partner}, 1, false},
		{Scheme{Type: RS}, 2, false},
		{Scheme{Type: RS}, 3, true},
		{Scheme{Type: RS, Failures: 3}, 3, false},
		{Scheme{Type: RS, Failures: -1}, 3, false},
		{Scheme{Type: RS, Failures: 1}, 256, false},
		{Scheme{Type: Type(9)}, 4, false},
	} {
		if err := c.s.Check(c.n); (err == nil) != c.ok {
			t.Errorf("%+v on %d members: %v", c.s, c.n, err)
		}
	}
	// One node: every set has one member; XOR refuses on every rank, at once.
	w := newWorld(t, nodes(1, 3), 8)
	files := w.writeData(sizes(10), 3)
	for r, err := range w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, Scheme{Type: XOR}, files[g.World.Rank()], w.dir(g.World.Rank()))
	}) {
		if err == nil || !strings.Contains(err.Error(), "at least 2 members") {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for _, s := range []string{"xor", "Partner", "SINGLE", "rs"} {
		if _, err := ParseType(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ParseType("raid6"); err == nil {
		t.Fatal("raid6 accepted")
	}
}

// TestLayoutChangedIsNotTrusted: data encoded with one set layout is not
// decoded with another (the ranks moved between sets): every rank gets the
// typed error instead of garbage.
func TestLayoutChangedIsNotTrusted(t *testing.T) {
	w := newWorld(t, nodes(4, 1), 8)
	files := w.writeData(sizes(1000, 3), 4)
	s := Scheme{Type: XOR, BufSize: 128}
	noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
	}))
	w.sets = []Set{{ID: 0, Ranks: []int{0, 2}}, {ID: 1, Ranks: []int{1, 3}}}
	w.checkUnrecoverable(s, "new layout", map[int]bool{0: true, 1: true, 2: true, 3: true})
}

// TestRSSparesForKNodes: RS with k=3 survives three whole nodes replaced by
// empty spares in a set of 7, with large pieces of random sizes.
func TestRSSparesForKNodes(t *testing.T) {
	w := newWorld(t, nodes(7, 1), 8)
	files := w.writeData(func(r int, rng *rand.Rand) []int { return []int{rng.IntN(200000), rng.IntN(3), 65536} }, 5)
	s := Scheme{Type: RS, Failures: 3, BufSize: 1 << 14}
	noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
	}))
	good := w.snapshot()
	for _, r := range []int{0, 3, 6} {
		w.erase(r, eraseNode, nil)
	}
	w.checkRebuild(s, files, good, map[int]bool{0: true, 3: true, 6: true}, 3)
}

// TestDamagedParity: a damaged payload is found when a rebuild uses it.
// With nothing lost the dataset stays usable (its files are intact); when a
// rebuild reads the damaged parity, every rank gets an error instead of a
// garbage file, and the damaged rank is marked untrusted so the next
// attempt reports the set unrecoverable.
func TestDamagedParity(t *testing.T) {
	w := newWorld(t, nodes(4, 1), 8)
	files := w.writeData(sizes(3000, 10), 8)
	s := Scheme{Type: XOR, BufSize: 256}
	noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
	}))
	p := filepath.Join(w.dir(1), DataFile)
	b, _ := os.ReadFile(p)
	b[len(b)-10] ^= 1 // inside the payload
	os.WriteFile(p, b, 0o600)
	damaged := w.snapshot()
	w.checkRebuild(s, files, damaged, nil, 0)

	w.erase(0, eraseNode, nil)
	errs := w.run(func(ctx context.Context, g *Group) error {
		_, err := Rebuild(ctx, g, s, w.dir(g.World.Rank()))
		return err
	})
	for r, err := range errs {
		var ee *EncodeError
		if !errors.As(err, &ee) || ee.First != 1 {
			t.Fatalf("rank %d: %v, want an *EncodeError naming rank 1", r, err)
		}
	}
	if State(w.dir(1)) != stateDamaged || State(w.dir(0)) == stateEncoded {
		t.Fatalf("states after the failed rebuild: rank 0 %q, rank 1 %q", State(w.dir(0)), State(w.dir(1)))
	}
	w.checkUnrecoverable(s, "after damaged parity", map[int]bool{0: true, 1: true})
}

// TestOneSmallSetRefusedEverywhere: uneven ranks per node leave one set of
// a single member; XOR is refused on every rank (not only in that set, so
// nobody waits for ranks that gave up), and a bad file name on one rank is
// that rank's agreed failure.
func TestOneSmallSetRefusedEverywhere(t *testing.T) {
	w := newWorld(t, []string{"a", "a", "b", "c", "c", "c"}, 8)
	files := w.writeData(sizes(100), 9)
	for r, err := range w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, Scheme{Type: XOR}, files[g.World.Rank()], w.dir(g.World.Rank()))
	}) {
		if err == nil || !strings.Contains(err.Error(), "set 2 of ranks [5]") {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	w = newWorld(t, nodes(3, 1), 8)
	files = w.writeData(sizes(100), 9)
	files[1] = append(files[1], FileInfo{Name: "../escape", Size: 1})
	for r, err := range w.run(func(ctx context.Context, g *Group) error {
		return Encode(ctx, g, Scheme{Type: XOR}, files[g.World.Rank()], w.dir(g.World.Rank()))
	}) {
		var ee *EncodeError
		if !errors.As(err, &ee) || ee.First != 1 {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// TestMappedFileTruncated: a file truncated while it is mapped gives an
// error, not a crash (SIGBUS).
func TestMappedFileTruncated(t *testing.T) {
	defer func(old bool) { mapReads = old }(mapReads)
	for _, mapped := range []bool{true, false} {
		mapReads = mapped
		t.Run(fmt.Sprintf("mapped=%v", mapped), testTruncatedRead)
	}
}

func testTruncatedRead(t *testing.T) {
	d := tmpfsDir(t)
	p := filepath.Join(d, "f")
	if err := os.WriteFile(p, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	lf, err := openLogical(d, []FileInfo{{Name: "f", Size: 64 << 10}}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.close()
	if err := os.Truncate(p, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	err = lf.readAt(buf, 0)
	if lf.maps[0] != nil && (err == nil || !strings.Contains(err.Error(), "memory fault")) {
		t.Fatalf("read of a truncated mapped file: %v", err)
	}
	if lf.maps[0] == nil && err == nil {
		t.Fatal("read of a truncated file succeeded")
	}
}

// TestAbstain: a rank that cannot stat its files abstains; every rank gets
// an *EncodeError naming it and no state says encoded.
func TestAbstain(t *testing.T) {
	w := newWorld(t, nodes(3, 1), 8)
	files := w.writeData(sizes(500, 20), 10)
	cause := errors.New("stat ckpt/x: no such file")
	errs := w.run(func(ctx context.Context, g *Group) error {
		r := g.World.Rank()
		if r == 1 {
			return Abstain(ctx, g, Scheme{Type: XOR}, w.dir(r), cause)
		}
		return Encode(ctx, g, Scheme{Type: XOR}, files[r], w.dir(r))
	})
	for r, err := range errs {
		var ee *EncodeError
		if !errors.As(err, &ee) || ee.First != 1 || ee.Failed != 1 {
			t.Fatalf("rank %d: %v", r, err)
		}
		if r == 1 && !errors.Is(err, cause) {
			t.Fatalf("rank 1's error does not wrap the cause: %v", err)
		}
		if State(w.dir(r)) == stateEncoded {
			t.Fatalf("rank %d: encoded after an abstention", r)
		}
	}
}

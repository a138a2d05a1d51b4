package redundancy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRandomSweep: random set sizes, schemes, piece sizes, file layouts and
// loss patterns (whole nodes as empty spares, or damage). Tolerable
// patterns are rebuilt byte for byte; the others give the typed error and
// change nothing.
func TestRandomSweep(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 11))
	runs := 40
	if testing.Short() {
		runs = 8
	}
	for i := range runs {
		n := 2 + rng.IntN(7) // members
		perNode := 1 + rng.IntN(2)
		var s Scheme
		switch rng.IntN(4) {
		case 0:
			s = Scheme{Type: XOR}
		case 1:
			s = Scheme{Type: Partner}
		case 2:
			if n < 3 {
				s = Scheme{Type: XOR}
			} else {
				s = Scheme{Type: RS, Failures: 1 + rng.IntN(n-1)}
			}
		default:
			s = Scheme{Type: Single}
		}
		s.BufSize = 1 + rng.IntN(5000)
		setSize := n
		if rng.IntN(3) == 0 {
			setSize = max(2, n/2)
			if s.Type == RS {
				setSize = max(setSize, s.k()+1)
			}
		}
		name := fmt.Sprintf("%d-%v-k%d-n%dx%d-set%d-buf%d", i, s.Type, s.k(), n, perNode, setSize, s.BufSize)
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, nodes(n, perNode), setSize)
			for _, set := range w.sets {
				if s.Check(len(set.Ranks)) != nil {
					t.Skipf("set %v too small for %v", set.Ranks, s.Type)
				}
			}
			files := w.writeData(randomSizes(1+rng.IntN(6), 1+rng.IntN(20000)), uint64(i))
			noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
				return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
			}))
			good := w.snapshot()
			for range 4 {
				lostRanks := map[int]bool{}
				for node := range n {
					if rng.IntN(n) < 2 {
						kind := eraseKind(rng.IntN(6))
						for r, h := range w.hosts {
							if h == fmt.Sprintf("n%d", node) {
								w.erase(r, kind, files[r])
								lostRanks[r] = true
							}
						}
					}
				}
				ok := true
				for _, set := range w.sets {
					var lost []int
					for j, r := range set.Ranks {
						if lostRanks[r] {
							lost = append(lost, j)
						}
					}
					ok = ok && tolerable(s, len(set.Ranks), lost)
				}
				// Damage that leaves a rank intact (a file of size 0
				// "truncated", ...) cannot happen: erase always damages.
				if ok {
					w.checkRebuild(s, files, good, lostRanks, len(lostRanks))
				} else {
					w.checkUnrecoverable(s, fmt.Sprintf("lost %v", lostRanks), lostRanks)
				}
				w.restore(good)
			}
		})
	}
}

// TestManySets: 64 ranks on 16 nodes, sets of 4: losing one node costs
// every one of its 4 sets a member (each rebuilt concurrently); losing two
// nodes of the same sets is beyond XOR and within RS k=2.
func TestManySets(t *testing.T) {
	for _, s := range []Scheme{{Type: XOR, BufSize: 1000}, {Type: RS, Failures: 2, BufSize: 1000}} {
		t.Run(s.Type.String(), func(t *testing.T) {
			w := newWorld(t, nodes(16, 4), 4)
			if len(w.sets) != 16 {
				t.Fatalf("%d sets", len(w.sets))
			}
			files := w.writeData(randomSizes(3, 5000), 11)
			noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
				return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
			}))
			good := w.snapshot()
			lostNode := func(nodes ...int) map[int]bool {
				lost := map[int]bool{}
				for _, n := range nodes {
					for r := 4 * n; r < 4*n+4; r++ {
						w.erase(r, eraseNode, nil)
						lost[r] = true
					}
				}
				return lost
			}
			w.checkRebuild(s, files, good, lostNode(5), 4)
			w.restore(good)
			if lost := lostNode(5, 6); s.Type == XOR {
				w.checkUnrecoverable(s, "nodes 5 and 6", lost)
			} else {
				w.checkRebuild(s, files, good, lost, 8)
			}
		})
	}
}

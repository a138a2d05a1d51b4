package redundancy

import (
	"context"
	"fmt"
	"slices"

	"github.com/scr-go/scr/comm"
)

// Set is one redundancy set: world ranks, in increasing order, that protect
// each other's data. Member i's left neighbour is member i-1 (mod len), its
// right neighbour member i+1.
type Set struct {
	ID    int   // 0..len(sets)-1, in the order Sets returns them
	Ranks []int // world ranks of the members, increasing
}

// Index returns the position of world rank r in the set, or -1.
func (s Set) Index(r int) int { return slices.Index(s.Ranks, r) }

// Sets forms redundancy sets the way SCR does (reference section 4.2), from
// the failure group of every world rank (groups[r], e.g. its host name for
// the NODE group) and the minimum set size (SCR_SET_SIZE):
//
//  1. A rank's column is its position among the ranks of its failure group,
//     in world order: column k holds the k-th rank of every group, so a
//     column never holds two ranks of one group.
//  2. Each column of M ranks (in world order) is cut into g = M/size
//     consecutive sets (one set of all M when M < size); the first M mod g
//     sets get one member more than the others.
//  3. Sets are numbered column by column, in the order of their first rank.
//
// So no set ever holds two ranks of one failure group. A set has fewer than
// size members only when its column does (uneven ranks per group, or fewer
// groups than size); XOR and RS refuse sets that are too small (see
// Scheme.Check). Sets is pure: every rank computes the same answer from the
// same input, e.g. groups[r] = c.Host(r).
func Sets(groups []string, size int) ([]Set, error) {
	if size < 1 {
		return nil, fmt.Errorf("redundancy: set size %d: must be at least 1 (SCR_SET_SIZE)", size)
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("redundancy: no ranks to form sets from")
	}
	seen := make(map[string]int, len(groups)) // group -> ranks seen so far
	var columns [][]int
	for r, g := range groups {
		k := seen[g]
		seen[g] = k + 1
		if k == len(columns) {
			columns = append(columns, nil)
		}
		columns[k] = append(columns[k], r)
	}
	var sets []Set
	for _, col := range columns {
		m := len(col)
		g := m / size
		if g == 0 {
			g = 1
		}
		base, extra := m/g, m%g
		at := 0
		for i := range g {
			n := base
			if i < extra {
				n++
			}
			sets = append(sets, Set{ID: len(sets), Ranks: slices.Clone(col[at : at+n])})
			at += n
		}
	}
	return sets, nil
}

// Hosts returns the host of every rank of c, the input of Sets for the
// NODE failure group.
func Hosts(c comm.Comm) []string {
	h := make([]string, c.Size())
	for r := range h {
		h[r] = c.Host(r)
	}
	return h
}

// Group is one rank's place in its redundancy set, ready for Encode and
// Rebuild. Make it with Join; reuse it for every dataset of a run.
type Group struct {
	World comm.Comm // the world communicator: agreement across all sets
	Comm  comm.Comm // the set's communicator: rank i is member i of Set
	Set   Set       // this rank's set
	Index int       // this rank's position in Set (Comm.Rank())

	smallest Set // the smallest set of the world: every rank checks a scheme against it
}

// check refuses a scheme on every rank at once when any set of the world
// is too small for it, so that no rank waits for one that gave up.
func (g *Group) check(s Scheme) error {
	if err := s.Check(len(g.smallest.Ranks)); err != nil {
		return fmt.Errorf("%w (set %d of ranks %v)", err, g.smallest.ID, g.smallest.Ranks)
	}
	return nil
}

// Join is collective over world: every rank calls it with the same sets
// (from Sets). It returns this rank's Group, whose Comm spans its set.
func Join(ctx context.Context, world comm.Comm, sets []Set) (*Group, error) {
	me := world.Rank()
	var mine *Set
	for i := range sets {
		if sets[i].Index(me) >= 0 {
			if mine != nil {
				return nil, fmt.Errorf("redundancy: rank %d is in sets %d and %d: sets must partition the ranks", me, mine.ID, sets[i].ID)
			}
			mine = &sets[i]
		}
	}
	if mine == nil {
		return nil, fmt.Errorf("redundancy: rank %d is in no set: sets must cover every rank", me)
	}
	idx := mine.Index(me)
	sc, err := world.Split(ctx, mine.ID, idx)
	if err != nil {
		return nil, fmt.Errorf("redundancy: rank %d: forming the communicator of set %d: %w", me, mine.ID, err)
	}
	if sc.Size() != len(mine.Ranks) || sc.Rank() != idx {
		return nil, fmt.Errorf("redundancy: rank %d: set %d communicator has rank %d of %d, want %d of %d: ranks disagree on the sets", me, mine.ID, sc.Rank(), sc.Size(), idx, len(mine.Ranks))
	}
	small := sets[0]
	for _, s := range sets[1:] {
		if len(s.Ranks) < len(small.Ranks) {
			small = s
		}
	}
	return &Group{World: world, Comm: sc, Set: *mine, Index: idx, smallest: small}, nil
}

// left and right are the set positions of the neighbours.
func (g *Group) left() int  { n := len(g.Set.Ranks); return (g.Index - 1 + n) % n }
func (g *Group) right() int { return (g.Index + 1) % len(g.Set.Ranks) }

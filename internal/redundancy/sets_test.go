package redundancy

import (
	"fmt"
	"reflect"
	"testing"
)

func nodes(nNodes, perNode int) []string {
	var h []string
	for n := range nNodes {
		for range perNode {
			h = append(h, fmt.Sprintf("n%d", n))
		}
	}
	return h
}

func ranksOf(sets []Set) [][]int {
	var out [][]int
	for _, s := range sets {
		out = append(out, s.Ranks)
	}
	return out
}

func TestSets(t *testing.T) {
	cases := []struct {
		name   string
		groups []string
		size   int
		want   [][]int
	}{
		{"one rank per node, one set", nodes(4, 1), 8, [][]int{{0, 1, 2, 3}}},
		{"exact cut", nodes(8, 1), 4, [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}}},
		{"remainder spread to first sets", nodes(11, 1), 4, [][]int{{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}}},
		{"7 by 3", nodes(7, 1), 3, [][]int{{0, 1, 2, 3}, {4, 5, 6}}},
		{"two ranks per node: columns", nodes(3, 2), 8, [][]int{{0, 2, 4}, {1, 3, 5}}},
		{"block then cut", nodes(4, 2), 2, [][]int{{0, 2}, {4, 6}, {1, 3}, {5, 7}}},
		{"uneven ranks per node", []string{"a", "a", "b", "c", "c", "c"}, 8, [][]int{{0, 2, 3}, {1, 4}, {5}}},
		{"single node", nodes(1, 3), 8, [][]int{{0}, {1}, {2}}},
		{"round-robin placement", []string{"a", "b", "a", "b"}, 8, [][]int{{0, 1}, {2, 3}}},
		{"size one", nodes(3, 1), 1, [][]int{{0}, {1}, {2}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sets, err := Sets(c.groups, c.size)
			if err != nil {
				t.Fatal(err)
			}
			if got := ranksOf(sets); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			checkSets(t, c.groups, c.size, sets)
		})
	}
	if _, err := Sets(nodes(2, 1), 0); err == nil {
		t.Fatal("size 0 accepted")
	}
	if _, err := Sets(nil, 4); err == nil {
		t.Fatal("no ranks accepted")
	}
}

// checkSets asserts the properties every set formation must have.
func checkSets(t *testing.T, groups []string, size int, sets []Set) {
	t.Helper()
	seen := make([]bool, len(groups))
	for i, s := range sets {
		if s.ID != i {
			t.Fatalf("set %d has id %d", i, s.ID)
		}
		if len(s.Ranks) == 0 {
			t.Fatalf("set %d is empty", i)
		}
		inSet := map[string]int{}
		for j, r := range s.Ranks {
			if r < 0 || r >= len(groups) || seen[r] {
				t.Fatalf("rank %d in set %d is out of range or in two sets", r, i)
			}
			seen[r] = true
			if j > 0 && r <= s.Ranks[j-1] {
				t.Fatalf("set %d not increasing: %v", i, s.Ranks)
			}
			if o, dup := inSet[groups[r]]; dup {
				t.Fatalf("set %d holds ranks %d and %d of failure group %q", i, o, r, groups[r])
			}
			inSet[groups[r]] = r
		}
	}
	for r, ok := range seen {
		if !ok {
			t.Fatalf("rank %d in no set", r)
		}
	}
	// A set is smaller than size only if it is the only set of its column
	// (all ranks of that column): then no other set shares its column.
	for _, s := range sets {
		if len(s.Ranks) < size {
			col := column(groups, s.Ranks[0])
			for _, o := range sets {
				if o.ID != s.ID && column(groups, o.Ranks[0]) == col {
					t.Fatalf("set %d has %d < %d members but shares column %d with set %d", s.ID, len(s.Ranks), size, col, o.ID)
				}
			}
		}
		if len(s.Ranks) >= 2*size+size && size > 1 {
			t.Fatalf("set %d has %d members for size %d", s.ID, len(s.Ranks), size)
		}
	}
}

func column(groups []string, r int) int {
	k := 0
	for i := 0; i < r; i++ {
		if groups[i] == groups[r] {
			k++
		}
	}
	return k
}

func FuzzSets(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 2, 2}, uint8(2))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8}, uint8(4))
	f.Add([]byte{3, 3, 3}, uint8(8))
	f.Fuzz(func(t *testing.T, g []byte, size uint8) {
		if len(g) == 0 || len(g) > 512 {
			return
		}
		groups := make([]string, len(g))
		for i, b := range g {
			groups[i] = fmt.Sprint(b % 16)
		}
		sets, err := Sets(groups, int(size))
		if size == 0 {
			if err == nil {
				t.Fatal("size 0 accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkSets(t, groups, int(size), sets)
	})
}

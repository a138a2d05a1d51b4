package scr

import (
	"fmt"
	"testing"

	"github.com/scr-go/scr/internal/cache"
)

func TestChooseRestart(t *testing.T) {
	ck := func(id int, ok bool) outcome {
		return outcome{ds: cache.Dataset{ID: id, Flags: cache.FlagCheckpoint}, ok: ok}
	}
	out := func(id int, ok, flushed bool) outcome {
		return outcome{ds: cache.Dataset{ID: id, Flags: cache.FlagOutput}, ok: ok, flushed: flushed}
	}
	ids := func(ds []cache.Dataset) string {
		var s []int
		for _, d := range ds {
			s = append(s, d.ID)
		}
		return fmt.Sprint(s)
	}
	cases := []struct {
		name              string
		in                []outcome
		cands, kept, drop string
	}{
		{"nothing", nil, "[]", "[]", "[]"},
		{"newest whole", []outcome{ck(3, true), ck(2, true)}, "[3 2]", "[3 2]", "[]"},
		{"newest lost", []outcome{ck(3, false), ck(2, true)}, "[2]", "[2]", "[3]"},
		{"all lost", []outcome{ck(3, false), ck(2, false)}, "[]", "[]", "[3 2]"},
		{"lost unflushed output blocks newer checkpoints", []outcome{ck(4, true), out(3, false, false), ck(2, true)}, "[2]", "[2]", "[4 3]"},
		{"lost output on the prefix blocks nothing", []outcome{ck(4, true), out(3, false, true), ck(2, true)}, "[4 2]", "[4 2]", "[3]"},
		{"newer output dropped with the restart", []outcome{out(5, true, false), ck(4, true)}, "[4]", "[4]", "[5]"},
		{"outputs kept when no checkpoint", []outcome{out(2, true, false), out(1, true, true)}, "[]", "[2 1]", "[]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cands, kept, drop := chooseRestart(c.in)
			if ids(cands) != c.cands || ids(kept) != c.kept || fmt.Sprint(append([]int{}, drop...)) != c.drop {
				t.Fatalf("got cands %s kept %s drop %v; want %s %s %s", ids(cands), ids(kept), drop, c.cands, c.kept, c.drop)
			}
		})
	}
}

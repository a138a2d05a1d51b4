package redundancy

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/scr-go/scr/comm"
)

// RebuildOffline rebuilds a dataset whose ranks' files are all reachable
// from this process, e.g. scavenged copies in the prefix (scr_index
// --build): dirs[r] says where world rank r's files and redundancy files
// are, or should go when r was lost. The scheme, the sets and the lost
// ranks' file lists come from the redundancy headers found; the work is
// Rebuild's, with every rank as a goroutine over comm.NewLocal. It returns
// one Result per rank, or the error every rank agreed on
// (*UnrecoverableError when too much is lost).
func RebuildOffline(ctx context.Context, dirs []Dirs, bufSize int) ([]Result, error) {
	p := len(dirs)
	if p == 0 {
		return nil, fmt.Errorf("redundancy: offline rebuild of no ranks")
	}
	var s *Scheme
	var sets []Set
	setOf := make([]int, p) // index into sets, -1 = none
	for r := range setOf {
		setOf[r] = -1
	}
	for r, d := range dirs {
		red, err := openRed(d.Meta, false)
		if err != nil {
			continue // lost, or not there: the others' headers tell
		}
		h := red.h
		red.close()
		if s == nil {
			t, err := ParseType(h.Scheme)
			if err != nil {
				continue
			}
			s = &Scheme{Type: t, Failures: h.Failures, BufSize: bufSize}
		}
		if slices.ContainsFunc(sets, func(x Set) bool { return x.ID == h.Set }) {
			continue
		}
		ok := len(h.Members) > 0
		for _, m := range h.Members {
			ok = ok && m >= 0 && m < p && setOf[m] < 0
		}
		if !ok || h.Members[h.Index] != r {
			continue // inconsistent header: Rebuild will count its rank lost
		}
		for _, m := range h.Members {
			setOf[m] = len(sets)
		}
		sets = append(sets, Set{ID: h.Set, Ranks: slices.Clone(h.Members)})
	}
	var orphans SetLoss
	orphans.Set = -1
	for r, i := range setOf {
		if i < 0 {
			orphans.Lost = append(orphans.Lost, r)
			orphans.Hosts = append(orphans.Hosts, dirs[r].Meta)
			orphans.Reasons = append(orphans.Reasons, "no readable redundancy header names this rank: its whole set is lost")
		}
	}
	if len(orphans.Lost) > 0 {
		e := &UnrecoverableError{Sets: []SetLoss{orphans}, Total: 1}
		if s != nil {
			e.Scheme = *s
		}
		return nil, e
	}
	hosts := make([]string, p)
	for r, d := range dirs {
		hosts[r] = d.Meta
	}
	comms := comm.NewLocal(hosts)
	res := make([]Result, p)
	errs := make([]error, p)
	var wg sync.WaitGroup
	for r, c := range comms {
		wg.Go(func() {
			defer c.Close()
			g, err := Join(ctx, c, sets)
			if err != nil {
				errs[r] = err
				return
			}
			res[r], errs[r] = rebuild(ctx, g, *s, dirs[r])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

package scr

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUnderPrefix: whatever the name, Route's path check either rejects it
// with a *PathError or returns a path inside the prefix, outside .scr.
func FuzzUnderPrefix(f *testing.F) {
	for _, s := range []string{"a", "../a", "/p/x/../../y", "a/./b", ".scr/x", "/p", "//p//a", "a/..", "x\x00y", ""} {
		f.Add(s)
	}
	h := &Handle{prefix: "/p"}
	f.Fuzz(func(t *testing.T, name string) {
		orig, rel, err := h.underPrefix(name)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrPath) {
				t.Fatalf("%q: error %v is not a *PathError", name, err)
			}
			return
		}
		if !strings.HasPrefix(orig, "/p/") || filepath.Join("/p", rel) != orig {
			t.Fatalf("%q -> %q %q escapes the prefix", name, orig, rel)
		}
		if rel == ".scr" || strings.HasPrefix(rel, ".scr/") || strings.HasPrefix(rel, "../") {
			t.Fatalf("%q -> %q", name, rel)
		}
	})
}

func TestDecide(t *testing.T) {
	rep := func(valid bool, reason string, files ...string) []byte {
		sizes := strings.Repeat(",10", len(files))[1:]
		return []byte(`{"v":` + map[bool]string{true: "true", false: "false"}[valid] + `,"r":"` + reason + `","f":["` + strings.Join(files, `","`) + `"],"s":[` + sizes + `]}`)
	}
	v := decide("d", [][]byte{rep(true, "", "a"), rep(true, "", "b")}, false)
	if !v.OK || v.Files != 2 || v.Bytes != 20 {
		t.Fatalf("all valid: %+v", v)
	}
	v = decide("d", [][]byte{rep(true, "", "a"), rep(false, "rank 1: disk full", "b")}, false)
	if v.OK || len(v.Ranks) != 1 || v.Ranks[0] != 1 || v.Reasons[0] != "rank 1: disk full" {
		t.Fatalf("one invalid: %+v", v)
	}
	v = decide("d", [][]byte{rep(true, "", "a", "x"), rep(true, "", "x")}, false)
	if v.OK || v.Dup == nil || v.Dup.Path != "x" || len(v.Dup.Ranks) != 2 || !strings.Contains(v.Dup.Error(), "needs bypass mode") {
		t.Fatalf("duplicate: %+v", v)
	}
	// Bypass: a shared file, owned by the lowest rank, counted once.
	v = decide("d", [][]byte{rep(true, "", "a"), rep(true, "", "x", "b"), rep(true, "", "x")}, true)
	if !v.OK || v.Dup != nil || len(v.Shared) != 1 || v.Shared["x"] != 1 || v.Files != 3 || v.Bytes != 30 {
		t.Fatalf("shared in bypass: %+v", v)
	}
	v = decide("d", [][]byte{[]byte("garbage")}, false)
	if v.OK {
		t.Fatal("bad report accepted")
	}
}

func TestXORWithASetOfOneFailsOnEveryRank(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_COPY_TYPE": "XOR"})
	// Node a has two ranks, node b one: the second column is a set of one.
	errs := j.run([]string{"a", "a", "b"}, nil, func(ctx context.Context, h *Handle) error {
		err := checkpoint(ctx, h, 1, 10, 0)
		if err == nil {
			return errors.New("XOR checkpoint with a one-member set succeeded")
		}
		if _, ok, herr := h.HaveRestart(ctx); ok || herr != nil {
			n, _, _ := h.HaveRestart(ctx)
			return fmt.Errorf("the failed dataset is offered for restart: %s %v (checkpoint said %v)", n, herr, err)
		}
		return nil
	})
	mustAll(t, errs)
}

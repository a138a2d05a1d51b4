package scr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
)

func names(t *testing.T, dir string) string {
	t.Helper()
	ix, err := prefix.ReadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ix.Entries() {
		out = append(out, e.Dataset.Name)
	}
	return fmt.Sprint(out)
}

func TestPrefixSizeKeepsTheNewest(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_PREFIX_SIZE": "2"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 4; step++ {
			if err := checkpoint(ctx, h, step, 10, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	if got := names(t, j.prefix); got != "[ckpt.4 ckpt.3]" {
		t.Fatalf("prefix index %s", got)
	}
	if _, err := os.Stat(filepath.Join(j.prefix, "ckpt.1")); !os.IsNotExist(err) {
		t.Fatalf("ckpt.1 files kept: %v", err)
	}
}

func TestFlushOnRestartAndGlobalRestart(t *testing.T) {
	j := newJob(t, nil) // SCR_FLUSH=0: nothing on the prefix
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 10, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_FLUSH_ON_RESTART": "1"}, 10), "ckpt.1")
	if got := names(t, j.prefix); got != "[ckpt.1]" {
		t.Fatalf("prefix after SCR_FLUSH_ON_RESTART: %s", got)
	}
	if lastRestartFrom(t, j) != "cache" {
		t.Fatal("SCR_FLUSH_ON_RESTART must still restart from the cache")
	}
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_GLOBAL_RESTART": "1"}, 10), "ckpt.1")
	if got := lastRestartFrom(t, j); got != "prefix" {
		t.Fatalf("SCR_GLOBAL_RESTART restarted from %q, want prefix", got)
	}
}

func TestDropAfterCurrentAndPrefixPurge(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_DROP_AFTER_CURRENT": "1"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 3; step++ {
			if err := checkpoint(ctx, h, step, 10, 0); err != nil {
				return err
			}
		}
		if err := h.Current(ctx, "ckpt.1"); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	if got := names(t, j.prefix); got != "[ckpt.1]" {
		t.Fatalf("index after Current with SCR_DROP_AFTER_CURRENT: %s", got)
	}
	sameName(t, restartAll(t, j, four, map[string]string{"SCR_PREFIX_PURGE": "1", "SCR_FETCH": "1"}, 10), "")
	if got := names(t, j.prefix); got != "[]" {
		t.Fatalf("index after SCR_PREFIX_PURGE: %s", got)
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/safefs/safefstest"
)

func TestPrerunClearsRunStateKeepsHalt(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SCR_ENABLE", "1")
	if _, err := prefix.UpdateHalt(context.Background(), dir, func(h *prefix.Halt, _ bool) error {
		h.CheckpointsLeft = prefix.Int64(3)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{prefix.FlushPath(dir), prefix.NodesPath(dir)} {
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if code := run([]string{"-p", dir, "-v"}, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, p := range []string{prefix.FlushPath(dir), prefix.NodesPath(dir)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there (%v)", p, err)
		}
	}
	h, exists, err := prefix.ReadHalt(dir)
	if err != nil || !exists || h.CheckpointsLeft == nil || *h.CheckpointsLeft != 3 {
		t.Fatalf("halt file: %+v %v %v", h, exists, err)
	}
	// An unwritable prefix is an error that names the path.
	out.Reset()
	if code := run([]string{"--prefix", "/proc/nonexistent/prefix"}, &out, &out); code != 1 || !bytes.Contains(out.Bytes(), []byte("/proc/nonexistent")) {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if code := run([]string{"--help"}, &out, &out); code != 0 || !bytes.Contains(out.Bytes(), []byte("EXIT STATUS")) {
		t.Fatal("help")
	}
}

// A prefix that does not exist is an error (a typo in -p or SCR_PREFIX),
// not a directory silently created; another user's .scr is refused.
func TestPrerunRefusesMissingPrefixAndForeignMetadata(t *testing.T) {
	t.Setenv("SCR_ENABLE", "1")
	missing := t.TempDir() + "/nonexistent"
	var out bytes.Buffer
	if code := run([]string{"-p", missing}, &out, &out); code != 1 || !bytes.Contains(out.Bytes(), []byte(missing)) {
		t.Fatalf("missing prefix: exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("scr_prerun created the missing prefix")
	}
	safefstest.RequireRoot(t)
	shared := safefstest.SharedDir(t)
	safefstest.As(t, safefstest.Mallory, "mkdir -m 0777 "+shared+"/.scr")
	out.Reset()
	if code := run([]string{"-p", shared}, &out, &out); code != 1 || !bytes.Contains(out.Bytes(), []byte("uid 4242")) {
		t.Fatalf("another user's .scr: exit %d: %s", code, out.String())
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
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

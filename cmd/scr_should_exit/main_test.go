package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
)

func TestShouldExit(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SCR_PREFIX", dir)
	t.Setenv("SCR_NODELIST", "n[1-4]")
	t.Setenv("SCR_JOB_ID", "5")
	t.Setenv("SCR_MIN_NODES", "")
	tests := []struct {
		name   string
		args   []string
		code   int
		reason string
	}{
		{"continue", []string{"--runs", "3"}, 1, "continue"},
		{"no runs left", []string{"--runs", "0"}, 0, "no runs left"},
		{"too few nodes", []string{"--down", "n[1-2]", "--min-nodes", "3"}, 0, "too few healthy nodes: 2 of 4, need 3"},
		{"enough nodes", []string{"--down", "n1", "--min-nodes", "3"}, 1, "continue"},
		{"whole allocation by default", []string{"--down", "n1"}, 0, "need 4"},
		{"bad host list", []string{"--down", "n[1-"}, 2, ""},
		{"extra argument", []string{"x"}, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append(tc.args, "--json"), &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out.String(), errb.String())
			}
			if tc.reason == "" {
				return
			}
			var v struct{ Reason string }
			if err := json.Unmarshal(out.Bytes(), &v); err != nil || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("output %q (%v), want reason %q", out.String(), err, tc.reason)
			}
		})
	}
	// The halt file stops the loop; a damaged one too, with the reason.
	if _, err := prefix.UpdateHalt(context.Background(), dir, func(h *prefix.Halt, _ bool) error {
		h.ExitReason = prefix.ReasonJobHalted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"-v"}, &out, &out); code != 0 || !strings.Contains(out.String(), "JOB_HALTED") {
		t.Fatalf("halted: exit %d %s", code, out.String())
	}
	if err := prefix.WriteFileAtomic(prefix.HaltPath(dir), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"-v"}, &out, &out); code != 0 || !strings.Contains(out.String(), "halt file unreadable") {
		t.Fatalf("corrupt halt file: exit %d %s", code, out.String())
	}
}

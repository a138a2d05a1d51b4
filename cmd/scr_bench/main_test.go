package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestSmallRun(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--nodes", "2", "--size", "64k", "--reps", "1", "--dir", t.TempDir(), "--json"}, &out, &errb)
	if code != 0 && code != 4 { // 4: a ratio missed its target (timing, not a failure)
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if r.Nodes != 2 || r.BytesPerRank != 64<<10 || r.PlainSecs <= 0 || r.XORSecs <= 0 || r.RebuildSecs <= 0 || r.XORSteadySecs <= 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "EXIT STATUS") {
		t.Fatalf("--help: %d", code)
	}
	if code := run(context.Background(), []string{"--nodes", "1"}, &out, &errb); code != 2 {
		t.Fatalf("--nodes 1: exit %d", code)
	}
}

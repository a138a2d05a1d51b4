package haltcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

func env(kv ...string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1], true
			}
		}
		return "", false
	}
}

func i64(v int64) *int64 { return &v }

func TestRun(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name   string
		before *prefix.Halt // existing file, nil = none
		opts   Options
		check  func(t *testing.T, h *prefix.Halt, exists bool)
	}{
		{"no condition sets JOB_HALTED", nil, Options{}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if !ok || h.ExitReason != prefix.ReasonJobHalted || h.Immediate {
				t.Errorf("%+v", h)
			}
		}},
		{"custom reason", nil, Options{Reason: "MAINTENANCE"}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if h.ExitReason != "MAINTENANCE" {
				t.Errorf("%+v", h)
			}
		}},
		{"replaces SCR_FINALIZE_CALLED", &prefix.Halt{ExitReason: prefix.ReasonFinalizeCalled}, Options{}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if h.ExitReason != prefix.ReasonJobHalted {
				t.Errorf("%+v", h)
			}
		}},
		{"reason with a condition", nil, Options{Reason: "MAINT", Seconds: i64(60)}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if h.ExitReason != "MAINT" || *h.HaltSeconds != 60 {
				t.Errorf("%+v", h)
			}
		}},
		{"checkpoints do not set a reason", nil, Options{Checkpoints: i64(3)}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if h.ExitReason != "" || *h.CheckpointsLeft != 3 {
				t.Errorf("%+v", h)
			}
		}},
		{"immediate", nil, Options{Immediate: true}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if !h.Immediate || h.ExitReason != prefix.ReasonJobHalted {
				t.Errorf("%+v", h)
			}
		}},
		{"unset keeps others", &prefix.Halt{ExitReason: "X", Immediate: true, CheckpointsLeft: i64(1), HaltSeconds: i64(5), ExitAfter: i64(9), ExitBefore: i64(8)},
			Options{UnsetReason: true, UnsetAfter: true}, func(t *testing.T, h *prefix.Halt, ok bool) {
				if h.ExitReason != "" || h.Immediate || h.ExitAfter != nil || *h.CheckpointsLeft != 1 || *h.HaltSeconds != 5 || *h.ExitBefore != 8 {
					t.Errorf("%+v", h)
				}
			}},
		{"unset all", &prefix.Halt{CheckpointsLeft: i64(1), HaltSeconds: i64(5), ExitAfter: i64(9), ExitBefore: i64(8)},
			Options{UnsetCheckpoints: true, UnsetSeconds: true, UnsetAfter: true, UnsetBefore: true}, func(t *testing.T, h *prefix.Halt, ok bool) {
				if h.CheckpointsLeft != nil || h.HaltSeconds != nil || h.ExitAfter != nil || h.ExitBefore != nil || h.ExitReason != "" {
					t.Errorf("%+v", h)
				}
			}},
		{"list only writes nothing", nil, Options{List: true}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if ok {
				t.Errorf("list created a halt file")
			}
		}},
		{"remove", &prefix.Halt{ExitReason: "X"}, Options{Remove: true}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if ok {
				t.Errorf("not removed")
			}
		}},
		{"times", nil, Options{Before: i64(now.Unix() + 60), After: i64(now.Unix() + 120), Seconds: i64(30)}, func(t *testing.T, h *prefix.Halt, ok bool) {
			if *h.ExitBefore != now.Unix()+60 || *h.ExitAfter != now.Unix()+120 || *h.HaltSeconds != 30 || h.ExitReason != "" {
				t.Errorf("%+v", h)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.before != nil {
				if _, err := prefix.UpdateHalt(context.Background(), dir, func(h *prefix.Halt, _ bool) error {
					*h = *tc.before
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			o := tc.opts
			o.Dirs, o.Env, o.Now = []string{dir}, env(), func() time.Time { return now }
			var out bytes.Buffer
			if err := Run(context.Background(), o, &out); err != nil {
				t.Fatal(err)
			}
			h, exists, err := prefix.ReadHalt(dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, h, exists)
		})
	}
}

func TestJSONHaltNowUsesEndTime(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	dir := t.TempDir()
	var out bytes.Buffer
	o := Options{Dirs: []string{dir}, Seconds: i64(600), JSON: true, Now: func() time.Time { return now },
		Env: env("SCR_END_TIME", "1800000500")}
	if err := Run(context.Background(), o, &out); err != nil {
		t.Fatal(err)
	}
	var st []State
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(st) != 1 || !st[0].HaltNow || st[0].Reason != prefix.ReasonTimeLimit {
		t.Fatalf("%+v", st)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := Run(ctx, Options{Dirs: []string{dir}, Checkpoints: i64(-1), Env: env()}, &bytes.Buffer{}); !errors.Is(err, ErrUsage) {
		t.Errorf("negative checkpoints: %v", err)
	}
	if err := Run(ctx, Options{Dirs: []string{dir}, Remove: true, Seconds: i64(1), Env: env()}, &bytes.Buffer{}); !errors.Is(err, ErrUsage) {
		t.Errorf("remove with settings: %v", err)
	}
	missing := filepath.Join(dir, "no-such-prefix")
	err := Run(ctx, Options{Dirs: []string{missing, dir}, Env: env()}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing prefix: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("scr_halt created a prefix directory")
	}
	if _, ok, _ := prefix.ReadHalt(dir); !ok {
		t.Error("a failing directory stopped the others")
	}
	// A damaged halt file is an error, and is not overwritten.
	os.WriteFile(prefix.HaltPath(dir), []byte("{trunc"), 0o600)
	err = Run(ctx, Options{Dirs: []string{dir}, Env: env()}, &bytes.Buffer{})
	if !errors.Is(err, prefix.ErrCorrupt) || !strings.Contains(err.Error(), prefix.HaltPath(dir)) {
		t.Errorf("corrupt: %v", err)
	}
	if b, _ := os.ReadFile(prefix.HaltPath(dir)); string(b) != "{trunc" {
		t.Error("damaged halt file overwritten")
	}
}

func TestParseTime(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, loc)
	cases := map[string]int64{
		"2026-05-06T10:00:00":        time.Date(2026, 5, 6, 10, 0, 0, 0, loc).Unix(),
		"2026-05-06 10:00":           time.Date(2026, 5, 6, 10, 0, 0, 0, loc).Unix(),
		"2026-05-06T10:00:00Z":       time.Date(2026, 5, 6, 10, 0, 0, 0, time.UTC).Unix(),
		"11:30":                      time.Date(2026, 5, 6, 11, 30, 0, 0, loc).Unix(),
		"@1800000000":                1800000000,
		"+2h":                        now.Add(2 * time.Hour).Unix(),
		"+3600":                      now.Add(time.Hour).Unix(),
		" 2026-05-06T10:00:00+02:00": time.Date(2026, 5, 6, 8, 0, 0, 0, time.UTC).Unix(),
	}
	for in, want := range cases {
		got, err := ParseTime(in, now)
		if err != nil || got != want {
			t.Errorf("ParseTime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "@x", "+-1h", "2026-13-01T00:00:00", "25:00"} {
		if _, err := ParseTime(bad, now); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseTime(%q): %v", bad, err)
		}
	}
}

package prefix

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func TestHaltCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	end := now.Add(10 * time.Minute)
	tests := []struct {
		name string
		h    Halt
		end  time.Time
		secs int64
		lib  bool
		want string
	}{
		{"empty file", Halt{}, end, 0, false, ""},
		{"time limit from env seconds", Halt{}, end, 600, false, ReasonTimeLimit},
		{"time limit from file seconds", Halt{HaltSeconds: Int64(601)}, end, 0, false, ReasonTimeLimit},
		{"file seconds win over env", Halt{HaltSeconds: Int64(10)}, end, 600, false, ""},
		{"no end time, no time limit", Halt{}, time.Time{}, 600, false, ""},
		{"reason", Halt{ExitReason: ReasonJobHalted}, end, 0, false, ReasonJobHalted},
		{"finalize stops scr_run", Halt{ExitReason: ReasonFinalizeCalled}, end, 0, false, ReasonFinalizeCalled},
		{"finalize ignored by library", Halt{ExitReason: ReasonFinalizeCalled}, end, 0, true, ""},
		{"checkpoints left 0", Halt{CheckpointsLeft: Int64(0)}, end, 0, true, ReasonNoCheckpoints},
		{"checkpoints left 1", Halt{CheckpointsLeft: Int64(1)}, end, 0, true, ""},
		{"exit before minus seconds", Halt{ExitBefore: Int64(now.Unix() + 100), HaltSeconds: Int64(100)}, time.Time{}, 0, false, ReasonExitBefore},
		{"exit before not yet", Halt{ExitBefore: Int64(now.Unix() + 101), HaltSeconds: Int64(100)}, time.Time{}, 0, false, ""},
		{"exit after", Halt{ExitAfter: Int64(now.Unix())}, end, 0, false, ReasonExitAfter},
		{"exit after not yet", Halt{ExitAfter: Int64(now.Unix() + 1)}, end, 0, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.h.HaltCheck(now, tc.end, tc.secs, tc.lib)
			if d.Reason != tc.want || d.Halt != (tc.want != "") {
				t.Errorf("got %+v, want %q", d, tc.want)
			}
		})
	}
}

func TestHaltUpdateAndRemove(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	_, exists, err := ReadHalt(dir)
	if err != nil || exists {
		t.Fatalf("fresh prefix: exists=%v err=%v", exists, err)
	}
	h, err := UpdateHalt(ctx, dir, func(h *Halt, exists bool) error {
		if exists {
			t.Error("exists on first update")
		}
		h.CheckpointsLeft = Int64(2)
		return nil
	})
	if err != nil || *h.CheckpointsLeft != 2 {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		UpdateHalt(ctx, dir, func(h *Halt, _ bool) error { *h.CheckpointsLeft--; return nil })
	}
	h, exists, err = ReadHalt(dir)
	if err != nil || !exists || *h.CheckpointsLeft != 0 || !h.HaltCheck(time.Now(), time.Time{}, 0, true).Halt {
		t.Fatalf("after two checkpoints: %+v %v", h, err)
	}
	if err := RemoveHalt(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(HaltPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("halt file still there")
	}
	if err := RemoveHalt(ctx, dir); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func TestHaltLockWaitsForContext(t *testing.T) {
	dir := t.TempDir()
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := UpdateHalt(context.Background(), dir, func(h *Halt, _ bool) error {
			close(inside)
			<-release
			h.ExitReason = "first"
			return nil
		})
		done <- err
	}()
	<-inside
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := UpdateHalt(ctx, dir, func(h *Halt, _ bool) error { h.ExitReason = "second"; return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("locked update with a cancelled context: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h, _, _ := ReadHalt(dir)
	if h.ExitReason != "first" {
		t.Fatalf("reason %q", h.ExitReason)
	}
}

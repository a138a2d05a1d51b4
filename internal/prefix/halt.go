package prefix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// HaltFile is the halt file under <prefix>/.scr (SCR's halt.scr).
const (
	HaltFile    = "halt.json"
	haltLock    = "halt.lock"
	haltFormat  = "scr-halt"
	HaltVersion = 1
)

// Halt reasons written to or derived from the halt file.
const (
	ReasonTimeLimit       = "TIME_LIMIT"          // remaining allocation time <= HaltSeconds
	ReasonNoCheckpoints   = "NO_CHECKPOINTS_LEFT" // CheckpointsLeft reached 0
	ReasonExitBefore      = "EXIT_BEFORE_TIME"    // now >= ExitBefore - HaltSeconds
	ReasonExitAfter       = "EXIT_AFTER_TIME"     // now >= ExitAfter
	ReasonJobHalted       = "JOB_HALTED"          // scr_halt without a condition
	ReasonFinalizeCalled  = "SCR_FINALIZE_CALLED" // the application finished (Finalize)
	ReasonHaltFileCorrupt = "HALT_FILE_CORRUPT"   // scr_run: the halt file cannot be read
)

// Halt is the halt file: conditions under which the job must stop. A nil
// pointer field is unset.
type Halt struct {
	Format          string `json:"format"`
	Version         int    `json:"version"`
	ExitReason      string `json:"exit_reason,omitempty"`      // non-empty: halt now (with this reason)
	HaltSeconds     *int64 `json:"halt_seconds,omitempty"`     // halt when this many seconds or fewer are left
	ExitBefore      *int64 `json:"exit_before,omitempty"`      // unix seconds: halt HaltSeconds before this time
	ExitAfter       *int64 `json:"exit_after,omitempty"`       // unix seconds: halt at or after this time
	CheckpointsLeft *int64 `json:"checkpoints_left,omitempty"` // halt when it reaches 0; decremented per checkpoint
	Immediate       bool   `json:"immediate,omitempty"`        // scr_run kills the running step at once
}

// HaltPath is the halt file of a prefix.
func HaltPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), HaltFile) }

// ReadHalt reads the halt file. exists is false (and h empty) when there is
// none; a damaged file is a *CorruptError.
func ReadHalt(prefixDir string) (h *Halt, exists bool, err error) {
	h = &Halt{}
	ok, err := readJSON(HaltPath(prefixDir), haltFormat, HaltVersion, h)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return &Halt{Format: haltFormat, Version: HaltVersion}, false, nil
	}
	return h, true, nil
}

// UpdateHalt reads the halt file under an exclusive lock, calls fn with it
// (exists tells whether there was a file), and writes the result back if fn
// returns nil. It returns the halt state as written.
func UpdateHalt(ctx context.Context, prefixDir string, fn func(h *Halt, exists bool) error) (*Halt, error) {
	var out *Halt
	err := withLock(ctx, filepath.Join(MetaDir(prefixDir), haltLock), func() error {
		h, exists, err := ReadHalt(prefixDir)
		if err != nil {
			return err
		}
		if err := fn(h, exists); err != nil {
			return err
		}
		h.Format, h.Version = haltFormat, HaltVersion
		if err := writeJSON(HaltPath(prefixDir), h); err != nil {
			return err
		}
		out = h
		return nil
	})
	return out, err
}

// RemoveHalt deletes the halt file (under the lock). No file is no error.
func RemoveHalt(ctx context.Context, prefixDir string) error {
	return withLock(ctx, filepath.Join(MetaDir(prefixDir), haltLock), func() error {
		err := os.Remove(HaltPath(prefixDir))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove halt file: %w", err)
		}
		if err == nil {
			return syncDir(MetaDir(prefixDir))
		}
		return nil
	})
}

// HaltDecision is the outcome of a halt check.
type HaltDecision struct {
	Halt   bool   // the job must stop
	Reason string // why: one of the Reason* constants or the file's ExitReason
}

// HaltCheck decides whether to halt (SCR's rules, reference section 8).
// end is the allocation's end time (zero: unknown), haltSeconds the
// SCR_HALT_SECONDS value used when the file has none. forLibrary selects the
// library's view, which ignores SCR_FINALIZE_CALLED so that a relaunch of a
// finished application still runs; scr_run stops on it.
func (h *Halt) HaltCheck(now, end time.Time, haltSeconds int64, forLibrary bool) HaltDecision {
	secs := haltSeconds
	if h.HaltSeconds != nil {
		secs = *h.HaltSeconds
	}
	if secs > 0 && !end.IsZero() && end.Sub(now) <= time.Duration(secs)*time.Second {
		return HaltDecision{true, ReasonTimeLimit}
	}
	if h.ExitReason != "" && !(forLibrary && h.ExitReason == ReasonFinalizeCalled) {
		return HaltDecision{true, h.ExitReason}
	}
	if h.CheckpointsLeft != nil && *h.CheckpointsLeft <= 0 {
		return HaltDecision{true, ReasonNoCheckpoints}
	}
	if h.ExitBefore != nil && now.Unix() >= *h.ExitBefore-max(secs, 0) {
		return HaltDecision{true, ReasonExitBefore}
	}
	if h.ExitAfter != nil && now.Unix() >= *h.ExitAfter {
		return HaltDecision{true, ReasonExitAfter}
	}
	return HaltDecision{}
}

// Int64 returns a pointer to v, for the optional fields of Halt.
func Int64(v int64) *int64 { return &v }

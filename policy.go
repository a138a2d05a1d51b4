package scr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// ckptPolicy is SCR's Need_checkpoint policy (SCR_CHECKPOINT_INTERVAL,
// _SECONDS, _OVERHEAD).
type ckptPolicy struct {
	Interval int     // every Nth call
	Seconds  float64 // seconds since the end of the last checkpoint
	Overhead float64 // percent of run time spent checkpointing
}

// ckptHistory is what the policy looks at.
type ckptHistory struct {
	Calls   int           // NeedCheckpoint calls so far, this one included
	Since   time.Duration // since the end of the last checkpoint (or Init)
	Ckpts   int           // checkpoints taken in this run
	AvgCost time.Duration // average checkpoint duration
}

// need decides without I/O. With every policy off it says false.
func (p ckptPolicy) need(h ckptHistory) bool {
	if p.Interval > 0 && h.Calls%p.Interval == 0 {
		return true
	}
	if p.Seconds > 0 && h.Since.Seconds() >= p.Seconds {
		return true
	}
	if p.Overhead > 0 {
		if h.Ckpts == 0 {
			return true
		}
		cost := h.AvgCost.Seconds()
		if cost/(h.Since.Seconds()+cost)*100 < p.Overhead {
			return true
		}
	}
	return false
}

// NeedCheckpoint says whether the application should checkpoint now
// (collective; rank 0 decides). It is true while a halt condition holds,
// and otherwise follows SCR_CHECKPOINT_INTERVAL (every Nth call),
// SCR_CHECKPOINT_SECONDS (time since the last checkpoint) and
// SCR_CHECKPOINT_OVERHEAD (percent of time spent checkpointing); with all
// three at 0 (default) it is false.
func (h *Handle) NeedCheckpoint(ctx context.Context) (bool, error) {
	if !h.cfg.Enable {
		return false, ErrDisabled
	}
	if err := h.need("NeedCheckpoint", stateIdle, "finish the current phase first"); err != nil {
		return false, err
	}
	h.needCalls++
	var ans decision
	if h.rank == 0 {
		reason, err := h.haltReason()
		ans.Halt, ans.Reason = reason != "", reason
		if err != nil {
			ans.Err = err.Error()
		}
		var avg time.Duration
		if h.ckpts > 0 {
			avg = h.ckptCost / time.Duration(h.ckpts)
		}
		p := ckptPolicy{Interval: h.cfg.CheckpointInterval, Seconds: float64(h.cfg.CheckpointSeconds), Overhead: h.cfg.CheckpointOverhead}
		ans.Yes = ans.Halt || p.need(ckptHistory{Calls: h.needCalls, Since: time.Since(h.lastCkptEnd), Ckpts: h.ckpts, AvgCost: avg})
	}
	if err := h.bcastJSON(ctx, h.world, &ans); err != nil {
		return false, h.commErr("NeedCheckpoint", err)
	}
	if ans.Err != "" {
		return ans.Yes, fmt.Errorf("scr: NeedCheckpoint: halt file: %s", ans.Err)
	}
	h.logHalt(ans.Reason)
	return ans.Yes, nil
}

type decision struct {
	Yes    bool   `json:"yes,omitempty"`
	Halt   bool   `json:"halt,omitempty"`
	Reason string `json:"reason,omitempty"`
	Err    string `json:"err,omitempty"`
}

// ShouldExit says whether the application should stop now (collective;
// rank 0 reads the halt file and the time left): a reason set by scr_halt,
// no checkpoints left, a before/after time reached, or less than
// SCR_HALT_SECONDS left in the allocation (SCR_END_TIME). Call it after
// each checkpoint. reason is empty when the answer is false.
func (h *Handle) ShouldExit(ctx context.Context) (exit bool, reason string, err error) {
	if !h.cfg.Enable {
		return false, "", ErrDisabled
	}
	if err := h.need("ShouldExit", stateIdle, "finish the current phase first"); err != nil {
		return false, "", err
	}
	var ans decision
	if h.rank == 0 {
		reason, err := h.haltReason()
		ans.Halt, ans.Reason = reason != "", reason
		if err != nil {
			ans.Err = err.Error()
		}
	}
	if err := h.bcastJSON(ctx, h.world, &ans); err != nil {
		return false, "", h.commErr("ShouldExit", err)
	}
	if ans.Err != "" {
		return false, "", fmt.Errorf("scr: ShouldExit: halt file: %s", ans.Err)
	}
	h.logHalt(ans.Reason)
	return ans.Halt, ans.Reason, nil
}

// haltExit applies SCR_HALT_EXIT=1 at Init and after a checkpoint
// (collective): when a halt condition holds, it finishes the flushes as
// Finalize does, records the reason in the halt file if none is there yet
// (scr_run then stops relaunching) and closes the handle with a
// *HaltError. SCR's library calls exit(0) at this point; the caller
// decides here (the C API exits, after MPI_Finalize).
func (h *Handle) haltExit(ctx context.Context, when string) error {
	if !h.cfg.HaltExit {
		return nil
	}
	exit, reason, err := h.ShouldExit(ctx)
	if err != nil || !exit {
		return err
	}
	errs := h.finishFlushes(ctx)
	if h.rank == 0 {
		_, err := prefix.UpdateHalt(ctx, h.prefix, func(hf *prefix.Halt, _ bool) error {
			if hf.ExitReason != "" {
				return errSkip
			}
			hf.ExitReason = reason
			return nil
		})
		if err != nil && !errors.Is(err, errSkip) {
			errs = append(errs, fmt.Errorf("record %s in the halt file: %w", reason, err))
		}
	}
	ferr := h.agree(ctx, "halt: finish flushes", errors.Join(errs...))
	h.owner.Release() // the job ends: the prefix is free for the next one
	h.state = stateFinal
	return errors.Join(&HaltError{Reason: reason, When: when}, ferr)
}

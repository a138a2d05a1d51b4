package scr

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error a Handle returns wraps at most one of them,
// so callers can branch with errors.Is.
var (
	// ErrDisabled: SCR_ENABLE=0; the call did nothing.
	ErrDisabled = errors.New("scr: disabled (SCR_ENABLE=0)")
	// ErrState: the call is not allowed in the handle's current state.
	ErrState = errors.New("scr: call out of order")
	// ErrPath: a routed file is outside the prefix, or its name is unusable.
	ErrPath = errors.New("scr: bad file path")
	// ErrDuplicate: two files with one name in a dataset.
	ErrDuplicate = errors.New("scr: duplicate file in dataset")
	// ErrInvalid: a dataset was not valid on every rank and was discarded.
	ErrInvalid = errors.New("scr: dataset invalid")
	// ErrMismatch: ranks passed different arguments to a collective call.
	ErrMismatch = errors.New("scr: ranks disagree on arguments")
	// ErrNoCheckpoint: no checkpoint is available to restart from.
	ErrNoCheckpoint = errors.New("scr: no checkpoint to restart from")
	// ErrNotFound: a dataset name is unknown.
	ErrNotFound = errors.New("scr: no such dataset")
	// ErrConfig: a parameter has a bad value.
	ErrConfig = errors.New("scr: bad configuration")
	// ErrFlush: copying a dataset to the prefix failed. The dataset itself
	// is complete and stays in the cache (Complete succeeded in every
	// other respect); the flush is tried again at Finalize, and scr_postrun
	// can scavenge it.
	ErrFlush = errors.New("scr: flush to the prefix failed")
	// ErrHalted: SCR_HALT_EXIT=1 and a halt condition holds (scr_halt, the
	// time limit, no checkpoints left), checked at Init and after each
	// checkpoint. The handle finished its flushes and is closed (as after
	// Finalize, but the halt file keeps the halt reason); the application
	// should exit now with status 0. SCR's library exits by itself; the Go
	// API leaves that to the program (the C API does it, see doc/capi.md).
	ErrHalted = errors.New("scr: halted (SCR_HALT_EXIT=1)")
	// ErrOtherRanks: the call failed on other ranks, whose own errors say
	// why; this rank's part went well. A program printing errors can print
	// these on one rank only.
	ErrOtherRanks = errors.New("scr: failed on other ranks")
	// ErrName: a dataset name is unusable (empty after the default, too
	// long, not UTF-8, or with a control character such as a newline).
	ErrName = errors.New("scr: bad dataset name")
)

// HaltError says which halt condition stopped the job under SCR_HALT_EXIT.
type HaltError struct {
	Reason string // e.g. "NO_CHECKPOINTS_LEFT", or the reason given to scr_halt
	When   string // "Init" or "Complete"
}

func (e *HaltError) Error() string {
	return fmt.Sprintf("scr: %s: halt condition %s holds and SCR_HALT_EXIT=1: exit now", e.When, e.Reason)
}

func (e *HaltError) Unwrap() error { return ErrHalted }

// RanksError says that a collective call failed on other ranks. It carries
// the first failing rank's message: with a launcher that kills the job on
// the first exit (srun -K, scr_launch), the rank that knew the cause may
// never print it.
type RanksError struct {
	What  string // the step that failed
	Ranks int64  // how many ranks failed
	First int    // the lowest failing rank
	Host  string // its node
	Cause string // its error message ("" if unknown)
}

func (e *RanksError) Error() string {
	if e.Cause == "" {
		return fmt.Sprintf("scr: %s failed on %d rank(s); see their errors", e.What, e.Ranks)
	}
	who := fmt.Sprintf("rank %d", e.First)
	if e.Host != "" {
		who += " on " + e.Host
	}
	return fmt.Sprintf("scr: %s failed on %d rank(s); %s: %s", e.What, e.Ranks, who, e.Cause)
}

func (e *RanksError) Unwrap() error { return ErrOtherRanks }

// StateError says which call was made in which state.
type StateError struct {
	Call  string // e.g. "Complete"
	State string // e.g. "idle"
	Hint  string // what to call first
}

func (e *StateError) Error() string {
	s := fmt.Sprintf("scr: %s called in state %s", e.Call, e.State)
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

func (e *StateError) Unwrap() error { return ErrState }

// PathError says which routed file was rejected and why.
type PathError struct {
	Rank   int
	Path   string
	Prefix string
	Reason string
}

func (e *PathError) Error() string {
	return fmt.Sprintf("scr: rank %d: file %q: %s (prefix %s)", e.Rank, e.Path, e.Reason, e.Prefix)
}

func (e *PathError) Unwrap() error { return ErrPath }

// DuplicateError says which file was registered by which ranks in a
// dataset that keeps its files in the cache. A file written by several
// ranks (a shared file: MPI-IO, HDF5) needs bypass mode.
type DuplicateError struct {
	Dataset string
	Path    string // path relative to the prefix
	Ranks   []int
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("scr: dataset %s: file %s routed by ranks %v: in the cache every file of a dataset needs one writer and a unique name; "+
		"a file shared by several ranks needs bypass mode (SCR_CACHE_BYPASS=1, or BYPASS=1 on the dataset's CKPT descriptor)", e.Dataset, e.Path, e.Ranks)
}

func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// InvalidError says why a dataset was discarded at Complete.
type InvalidError struct {
	Dataset string
	Ranks   []int    // ranks that reported invalid (capped)
	Reasons []string // one per rank where known (capped)
	Dup     *DuplicateError
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scr: dataset %s discarded", e.Dataset)
	if len(e.Ranks) > 0 {
		fmt.Fprintf(&b, ": invalid on ranks %v", e.Ranks)
	}
	for _, r := range e.Reasons {
		b.WriteString("; " + r)
	}
	if e.Dup != nil {
		b.WriteString("; " + e.Dup.Error())
	}
	return b.String()
}

func (e *InvalidError) Unwrap() []error {
	if e.Dup != nil {
		return []error{ErrInvalid, e.Dup}
	}
	return []error{ErrInvalid}
}

// MismatchError says which argument differed between ranks.
type MismatchError struct {
	Call   string
	Rank   int    // a rank whose value differed from rank 0's
	Detail string // what differed
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("scr: %s: rank %d passed other arguments than rank 0 (%s); collective calls need identical arguments", e.Call, e.Rank, e.Detail)
}

func (e *MismatchError) Unwrap() error { return ErrMismatch }

// ConfigError names the parameter with a bad value.
type ConfigError struct {
	Key, Value, Want string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("scr: parameter %s=%q: want %s", e.Key, e.Value, e.Want)
}

func (e *ConfigError) Unwrap() error { return ErrConfig }

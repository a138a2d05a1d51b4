// Package haltcmd is the logic of the scr_halt command: set, unset, list or
// remove the halt conditions of one or more prefix directories.
// cmd/scr_halt parses flags into Options and calls Run.
package haltcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/prefix"
)

// ErrUsage is wrapped by errors in the options (exit status 2).
var ErrUsage = errors.New("usage")

// Options is one scr_halt invocation. Nil pointers leave a field as it is.
type Options struct {
	Dirs        []string // prefix directories; none = SCR_PREFIX, else the working directory
	Env         config.Lookup
	Checkpoints *int64 // -c: halt after this many more checkpoints
	Before      *int64 // -b: halt before this unix time (minus HaltSeconds)
	After       *int64 // -a: halt after this unix time
	Seconds     *int64 // -s: halt when this many seconds are left in the allocation
	Reason      string // reason to set when no condition is given (default JOB_HALTED)

	UnsetCheckpoints, UnsetBefore, UnsetAfter, UnsetSeconds bool
	UnsetReason                                             bool // also clears Immediate

	Remove    bool // -r: delete the halt file
	List      bool // -l: show the halt state (after any change)
	Immediate bool // -i: halt now and have scr_run kill the running step
	Verbose   bool // -v: show the halt state after a change
	JSON      bool
	Now       func() time.Time
}

// setsCondition reports whether the options change anything other than the
// reason; with none, scr_halt sets the reason (halt after the next
// checkpoint), as SCR does.
func (o *Options) setsCondition() bool {
	return o.Checkpoints != nil || o.Before != nil || o.After != nil || o.Seconds != nil ||
		o.UnsetCheckpoints || o.UnsetBefore || o.UnsetAfter || o.UnsetSeconds || o.UnsetReason || o.Remove
}

// State is the --json report for one prefix.
type State struct {
	Prefix string       `json:"prefix"`
	Exists bool         `json:"exists"`
	Halt   *prefix.Halt `json:"halt,omitempty"`
	// HaltNow tells whether scr_run would stop now (SCR_END_TIME and
	// SCR_HALT_SECONDS from the environment are taken into account).
	HaltNow bool   `json:"halt_now"`
	Reason  string `json:"reason,omitempty"`
	Removed bool   `json:"removed,omitempty"`
}

// Run applies the options to every prefix directory and reports to out.
// It keeps going after a failing directory and returns all errors joined.
func Run(ctx context.Context, o Options, out io.Writer) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Checkpoints != nil && *o.Checkpoints < 0 {
		return fmt.Errorf("%w: --checkpoints must be 0 or more", ErrUsage)
	}
	if o.Seconds != nil && *o.Seconds < 0 {
		return fmt.Errorf("%w: --seconds must be 0 or more", ErrUsage)
	}
	if o.Remove && (o.setsConditionExceptRemove() || o.Immediate) {
		return fmt.Errorf("%w: --remove cannot be combined with settings", ErrUsage)
	}
	cfg, err := config.Load(config.Options{Env: o.Env})
	if err != nil {
		return err
	}
	if len(o.Dirs) == 0 {
		o.Dirs = []string{cfg.PrefixDir()}
	}
	var end time.Time
	if v, err := cfg.Int("SCR_END_TIME"); err != nil {
		return err
	} else if v > 0 {
		end = time.Unix(v, 0)
	}
	haltSecs, err := cfg.Int("SCR_HALT_SECONDS")
	if err != nil {
		return err
	}
	var errs []error
	var states []State
	for _, dir := range o.Dirs {
		st, err := one(ctx, o, dir, end, haltSecs)
		if err != nil {
			errs = append(errs, fmt.Errorf("prefix %s: %w", dir, err))
			continue
		}
		states = append(states, st)
		switch {
		case o.JSON:
		case o.List || o.Verbose:
			if err := printState(out, st); err != nil {
				errs = append(errs, err)
			}
		case st.Removed:
			fmt.Fprintf(out, "%s: halt file removed\n", dir)
		default:
			fmt.Fprintf(out, "%s: halt file updated (scr_halt -l shows it)\n", dir)
		}
	}
	if o.JSON {
		if states == nil {
			states = []State{}
		}
		if err := json.NewEncoder(out).Encode(states); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *Options) setsConditionExceptRemove() bool {
	c := *o
	c.Remove = false
	return c.setsCondition()
}

func one(ctx context.Context, o Options, dir string, end time.Time, haltSecs int64) (State, error) {
	st := State{Prefix: dir}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return st, fmt.Errorf("not an existing directory (check the path; scr_halt does not create prefixes)")
	}
	if o.Remove {
		if err := prefix.RemoveHalt(ctx, dir); err != nil {
			return st, err
		}
		st.Removed = true
		return st, nil
	}
	var h *prefix.Halt
	if readOnly := o.List && !o.setsCondition() && !o.Immediate; readOnly {
		var err error
		if h, st.Exists, err = prefix.ReadHalt(dir); err != nil {
			return st, err
		}
	} else {
		var err error
		h, err = prefix.UpdateHalt(ctx, dir, func(h *prefix.Halt, _ bool) error {
			apply(o, h)
			return nil
		})
		if err != nil {
			return st, err
		}
		st.Exists = true
	}
	if st.Exists {
		st.Halt = h
	}
	d := h.HaltCheck(o.Now(), end, haltSecs, false)
	st.HaltNow, st.Reason = d.Halt, d.Reason
	return st, nil
}

func apply(o Options, h *prefix.Halt) {
	if o.UnsetCheckpoints {
		h.CheckpointsLeft = nil
	}
	if o.UnsetBefore {
		h.ExitBefore = nil
	}
	if o.UnsetAfter {
		h.ExitAfter = nil
	}
	if o.UnsetSeconds {
		h.HaltSeconds = nil
	}
	if o.UnsetReason {
		h.ExitReason = ""
		h.Immediate = false
	}
	if o.Checkpoints != nil {
		h.CheckpointsLeft = prefix.Int64(*o.Checkpoints)
	}
	if o.Before != nil {
		h.ExitBefore = prefix.Int64(*o.Before)
	}
	if o.After != nil {
		h.ExitAfter = prefix.Int64(*o.After)
	}
	if o.Seconds != nil {
		h.HaltSeconds = prefix.Int64(*o.Seconds)
	}
	reason := o.Reason
	if reason == "" {
		reason = prefix.ReasonJobHalted
	}
	if !o.setsCondition() || o.Immediate || o.Reason != "" {
		if h.ExitReason == "" || h.ExitReason == prefix.ReasonFinalizeCalled || o.Reason != "" {
			h.ExitReason = reason
		}
	}
	if o.Immediate {
		h.Immediate = true
	}
}

func printState(out io.Writer, st State) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n", st.Prefix)
	switch {
	case st.Removed:
		b.WriteString("  halt file removed\n")
	case !st.Exists:
		b.WriteString("  no halt file\n")
	default:
		h := st.Halt
		field := func(name string, v *int64, asTime bool) {
			if v == nil {
				return
			}
			if asTime {
				fmt.Fprintf(&b, "  %-16s %s (%d)\n", name+":", time.Unix(*v, 0).Local().Format("2006-01-02T15:04:05"), *v)
			} else {
				fmt.Fprintf(&b, "  %-16s %d\n", name+":", *v)
			}
		}
		if h.ExitReason != "" {
			fmt.Fprintf(&b, "  %-16s %s\n", "ExitReason:", h.ExitReason)
		}
		field("CheckpointsLeft", h.CheckpointsLeft, false)
		field("ExitBefore", h.ExitBefore, true)
		field("ExitAfter", h.ExitAfter, true)
		field("HaltSeconds", h.HaltSeconds, false)
		if h.Immediate {
			fmt.Fprintf(&b, "  %-16s yes\n", "Immediate:")
		}
	}
	if !st.Removed {
		if st.HaltNow {
			fmt.Fprintf(&b, "  halt now: yes (%s)\n", st.Reason)
		} else {
			b.WriteString("  halt now: no\n")
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// ParseTime parses a --before/--after time: YYYY-MM-DDTHH:MM[:SS] or
// "YYYY-MM-DD HH:MM[:SS]" in local time, RFC 3339 with a zone, HH:MM[:SS]
// today (local), @UNIXSECONDS, or +DURATION from now (+2h, +90m, +3600).
func ParseTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "@"); ok {
		v, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: time %q: @ must be followed by unix seconds", ErrUsage, s)
		}
		return v, nil
	}
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		d, err := config.ParseDuration(rest)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%w: time %q: + must be followed by a duration like 2h or 3600", ErrUsage, s)
		}
		return now.Add(d).Unix(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Unix(), nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			return t.Unix(), nil
		}
	}
	for _, layout := range []string{"15:04:05", "15:04"} {
		if t, err := time.ParseInLocation(layout, s, now.Location()); err == nil {
			y, m, d := now.Date()
			return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, now.Location()).Unix(), nil
		}
	}
	return 0, fmt.Errorf("%w: time %q: use YYYY-MM-DDTHH:MM:SS (local), RFC 3339, HH:MM, @UNIX or +DURATION", ErrUsage, s)
}

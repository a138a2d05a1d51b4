// Package indexcmd is the logic of the scr_index command: list and edit the
// dataset index of a prefix, and build index entries for scavenged
// datasets. cmd/scr_index parses flags into Options and calls Run.
package indexcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/flush"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/redundancy"
)

// Action is what scr_index does.
type Action string

const (
	List      Action = "list"
	Current   Action = "current"
	Drop      Action = "drop"
	DropAfter Action = "drop-after"
	Add       Action = "add"
	Build     Action = "build"
)

// ErrUsage is wrapped by errors in the options (exit status 2).
var ErrUsage = errors.New("usage")

// Options is one scr_index invocation.
type Options struct {
	Prefix string        // prefix directory; "" = SCR_PREFIX, else the working directory
	Env    config.Lookup // environment; nil = the process's
	Action Action        // "" = List
	Name   string        // dataset name for Current, Drop, DropAfter, Add
	ID     int64         // dataset id for Build
	JSON   bool          // machine-readable output
	Now    func() time.Time
	// Rebuild regenerates missing files from scavenged redundancy data for
	// Build (scr_index uses flush.ScavengeRebuilder); nil = only check.
	// When it reports that the loss is beyond the redundancy (errors.Is
	// redundancy.ErrUnrecoverable or flush.ErrNoRedundancy), Build still
	// records the dataset, incomplete, and fails with prefix.ErrIncomplete.
	Rebuild prefix.Rebuilder
}

// Run performs the action and writes its report to out.
func Run(ctx context.Context, o Options, out io.Writer) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Prefix == "" {
		c, err := config.Load(config.Options{Env: o.Env, NoAppFile: true})
		if err != nil {
			return err
		}
		o.Prefix = c.PrefixDir()
	}
	// A prefix that does not exist has no datasets to list or edit: most
	// likely a typo, which an empty listing would hide.
	if st, err := os.Stat(o.Prefix); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return fmt.Errorf("prefix %s: %w", o.Prefix, err)
	}
	switch o.Action {
	case "", List:
		return list(o, out)
	case Current, Drop, DropAfter, Add:
		if o.Name == "" {
			return fmt.Errorf("%w: --%s needs a dataset name", ErrUsage, o.Action)
		}
	case Build:
		if o.ID <= 0 {
			return fmt.Errorf("%w: --build needs a dataset id > 0", ErrUsage)
		}
	default:
		return fmt.Errorf("%w: unknown action %q", ErrUsage, o.Action)
	}
	res := result{Action: string(o.Action), Prefix: o.Prefix, Name: o.Name}
	var err error
	switch o.Action {
	case Current:
		err = prefix.UpdateIndex(ctx, o.Prefix, func(x *prefix.Index) error { return x.SetCurrent(o.Name) })
		res.Message = "current checkpoint is now " + o.Name
	case Drop:
		err = prefix.UpdateIndex(ctx, o.Prefix, func(x *prefix.Index) error { return x.Drop(o.Name) })
		res.Message = "dropped " + o.Name + " from the index (its files stay in the prefix)"
	case DropAfter:
		err = prefix.UpdateIndex(ctx, o.Prefix, func(x *prefix.Index) error {
			var derr error
			res.Dropped, derr = x.DropAfter(o.Name)
			return derr
		})
		res.Message = fmt.Sprintf("dropped %d entries newer than %s", len(res.Dropped), o.Name)
	case Add:
		var s *prefix.Summary
		s, err = prefix.AddDataset(ctx, o.Prefix, o.Name, o.Now())
		if err == nil {
			res.ID, res.Complete = s.Dataset.ID, s.Complete
			res.Message = fmt.Sprintf("added dataset %d %s (complete: %v)", s.Dataset.ID, o.Name, yesNo(s.Complete))
		}
	case Build:
		var chk *prefix.DatasetCheck
		chk, err = prefix.BuildDataset(ctx, o.Prefix, o.ID, o.Rebuild, o.Now())
		var rerr error
		if err != nil && (errors.Is(err, redundancy.ErrUnrecoverable) || errors.Is(err, flush.ErrNoRedundancy)) {
			// The missing files cannot be regenerated: still (re)create
			// the index entry, incomplete, and say why.
			rerr = err
			chk, err = prefix.BuildDataset(ctx, o.Prefix, o.ID, nil, o.Now())
		}
		res.ID = o.ID
		if chk != nil {
			res.Name, res.Complete, res.Files, res.Missing = chk.Summary.Dataset.Name, chk.Complete(), chk.Files, chk.Missing
			res.Message = fmt.Sprintf("dataset %d %s: %d files, %d missing", o.ID, res.Name, chk.Files, len(chk.Missing))
		}
		if err == nil && !chk.Complete() {
			err = fmt.Errorf("dataset %d is incomplete: %d of %d files missing or damaged (first: rank %d %s: %s): %w",
				o.ID, len(chk.Missing), chk.Files, chk.Missing[0].Rank, chk.Missing[0].Path, chk.Missing[0].Reason, prefix.ErrIncomplete)
			if rerr != nil {
				err = fmt.Errorf("%w; %v", err, rerr)
			}
		}
	}
	if err != nil && o.Action != Build {
		return fmt.Errorf("prefix %s: %w", o.Prefix, err)
	}
	if res.Message != "" {
		if werr := report(o, out, res); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

type result struct {
	Action   string           `json:"action"`
	Prefix   string           `json:"prefix"`
	Name     string           `json:"name,omitempty"`
	ID       int64            `json:"id,omitempty"`
	Complete bool             `json:"complete,omitempty"`
	Files    int64            `json:"files,omitempty"`
	Missing  []prefix.Missing `json:"missing,omitempty"`
	Dropped  []int64          `json:"dropped,omitempty"`
	Message  string           `json:"message"`
}

func report(o Options, out io.Writer, r result) error {
	if o.JSON {
		return json.NewEncoder(out).Encode(r)
	}
	_, err := fmt.Fprintln(out, r.Message)
	if err == nil {
		for i, m := range r.Missing {
			if i == 20 {
				_, err = fmt.Fprintf(out, "  ... and %d more\n", len(r.Missing)-20)
				break
			}
			if _, err = fmt.Fprintf(out, "  rank %d: %s: %s\n", m.Rank, m.Path, m.Reason); err != nil {
				break
			}
		}
	}
	return err
}

// ListEntry is one dataset in the --json list.
type ListEntry struct {
	ID         int64       `json:"id"`
	Name       string      `json:"name"`
	Checkpoint bool        `json:"checkpoint"`
	Output     bool        `json:"output"`
	Complete   bool        `json:"complete"`
	Valid      bool        `json:"valid"` // complete and not failed: a restart may pick it
	Failed     *time.Time  `json:"failed,omitempty"`
	Flushed    *time.Time  `json:"flushed,omitempty"`
	Fetched    []time.Time `json:"fetched,omitempty"`
	Current    bool        `json:"current"`
}

// ListOutput is the --json form of the list.
type ListOutput struct {
	Prefix   string      `json:"prefix"`
	Current  string      `json:"current,omitempty"`
	Datasets []ListEntry `json:"datasets"` // newest first
}

func list(o Options, out io.Writer) error {
	x, err := prefix.ReadIndex(o.Prefix)
	if err != nil {
		return err
	}
	lo := ListOutput{Prefix: o.Prefix, Current: x.Current, Datasets: []ListEntry{}}
	for _, e := range x.Entries() {
		le := ListEntry{ID: e.Dataset.ID, Name: e.Dataset.Name, Checkpoint: e.Dataset.Checkpoint, Output: e.Dataset.Output,
			Complete: e.Complete, Valid: e.Valid(), Fetched: e.Fetched, Current: x.Current != "" && x.Current == e.Dataset.Name}
		if !e.Failed.IsZero() {
			t := e.Failed
			le.Failed = &t
		}
		if !e.Flushed.IsZero() {
			t := e.Flushed
			le.Flushed = &t
		}
		lo.Datasets = append(lo.Datasets, le)
	}
	if o.JSON {
		return json.NewEncoder(out).Encode(lo)
	}
	if len(lo.Datasets) == 0 {
		_, err := fmt.Fprintf(out, "no datasets in the index of %s\n", o.Prefix)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DSET\tKIND\tVALID\tFAILED\tFLUSHED\tFETCHES\tLAST FETCH\tCUR\tNAME")
	for _, e := range lo.Datasets {
		kind := "OUTPUT"
		switch {
		case e.Checkpoint && e.Output:
			kind = "CKPT+OUT"
		case e.Checkpoint:
			kind = "CKPT"
		}
		last := "-"
		if n := len(e.Fetched); n > 0 {
			last = stamp(e.Fetched[n-1])
		}
		cur := ""
		if e.Current {
			cur = "*"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, kind, yesNo(e.Valid), yesNo(e.Failed != nil),
			stampPtr(e.Flushed), len(e.Fetched), last, cur, printable(e.Name))
	}
	return tw.Flush()
}

// printable is a dataset name as one line of a listing: a name with a
// control character (a damaged or hand-edited index; the library refuses
// such names) is quoted, so it cannot forge lines or columns.
func printable(name string) string {
	if prefix.CheckName(name) != nil || strings.ContainsAny(name, "\t") {
		q := strconv.Quote(name)
		if len(q) > 2*prefix.MaxNameLen {
			q = q[:2*prefix.MaxNameLen] + "..."
		}
		return q
	}
	return name
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}

// stamp formats a time as SCR does: local YYYY-MM-DDTHH:MM:SS.
func stamp(t time.Time) string { return t.Local().Format("2006-01-02T15:04:05") }

func stampPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return stamp(*t)
}

// ParseID parses a dataset id argument.
func ParseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: dataset id %q is not a positive integer", ErrUsage, s)
	}
	return id, nil
}

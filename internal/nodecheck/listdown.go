package nodecheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
)

// ListOptions is what scr_list_down_nodes asks for.
type ListOptions struct {
	Nodes  string // host list to check; "" = SCR_NODELIST, else the resource manager's
	Down   string // host list named as down (--down)
	Free   bool   // storage: check free rather than total capacity
	Log    bool   // append node_down events to the prefix's timeline
	Secs   string // job run time, recorded with the events (--secs)
	Dirs   []Dir  // storage check directories; nil = each node's own bases
	Self   string // path of scr_list_down_nodes, run on nodes for the storage check ("" = no storage check)
	Env    rm.Env // default os.LookupEnv
	Run    rm.Runner
	Checks []string // nil = SCR_NODE_TESTS, else DefaultChecks
	Options
}

// Listing is the answer of Run.
type Listing struct {
	Nodes    []string          // nodes checked
	Down     map[string]string // node -> reason
	Manager  string            // resource manager used ("" = none)
	RMErr    error             // the resource manager did not answer (checks went on)
	LogErr   error             // --log failed (the listing itself stands)
	Duration time.Duration
}

// UsageError is a mistake in the command's input (exit 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Run is scr_list_down_nodes: find the nodes, check them, decide, log.
// It returns ErrNoNodes (wrapped) when there is nothing to check, and a
// *UsageError for bad host lists or parameters.
func Run(ctx context.Context, o ListOptions) (Listing, error) {
	start := time.Now()
	env := o.Env
	if env == nil {
		env = os.LookupEnv
	}
	var out Listing
	parse := func(what, list string) ([]string, error) {
		h, err := hostlist.Expand(list)
		if err != nil {
			return nil, &UsageError{Msg: fmt.Sprintf("%s: %v", what, err)}
		}
		return hostlist.Dedupe(h), nil
	}
	// Checking nodes needs no prefix (SCR's does not either): without
	// SCR_PREFIX and a working directory only --log is impossible.
	cfg, err := config.Load(config.Options{Env: config.Lookup(env), PrefixOptional: true})
	if err != nil {
		return out, &UsageError{Msg: fmt.Sprintf("configuration: %v", err)}
	}
	param := func(name string) string { v, _ := cfg.String(name); return v }
	nodes, err := parse("node list", o.Nodes)
	if err != nil {
		return out, err
	}
	if len(nodes) == 0 {
		if nodes, err = parse("SCR_NODELIST", param("SCR_NODELIST")); err != nil {
			return out, err
		}
	}
	down, err := parse("--down", o.Down)
	if err != nil {
		return out, err
	}
	excl, err := parse("SCR_EXCLUDE_NODES", param("SCR_EXCLUDE_NODES"))
	if err != nil {
		return out, err
	}
	checks := o.Checks
	if checks == nil {
		if s := strings.TrimSpace(param("SCR_NODE_TESTS")); s != "" {
			for _, c := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
				switch c {
				case CheckPing, CheckEcho, CheckDirCapacity:
					checks = append(checks, c)
				default:
					return out, &UsageError{Msg: fmt.Sprintf("SCR_NODE_TESTS: unknown test %q (known: ping, echo, dir_capacity)", c)}
				}
			}
		}
	}
	dirs := o.Dirs
	if dirs == nil {
		if dirs, err = configDirs(cfg); err != nil {
			return out, err
		}
	}

	mgr, err := rm.Detect(ctx, rm.Config{Env: env, Run: o.Run})
	switch {
	case errors.Is(err, rm.ErrNoManager):
		mgr = nil
		if len(nodes) == 0 {
			return out, fmt.Errorf("%w (%v)", ErrNoNodes, err)
		}
	case err != nil:
		return out, &UsageError{Msg: err.Error()}
	}
	if mgr != nil {
		out.Manager = mgr.Name()
	}

	opts := o.Options
	opts.Checks = checks
	if mgr == nil && opts.Transport == nil {
		opts.Transport = remote.SSH{} // no resource manager: reach the nodes as pdsh -Rssh would
	}
	if o.Self != "" && opts.StorageArgv == nil {
		opts.StorageArgv = append([]string{o.Self}, StorageArgs(dirs, o.Free)...)
	}
	rep, err := Check(ctx, Request{Nodes: nodes, Specified: down, Excluded: excl, Manager: mgr, Options: opts})
	if err != nil {
		return out, err
	}
	out.Nodes, out.Down, out.RMErr = rep.Nodes, rep.Down, rep.RMErr
	if o.Log && len(out.Down) > 0 {
		if cfg.PrefixDir() == "" {
			out.LogErr = errors.New("no prefix to log to: set SCR_PREFIX (the working directory cannot be determined)")
		} else {
			out.LogErr = logDown(cfg.PrefixDir(), env, out.Down, o.Secs)
		}
	}
	out.Duration = time.Since(start)
	return out, nil
}

// configDirs reads the storage test's directories and sizes from the
// configuration: CNTLDIR=<dir> BYTES=<n> and CACHEDIR=<dir> BYTES=<n>
// entries (nil when there are none: each node's bases are checked).
func configDirs(cfg *config.Config) ([]Dir, error) {
	var dirs []Dir
	for _, kind := range []struct{ key, kind string }{{"CNTLDIR", "cntl"}, {"CACHEDIR", "cache"}} {
		for _, e := range cfg.Entries(kind.key) {
			d := Dir{Kind: kind.kind, Path: e.Value}
			if b, ok := e.Child("BYTES"); ok {
				n, err := ParseBytes(b)
				if err != nil {
					return nil, &UsageError{Msg: fmt.Sprintf("%s=%s BYTES=%s (%s): %v", kind.key, e.Value, b, e.Origin, err)}
				}
				d.Bytes = n
			}
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// logDown appends one node_down event per down node to the timeline of
// the prefix dir.
func logDown(dir string, env rm.Env, down map[string]string, secs string) error {
	run, _ := strconv.Atoi(env.Get("SCR_RUN_ID"))
	var errs []error
	for _, n := range Sorted(down) {
		f := map[string]any{"node": n, "reason": down[n]}
		if secs != "" {
			f["secs"] = secs
		}
		if err := prefix.AppendTimeline(dir, prefix.Event{Source: "scr_run", Event: "node_down", Run: run, Fields: f}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// FormatText is the plain output: one compressed host list (an empty line
// when none is down), or with reasons one "node: reason" line per node,
// sorted.
func FormatText(down map[string]string, reasons bool) string {
	nodes := Sorted(down)
	if !reasons {
		return hostlist.Compress(nodes) + "\n"
	}
	var b strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s: %s\n", n, down[n])
	}
	return b.String()
}

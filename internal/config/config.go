package config

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// DefaultSystemFile is the system config file used when SCR_CONFIG_FILE is
// not set.
const DefaultSystemFile = "/etc/scr/scr.conf"

// Options says where Load finds its inputs. The zero value reads the real
// environment, the working directory and the default system file.
type Options struct {
	// Env looks up environment variables; nil means os.LookupEnv.
	Env Lookup
	// Dir is the directory used as prefix when SCR_PREFIX is not set in the
	// environment; "" means the working directory.
	Dir string
	// SystemFile overrides SCR_CONFIG_FILE and DefaultSystemFile.
	SystemFile string
	// NoAppFile skips <prefix>/.scr/app.conf. The library sets it: its API
	// values come from Set in this run, not from a previous run's file.
	NoAppFile bool
	// PrefixOptional is for commands that do not need a prefix
	// (scr_list_down_nodes): when SCR_PREFIX is unset and the working
	// directory cannot be determined, Load goes on without a prefix
	// (PrefixDir returns ""), so only $SCR_CONF_FILE, the system file and
	// the environment are read.
	PrefixOptional bool
}

// Config holds the layers of configuration of one rank or one command, in
// SCR's precedence: environment > user file > API (Set / app.conf) >
// system file > defaults. It is not safe for concurrent use; each rank has
// its own.
type Config struct {
	env        Lookup
	opts       Options
	prefixDir  string // where the user file and app.conf were looked for
	userFile   string
	user       []Entry
	appFile    string
	app        []Entry // from app.conf, then Set calls in order
	systemFile string
	system     []Entry

	// Warnings: per file (reset when the file is read again), and those
	// found while resolving values, each once.
	userWarns, appWarns, systemWarns []string
	warns                            []string
	warned                           map[string]bool
}

// warn records a warning once.
func (c *Config) warn(msg string) {
	if c.warned == nil {
		c.warned = map[string]bool{}
	}
	if !c.warned[msg] {
		c.warned[msg] = true
		c.warns = append(c.warns, msg)
	}
}

// envValue reads name from the environment, expanded as SCR expands
// environment values ($VAR, ${VAR}; an unset variable becomes "" with a
// warning). An empty variable counts as unset.
func (c *Config) envValue(name string) (string, bool) {
	v, ok := c.env(name)
	if !ok || v == "" {
		return "", false
	}
	x, unset := expandEnv(v, c.env)
	for _, u := range unset {
		c.warn(fmt.Sprintf("config: environment: %s=%q uses $%s, which is not set: it expands to nothing, as in SCR", name, v, u))
	}
	return x, true
}

// Load reads the configuration files. A missing user, system or app file is
// no error; an unreadable or malformed one is, naming the file and line.
func Load(opts Options) (*Config, error) {
	c := &Config{env: opts.Env, opts: opts}
	if c.env == nil {
		c.env = os.LookupEnv
	}
	if err := c.locatePrefix(); err != nil {
		return nil, err
	}
	c.systemFile = opts.SystemFile
	if c.systemFile == "" {
		if v, ok := c.env("SCR_CONFIG_FILE"); ok && v != "" {
			c.systemFile = v
		} else {
			c.systemFile = DefaultSystemFile
		}
	}
	var err error
	if c.system, c.systemWarns, err = readFile(c.systemFile, SourceSystemFile, c.env); err != nil {
		return nil, err
	}
	if err := c.loadUser(); err != nil {
		return nil, err
	}
	if !opts.NoAppFile && c.prefixDir != "" {
		c.appFile = prefix.AppConfPath(c.prefixDir)
		b, ok, err := prefix.ReadAppConf(c.prefixDir)
		if err != nil {
			return nil, err
		}
		if ok {
			if c.app, c.appWarns, err = Parse(bytes.NewReader(b), c.appFile, SourceApp, c.env); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// locatePrefix finds the prefix used to locate .scrconf and app.conf:
// SCR_PREFIX from the environment, else a value set through the API, else
// Options.Dir, else the working directory.
func (c *Config) locatePrefix() error {
	if err := c.findPrefix(); err != nil {
		return err
	}
	if c.prefixDir == "" {
		return nil // PrefixOptional and no working directory
	}
	// Ranks and commands may run in different directories: make it absolute.
	abs, err := filepath.Abs(c.prefixDir)
	if err != nil {
		return fmt.Errorf("config: prefix %q: %w", c.prefixDir, err)
	}
	c.prefixDir = abs
	return nil
}

func (c *Config) findPrefix() error {
	if p, ok := c.envValue("SCR_PREFIX"); ok {
		c.prefixDir = p
		return nil
	}
	if v, _, ok := c.lookupEntries(c.app, "SCR_PREFIX"); ok {
		c.prefixDir = v
		return nil
	}
	if c.opts.Dir != "" {
		c.prefixDir = c.opts.Dir
		return nil
	}
	wd, err := os.Getwd()
	if err != nil {
		if c.opts.PrefixOptional {
			c.prefixDir = ""
			return nil
		}
		return fmt.Errorf("config: no SCR_PREFIX and cannot get the working directory (set SCR_PREFIX): %w", err)
	}
	c.prefixDir = wd
	return nil
}

func (c *Config) loadUser() error {
	c.userFile = ""
	if c.prefixDir != "" {
		c.userFile = filepath.Join(c.prefixDir, ".scrconf")
	}
	if v, ok := c.envValue("SCR_CONF_FILE"); ok {
		c.userFile = v
	} else if v, _, ok := c.lookupEntries(c.app, "SCR_CONF_FILE"); ok {
		c.userFile = v
	}
	c.user, c.userWarns = nil, nil
	if c.userFile == "" {
		return nil
	}
	var err error
	c.user, c.userWarns, err = readFile(c.userFile, SourceUserFile, c.env)
	return err
}

func readFile(path string, kind SourceKind, env Lookup) ([]Entry, []string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("config: open %s: %w", path, err)
	}
	defer f.Close()
	return Parse(f, path, kind, env)
}

// PrefixDir is the prefix directory the configuration was located from
// (SCR_PREFIX in the environment, else Options.Dir, else the working dir);
// "" only with Options.PrefixOptional when none could be found.
func (c *Config) PrefixDir() string { return c.prefixDir }

// UserFile and SystemFile are the paths looked at (they may not exist).
func (c *Config) UserFile() string   { return c.userFile }
func (c *Config) SystemFile() string { return c.systemFile }

// Value is a parameter's raw value and where it came from.
type Value struct {
	Raw    string
	Origin Origin
}

// lookupEntries returns the value of key in one layer as SCR picks it: of
// the lines setting key, the one whose value appeared last for the first
// time (SCR files every value of a key and reads the newest new one; so
// A=1, A=2 gives 2, and A=1, A=2, A=1 gives 2 too). Pairs after the first
// on a line (children) do not matter for a simple parameter.
func (c *Config) lookupEntries(es []Entry, key string) (string, Origin, bool) {
	var win *Entry
	seen := map[string]bool{}
	for i := range es {
		if es[i].Key != key || seen[es[i].Value] {
			continue
		}
		seen[es[i].Value] = true
		win = &es[i]
	}
	if win == nil {
		return "", Origin{}, false
	}
	return win.Value, win.Origin, true
}

// Get returns the value of a simple parameter in precedence order, and
// whether any layer (or a default) has it. Environment values are expanded
// as SCR expands them ($VAR, ${VAR}; an unset variable expands to nothing,
// with a warning). An empty environment variable counts as unset.
func (c *Config) Get(name string) (Value, bool, error) {
	name = strings.ToUpper(name)
	if x, ok := c.envValue(name); ok {
		return Value{x, Origin{Kind: SourceEnv}}, true, nil
	}
	for _, layer := range [][]Entry{c.user, c.app, c.system} {
		if v, o, ok := c.lookupEntries(layer, name); ok {
			return Value{v, o}, true, nil
		}
	}
	if d, ok := defaults[name]; ok && d != "" {
		return Value{d, Origin{Kind: SourceDefault}}, true, nil
	}
	return Value{}, false, nil
}

// String returns the value of name, or "" if unset anywhere.
func (c *Config) String(name string) (string, error) {
	v, _, err := c.Get(name)
	return v.Raw, err
}

// ParamError is a parameter whose value is wrong, with where it came from.
type ParamError struct {
	Name   string
	Value  string
	Origin Origin
	Reason string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("config: %s=%q (from %s): %s", e.Name, e.Value, e.Origin, e.Reason)
}

// typed reads name and converts it with conv; unset yields zero, false.
func typed[T any](c *Config, name string, conv func(string) (T, error)) (T, bool, error) {
	var zero T
	v, ok, err := c.Get(name)
	if err != nil || !ok {
		return zero, false, err
	}
	x, err := conv(v.Raw)
	if err != nil {
		return zero, true, &ParamError{Name: strings.ToUpper(name), Value: v.Raw, Origin: v.Origin, Reason: err.Error()}
	}
	return x, true, nil
}

// Int returns name as an integer (0 if unset).
func (c *Config) Int(name string) (int64, error) {
	x, _, err := typed(c, name, ParseInt)
	return x, err
}

// Bool returns name as a boolean (false if unset).
func (c *Config) Bool(name string) (bool, error) {
	x, _, err := typed(c, name, ParseBool)
	return x, err
}

// Float returns name as a float (0 if unset).
func (c *Config) Float(name string) (float64, error) {
	x, _, err := typed(c, name, ParseFloat)
	return x, err
}

// Bytes returns name as a byte count (0 if unset); see ParseBytes.
func (c *Config) Bytes(name string) (int64, error) {
	x, _, err := typed(c, name, ParseBytes)
	return x, err
}

// Duration returns name as a duration (0 if unset); see ParseDuration.
func (c *Config) Duration(name string) (time.Duration, error) {
	x, _, err := typed(c, name, ParseDuration)
	return x, err
}

// ParseInt accepts a decimal integer.
func ParseInt(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not an integer")
	}
	return n, nil
}

// ParseBool accepts an integer (0 is false, any other true: SCR reads its
// switches with atoi, so SCR_FLUSH_ASYNC=2 is on), and true/false,
// yes/no, on/off, y/n (any case).
func ParseBool(s string) (bool, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch t {
	case "true", "yes", "on", "y":
		return true, nil
	case "false", "no", "off", "n":
		return false, nil
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		return n != 0, nil
	}
	return false, fmt.Errorf("not a boolean (use 1 or 0)")
}

// ParseFloat accepts a decimal number; NaN and infinities are not numbers
// a parameter can hold (NaN passes every range check).
func ParseFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a number")
	}
	return f, nil
}

// ParseBytes accepts a byte count with an optional binary suffix, as SCR
// does: 4096, 64KB, 1MB, 1MiB, 2G, 1TB (K, M, G, T, P = powers of 1024).
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for i, suf := range []string{"K", "M", "G", "T", "P"} {
		m := int64(1) << (10 * (i + 1))
		for _, form := range []string{suf + "IB", suf + "B", suf} {
			if strings.HasSuffix(t, form) {
				t, mult = strings.TrimSpace(strings.TrimSuffix(t, form)), m
				goto num
			}
		}
	}
	t = strings.TrimSuffix(t, "B")
num:
	if t == "" {
		return 0, fmt.Errorf("not a byte count (like 1MiB or 4096)")
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a byte count (like 1MiB or 4096)")
	}
	v := f * float64(mult)
	if v > float64(1<<62) {
		return 0, fmt.Errorf("byte count too large")
	}
	return int64(v), nil
}

// ParseDuration accepts a number of seconds (possibly fractional, like SCR's
// *_SECONDS parameters) or a Go duration such as 1m30s or 500ms.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(t, 64); err == nil {
		if math.IsNaN(f) {
			return 0, fmt.Errorf("not a duration (seconds, or like 1m30s)")
		}
		if f > float64(1<<62)/1e9 || f < -float64(1<<62)/1e9 {
			return 0, fmt.Errorf("duration too large")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("not a duration (seconds, or like 1m30s)")
	}
	return d, nil
}

// Entries returns the descriptor entries for key (STORE, CKPT, GROUPS,
// CACHEDIR, CNTLDIR). They come from the highest-precedence layer that has
// any; within it, lines with the same parent value are merged (later
// children override earlier ones), in first-seen order.
func (c *Config) Entries(key string) []Entry {
	key = strings.ToUpper(key)
	for _, layer := range [][]Entry{c.user, c.app, c.system} {
		var out []Entry
		pos := map[string]int{}
		for _, e := range layer {
			if e.Key != key {
				continue
			}
			if !descriptorKeys[key] && len(e.Children) == 0 {
				continue
			}
			if i, ok := pos[e.Value]; ok {
				out[i].Children = append(out[i].Children, e.Children...)
				continue
			}
			pos[e.Value] = len(out)
			e.Children = append([]KV(nil), e.Children...)
			out = append(out, e)
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// Set applies an API configuration string (SCR_Config): "KEY=VALUE" sets,
// "KEY=" unsets a value set earlier through the API (never env or file
// values), and a multi-item string like "CKPT=0 TYPE=XOR SET_SIZE=16"
// merges children into that descriptor. Setting SCR_PREFIX or SCR_CONF_FILE
// reloads the user config file.
func (c *Config) Set(s string) error {
	if strings.ContainsAny(s, "\n\r") {
		return fmt.Errorf("config: Set(%q): a setting is one line", s)
	}
	if k, ok := strings.CutSuffix(strings.TrimSpace(s), "="); ok {
		if k = strings.TrimSpace(k); k != "" && !strings.ContainsAny(k, " \t=") {
			c.Unset(k)
			return nil
		}
	}
	kvs, warns, err := ParseLine(s, c.env)
	for _, w := range warns {
		c.warn(fmt.Sprintf("config: Set(%q): %s", s, w))
	}
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("config: Set(%q): column %d: %s", s, se.Col, se.Reason)
		}
		return fmt.Errorf("config: Set(%q): %w", s, err)
	}
	if len(kvs) == 0 {
		return fmt.Errorf("config: Set(%q): no KEY=VALUE given", s)
	}
	e := Entry{KV: kvs[0], Children: kvs[1:], Origin: Origin{Kind: SourceApp}}
	if len(e.Children) > 0 && !descriptorKeys[e.Key] {
		return fmt.Errorf("config: Set(%q): %s does not take sub-keys (only STORE, CKPT, GROUPS, CACHEDIR, CNTLDIR do)", s, e.Key)
	}
	c.app = append(c.app, e)
	if e.Key == "SCR_PREFIX" || e.Key == "SCR_CONF_FILE" {
		if err := c.locatePrefix(); err != nil {
			return err
		}
		return c.loadUser()
	}
	return nil
}

// Unset removes every value of key set through the API.
func (c *Config) Unset(key string) {
	key = strings.ToUpper(key)
	out := c.app[:0]
	for _, e := range c.app {
		if e.Key != key {
			out = append(out, e)
		}
	}
	c.app = out
}

// Query returns the value of a simple parameter ("SCR_FLUSH") or of a
// descriptor child ("CKPT=0 TYPE"), as SCR_Config("KEY") would, and whether
// something sets it (a default alone does not: the value is then the
// default and ok is false).
func (c *Config) Query(q string) (string, bool, error) {
	f := strings.Fields(q)
	switch {
	case len(f) == 1 && !strings.Contains(f[0], "="):
		v, ok, err := c.Get(f[0])
		// A default is the value, but nothing sets it (SCR_Config's
		// query answers NULL then).
		return v.Raw, ok && v.Origin.Kind != SourceDefault, err
	case len(f) == 2 && strings.Count(f[0], "=") == 1 && !strings.Contains(f[1], "="):
		k, val, _ := strings.Cut(f[0], "=")
		for _, e := range c.Entries(k) {
			if e.Value == val {
				v, ok := e.Child(strings.ToUpper(f[1]))
				return v, ok, nil
			}
		}
		return "", false, nil
	}
	return "", false, fmt.Errorf("config: query %q: want KEY or PARENT=VALUE CHILD", q)
}

// AppEntries returns the values set through the API (and app.conf).
func (c *Config) AppEntries() []Entry { return append([]Entry(nil), c.app...) }

// SaveApp writes the API-set values to <prefix>/.scr/app.conf so that the
// commands (scr_run, scr_postrun, scr_index) see them. An empty set removes
// nothing and writes an empty file.
func (c *Config) SaveApp() error {
	// One line per simple key (the last value wins), descriptors as set.
	last := map[string]int{}
	for i, e := range c.app {
		if !descriptorKeys[e.Key] {
			last[e.Key] = i
		}
	}
	var out []Entry
	for i, e := range c.app {
		if descriptorKeys[e.Key] || last[e.Key] == i {
			out = append(out, e)
		}
	}
	if err := prefix.WriteAppConf(c.prefixDir, []byte(Format(out))); err != nil {
		return fmt.Errorf("config: save API values: %w", err)
	}
	return nil
}

// Warnings lists what scr-go read but does not act on, each with where it
// came from, in the order found: unknown keys (likely typos), SCR parameters
// and values scr-go does not support, a parameter set twice in one file,
// pairs after a simple parameter on its line (SCR makes them sub-keys and
// ignores them), values SCR's parser reads differently from what they look
// like, and, once Settings ran, values it replaced (a flush type, a
// descriptor it disabled). None of them is an error: SCR goes on in each
// case, and so does scr-go; the library prints them at Init (rank 0) and
// scr_run at its start.
func (c *Config) Warnings() []string {
	var out []string
	seen := map[string]bool{}
	add := func(w string) {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	for _, ws := range [][]string{c.userWarns, c.appWarns, c.systemWarns} {
		for _, w := range ws {
			add(w)
		}
	}
	for _, layer := range [][]Entry{c.user, c.app, c.system} {
		first := map[string]Entry{}
		for _, e := range layer {
			_, known := defaults[e.Key]
			switch {
			case descriptorKeys[e.Key]:
			case unsupported[e.Key].why != "":
				if u := unsupported[e.Key]; !(u.offOK && isOff(e.Value)) {
					add(fmt.Sprintf("config: %s: %s is not supported by scr-go (%s); ignored", e.Origin, e.Key, u.why))
				}
			case !known:
				add(fmt.Sprintf("config: %s: unknown parameter %s (typo?); ignored", e.Origin, e.Key))
			}
			if !descriptorKeys[e.Key] && len(e.Children) > 0 {
				add(fmt.Sprintf("config: %s: %s on the same line as %s=%s: SCR reads the pairs after the first as its sub-keys, which a simple parameter does not have; ignored (one parameter per line)",
					e.Origin, kvList(e.Children), e.Key, e.Value))
			}
			if descriptorKeys[e.Key] || e.Origin.File == "" {
				continue
			}
			if f, ok := first[e.Key]; ok && f.Value != e.Value {
				v, o, _ := c.lookupEntries(layer, e.Key)
				add(fmt.Sprintf("config: %s: %s=%s, also set to %s on line %d of the same file: %s (line %d) is used, as in SCR; remove one",
					e.Origin, e.Key, e.Value, f.Value, f.Origin.Line, v, o.Line))
			}
			if _, ok := first[e.Key]; !ok {
				first[e.Key] = e
			}
		}
	}
	names := make([]string, 0, len(unsupported))
	for name := range unsupported {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if v, ok := c.env(name); ok && v != "" && !(unsupported[name].offOK && isOff(v)) {
			u := unsupported[name]
			add(fmt.Sprintf("config: environment: %s is not supported by scr-go (%s); ignored", name, u.why))
		}
	}
	for _, e := range c.app {
		if scriptParams[e.Key] && e.Origin.File == "" {
			add(fmt.Sprintf("config: %s set through the API: the job script reads it before the application runs; set it in the environment or %s instead", e.Key, c.userFile))
		}
	}
	for _, w := range c.warns {
		add(w)
	}
	return out
}

// kvList writes pairs as KEY=VALUE words.
func kvList(kvs []KV) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, kv.Key+"="+kv.Value)
	}
	return strings.Join(parts, " ")
}

// isOff says whether a value reads as false (0, no, off, ...).
func isOff(v string) bool {
	b, err := ParseBool(v)
	return err == nil && !b
}

// scriptParams are read by scr_run/scr_postrun before or after the
// application runs, so an API value reaches them late (SCR warns too).
var scriptParams = map[string]bool{"CACHEDIR": true, "CNTLDIR": true, "SCR_CACHE_BASE": true, "SCR_CACHE_SIZE": true,
	"SCR_CNTL_BASE": true, "SCR_EXCLUDE_NODES": true, "SCR_JOB_NAME": true, "SCR_WATCHDOG_TIMEOUT": true,
	"SCR_WATCHDOG_TIMEOUT_PFS": true, "SCR_RUNS": true, "SCR_MIN_NODES": true, "SCR_LAUNCH_TIMEOUT": true, "SCR_WATCH_INTERVAL": true,
	"SCR_FINALIZE_TIMEOUT": true}

package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Redundancy types.
const (
	TypeSingle  = "SINGLE"
	TypePartner = "PARTNER"
	TypeXOR     = "XOR"
	TypeRS      = "RS"
	TypeFile    = "FILE" // SCR_COPY_TYPE only: use the CKPT entries
)

// Built-in failure groups.
const (
	GroupNode  = "NODE"  // ranks on the same node
	GroupWorld = "WORLD" // all ranks
)

// Store is a storage location for cached datasets (a STORE entry).
type Store struct {
	Path    string // base directory
	Group   string // ranks that share the device: NODE (node-local) or WORLD (global)
	Count   int    // datasets kept at once
	Enabled bool
	MkDir   bool   // create the directory
	Flush   string // flush type for datasets in this store
	View    string // PRIVATE, or GLOBAL (a shared file system faking node-local dirs)
	Origin  Origin
}

// GroupDef is one GROUPS line: host Host belongs, for each named group, to
// the group with that value (ranks whose hosts share a value form a group).
type GroupDef struct {
	Host   string
	Values map[string]string // group name -> value
	Origin Origin
}

// Redundancy is a redundancy descriptor (a CKPT entry, or the implicit
// CKPT=0 built from the SCR_* parameters).
type Redundancy struct {
	Index       int  // the CKPT=<n> number
	Interval    int  // used for checkpoint ids divisible by Interval
	Output      bool // used for datasets with the OUTPUT flag
	Enabled     bool
	Store       string // base of the store to cache in
	Type        string // SINGLE, PARTNER, XOR, RS
	Group       string // failure group: NODE, WORLD or a GROUPS name
	SetSize     int    // ranks per redundancy set (this descriptor's own value is used)
	SetFailures int    // RS: failures tolerated per set
	Bypass      bool   // files go straight to the prefix
	Origin      Origin
}

func childErr(e Entry, key, val, reason string) error {
	return &ParamError{Name: e.Key + "=" + e.Value + " " + key, Value: val, Origin: e.Origin, Reason: reason}
}

// childParser reads children of one entry, collecting errors (malformed
// values) and warnings (keys it does not know, which SCR ignores).
type childParser struct {
	e     Entry
	errs  []error
	known map[string]bool
	warn  func(string)
}

func (p *childParser) str(key, def string) string {
	p.known[key] = true
	if v, ok := p.e.Child(key); ok {
		return v
	}
	return def
}

func (p *childParser) int(key string, def int) int {
	p.known[key] = true
	v, ok := p.e.Child(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.errs = append(p.errs, childErr(p.e, key, v, "not an integer"))
		return def
	}
	return n
}

func (p *childParser) bool(key string, def bool) bool {
	p.known[key] = true
	v, ok := p.e.Child(key)
	if !ok {
		return def
	}
	b, err := ParseBool(v)
	if err != nil {
		p.errs = append(p.errs, childErr(p.e, key, v, err.Error()))
		return def
	}
	return b
}

func (p *childParser) done() []error {
	for _, c := range p.e.Children {
		if !p.known[c.Key] {
			keys := make([]string, 0, len(p.known))
			for k := range p.known {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			p.warn(fmt.Sprintf("config: %s: %s=%s: unknown key %s (known: %s); ignored, as in SCR", p.e.Origin, p.e.Key, p.e.Value, c.Key, strings.Join(keys, ", ")))
		}
	}
	return p.errs
}

func (c *Config) newChildParser(e Entry) *childParser {
	return &childParser{e: e, known: map[string]bool{}, warn: c.warn}
}

// stores builds the store list: STORE entries, then the implicit stores for
// SCR_CACHE_BASE (COUNT=SCR_CACHE_SIZE) and SCR_CNTL_BASE (COUNT=0) unless
// an entry names the same path.
func (c *Config) stores(s *Settings) ([]Store, []error) {
	var out []Store
	var errs []error
	seen := map[string]bool{}
	// Entries merges lines by their literal value; merge /dev/shm and
	// /dev/shm/ too.
	var entries []Entry
	at := map[string]int{}
	for _, e := range c.Entries("STORE") {
		k := filepath.Clean(e.Value)
		if i, ok := at[k]; ok {
			entries[i].Children = append(entries[i].Children, e.Children...)
			continue
		}
		at[k] = len(entries)
		entries = append(entries, e)
	}
	for _, e := range entries {
		p := c.newChildParser(e)
		st := Store{
			Path:    filepath.Clean(e.Value),
			Group:   strings.ToUpper(p.str("GROUP", GroupNode)),
			Count:   p.int("COUNT", s.CacheSize),
			Enabled: p.bool("ENABLED", true),
			MkDir:   p.bool("MKDIR", true),
			Flush:   c.flushType(p.str("FLUSH", s.FlushType), "STORE="+e.Value+" FLUSH", e.Origin),
			View:    strings.ToUpper(p.str("VIEW", "PRIVATE")),
			Origin:  e.Origin,
		}
		errs = append(errs, p.done()...)
		seen[st.Path] = true
		out = append(out, st)
	}
	for _, imp := range []struct {
		path  string
		count int
		name  string
	}{{s.CacheBase, s.CacheSize, "SCR_CACHE_BASE"}, {s.CntlBase, 0, "SCR_CNTL_BASE"}} {
		if imp.path == "" || seen[filepath.Clean(imp.path)] {
			continue
		}
		seen[filepath.Clean(imp.path)] = true
		out = append(out, Store{Path: filepath.Clean(imp.path), Group: GroupNode, Count: imp.count, Enabled: true,
			MkDir: true, Flush: s.FlushType, View: "PRIVATE", Origin: s.origins[imp.name]})
	}
	return out, errs
}

// groups builds the GROUPS definitions.
func (c *Config) groups() ([]GroupDef, []error) {
	var out []GroupDef
	var errs []error
	for _, e := range c.Entries("GROUPS") {
		g := GroupDef{Host: e.Value, Values: map[string]string{}, Origin: e.Origin}
		for _, kv := range e.Children {
			if kv.Key == GroupNode || kv.Key == GroupWorld {
				errs = append(errs, childErr(e, kv.Key, kv.Value, "NODE and WORLD are built-in groups and cannot be redefined"))
				continue
			}
			g.Values[kv.Key] = kv.Value
		}
		if len(g.Values) == 0 && len(errs) == 0 {
			errs = append(errs, &ParamError{Name: "GROUPS", Value: e.Value, Origin: e.Origin, Reason: "names no group (write GROUPS=<host> NAME=<value>)"})
		}
		out = append(out, g)
	}
	return out, errs
}

// redundancy builds the descriptors: the CKPT entries when SCR_COPY_TYPE is
// FILE, else one implicit CKPT=0 from the SCR_* parameters.
func (c *Config) redundancy(s *Settings) ([]Redundancy, []error) {
	if s.CopyType != TypeFile {
		return []Redundancy{{Index: 0, Interval: 1, Enabled: true, Store: filepath.Clean(s.CacheBase), Type: s.CopyType,
			Group: s.Group, SetSize: s.SetSize, SetFailures: s.SetFailures, Bypass: s.CacheBypass, Origin: s.origins["SCR_COPY_TYPE"]}}, nil
	}
	var out []Redundancy
	var errs []error
	for _, e := range c.Entries("CKPT") {
		idx, err := strconv.Atoi(e.Value)
		if err != nil || idx < 0 {
			errs = append(errs, &ParamError{Name: "CKPT", Value: e.Value, Origin: e.Origin, Reason: "the descriptor number must be an integer >= 0"})
			continue
		}
		p := c.newChildParser(e)
		r := Redundancy{
			Index:       idx,
			Interval:    p.int("INTERVAL", 1),
			Output:      p.bool("OUTPUT", false),
			Enabled:     p.bool("ENABLED", true),
			Store:       filepath.Clean(p.str("STORE", s.CacheBase)),
			Type:        strings.ToUpper(p.str("TYPE", TypeXOR)),
			Group:       strings.ToUpper(p.str("GROUP", s.Group)),
			SetSize:     p.int("SET_SIZE", s.SetSize),
			SetFailures: p.int("SET_FAILURES", s.SetFailures),
			Bypass:      p.bool("BYPASS", s.CacheBypass),
			Origin:      e.Origin,
		}
		errs = append(errs, p.done()...)
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, errs
}

// disableBroken does what SCR does with a store or redundancy descriptor it
// cannot use: it disables it (a store with an unknown GROUP, a descriptor
// with an unknown TYPE, an RS SET_FAILURES out of range, a STORE that is
// not an enabled store) or reads a value its way (an unknown VIEW is
// PRIVATE), and says so in a warning. Mistakes SCR cannot survive either
// stay errors (Validate).
func (c *Config) disableBroken(s *Settings) {
	for i := range s.Stores {
		st := &s.Stores[i]
		if st.View != "PRIVATE" && st.View != "GLOBAL" {
			c.warn(fmt.Sprintf("config: %s: STORE=%s VIEW=%s is not PRIVATE or GLOBAL: read as PRIVATE, as in SCR", st.Origin, st.Path, st.View))
			st.View = "PRIVATE"
		}
		if st.View == "GLOBAL" {
			c.warn(fmt.Sprintf("config: %s: STORE=%s VIEW=GLOBAL is not supported: the store is used as node-local; one shared between nodes is not safe (each node's leader removes the dataset directories its own cache index does not list)", st.Origin, st.Path))
		}
		if !st.MkDir {
			c.warn(fmt.Sprintf("config: %s: STORE=%s MKDIR=0 is not acted on: scr-go creates the store's directories (<store>/<user>/scr.<jobid>/...)", st.Origin, st.Path))
		}
		if st.Enabled && st.Group != GroupNode && st.Group != GroupWorld && !groupDefined(s.Groups, st.Group) {
			c.warn(fmt.Sprintf("config: %s: STORE=%s GROUP=%s is not NODE, WORLD or a GROUPS name: the store is disabled, as in SCR", st.Origin, st.Path, st.Group))
			st.Enabled = false
		}
	}
	stores := map[string]bool{}
	for _, st := range s.Stores {
		if st.Enabled {
			stores[st.Path] = true
		}
	}
	for i := range s.Redundancy {
		r := &s.Redundancy[i]
		if !r.Enabled {
			continue
		}
		why := ""
		switch {
		case r.Type != TypeSingle && r.Type != TypePartner && r.Type != TypeXOR && r.Type != TypeRS:
			why = fmt.Sprintf("TYPE=%s is not SINGLE, PARTNER, XOR or RS", r.Type)
		case r.Type == TypeRS && r.SetSize >= 1 && (r.SetFailures < 1 || r.SetFailures >= r.SetSize):
			why = fmt.Sprintf("RS needs 1 <= SET_FAILURES < SET_SIZE, has SET_FAILURES=%d SET_SIZE=%d", r.SetFailures, r.SetSize)
		case !stores[r.Store]:
			why = fmt.Sprintf("STORE=%s is not an enabled store (add a STORE=%s line or use SCR_CACHE_BASE)", r.Store, r.Store)
		}
		if why != "" {
			c.warn(fmt.Sprintf("config: %s: CKPT=%d: %s: the descriptor is disabled, as in SCR", r.Origin, r.Index, why))
			r.Enabled = false
		}
	}
}

func validateDescriptors(s *Settings) []error {
	var errs []error
	stores := map[string]bool{}
	for _, st := range s.Stores {
		name := "STORE=" + st.Path
		if !filepath.IsAbs(st.Path) {
			errs = append(errs, &ParamError{Name: "STORE", Value: st.Path, Origin: st.Origin, Reason: "must be an absolute path"})
		}
		if st.Count < 0 {
			errs = append(errs, &ParamError{Name: name + " COUNT", Value: strconv.Itoa(st.Count), Origin: st.Origin, Reason: "must be 0 or more"})
		}
		if st.View != "PRIVATE" && st.View != "GLOBAL" {
			errs = append(errs, &ParamError{Name: name + " VIEW", Value: st.View, Origin: st.Origin, Reason: "must be PRIVATE or GLOBAL"})
		}
		if !validFlushType(st.Flush) {
			errs = append(errs, &ParamError{Name: name + " FLUSH", Value: st.Flush, Origin: st.Origin, Reason: "must be SYNC or PTHREAD (or DEFAULT, NATIVE; BBAPI and DATAWARP fall back to PTHREAD)"})
		}
		if st.Enabled {
			stores[st.Path] = true
		}
	}
	if s.CopyType == TypeFile && len(s.Redundancy) == 0 {
		errs = append(errs, &ParamError{Name: "SCR_COPY_TYPE", Value: TypeFile, Origin: s.origins["SCR_COPY_TYPE"], Reason: "FILE needs CKPT entries in a config file, and there are none"})
	}
	interval1 := false
	seen := map[int]bool{}
	for _, r := range s.Redundancy {
		name := "CKPT=" + strconv.Itoa(r.Index)
		bad := func(key string, v any, format string, a ...any) {
			errs = append(errs, &ParamError{Name: strings.TrimSpace(name + " " + key), Value: fmt.Sprint(v), Origin: r.Origin, Reason: fmt.Sprintf(format, a...)})
		}
		if seen[r.Index] {
			bad("", r.Index, "defined twice")
		}
		seen[r.Index] = true
		switch r.Type {
		case TypeSingle, TypePartner, TypeXOR, TypeRS:
		default:
			if r.Enabled {
				bad("TYPE", r.Type, "must be SINGLE, PARTNER, XOR or RS")
			}
		}
		if r.Interval < 1 {
			bad("INTERVAL", r.Interval, "must be 1 or more")
		}
		if r.SetSize < 1 {
			bad("SET_SIZE", r.SetSize, "must be 1 or more")
		}
		if r.Enabled && r.Type == TypeRS && (r.SetFailures < 1 || r.SetFailures >= r.SetSize) {
			bad("SET_FAILURES", r.SetFailures, "RS needs 1 <= SET_FAILURES < SET_SIZE (%d)", r.SetSize)
		}
		if r.Group == "" {
			bad("GROUP", r.Group, "must not be empty")
		} else if r.Group != GroupNode && r.Group != GroupWorld && !groupDefined(s.Groups, r.Group) {
			bad("GROUP", r.Group, "is not NODE, WORLD or a group defined by a GROUPS line")
		}
		if r.Enabled && !stores[r.Store] {
			bad("STORE", r.Store, "is not an enabled store (add a STORE=%s line or use SCR_CACHE_BASE)", r.Store)
		}
		if r.Enabled && r.Interval == 1 {
			interval1 = true
		}
	}
	if len(s.Redundancy) > 0 && !interval1 {
		errs = append(errs, &ParamError{Name: "CKPT", Value: "", Origin: s.Redundancy[0].Origin, Reason: "no enabled descriptor has INTERVAL=1, so some datasets would have none"})
	}
	return errs
}

func groupDefined(gs []GroupDef, name string) bool {
	for _, g := range gs {
		if _, ok := g.Values[name]; ok {
			return true
		}
	}
	return false
}

// ErrNoDescriptor is returned by Select when no enabled descriptor fits.
var ErrNoDescriptor = errors.New("no enabled redundancy descriptor fits the dataset")

// Select picks the descriptor for a dataset (reference 2.4): a dataset with
// the OUTPUT flag uses an enabled descriptor with OUTPUT=1 if there is one;
// a checkpoint uses the enabled descriptor with the largest INTERVAL that
// divides its checkpoint id; pure output uses an enabled descriptor with
// INTERVAL=1.
func Select(descs []Redundancy, checkpoint, output bool, ckptID int64) (Redundancy, error) {
	if output {
		for _, d := range descs {
			if d.Enabled && d.Output {
				return d, nil
			}
		}
	}
	best := -1
	for i, d := range descs {
		if !d.Enabled || d.Interval < 1 {
			continue
		}
		if checkpoint {
			if ckptID%int64(d.Interval) == 0 && (best < 0 || d.Interval > descs[best].Interval) {
				best = i
			}
		} else if d.Interval == 1 {
			best = i
			break
		}
	}
	if best < 0 {
		return Redundancy{}, fmt.Errorf("dataset (checkpoint=%v output=%v id=%d): %w", checkpoint, output, ckptID, ErrNoDescriptor)
	}
	return descs[best], nil
}

// Topology is what Adjust needs to know about the job.
type Topology struct {
	Ranks int // ranks in the job
	Nodes int // distinct nodes they run on
}

// Adjust applies SCR's conveniences to a descriptor for a job: all ranks on
// one node, or a store shared by all ranks (GROUP=WORLD), make redundancy
// pointless, so the type becomes SINGLE; RS tolerating 1 failure is XOR.
// Unlike SCR, the descriptor's own SET_SIZE is kept. It returns the adjusted
// copy and a note saying what changed ("" if nothing).
func Adjust(d Redundancy, stores []Store, t Topology) (Redundancy, string) {
	var worldStore bool
	for _, st := range stores {
		if st.Path == d.Store && st.Group == GroupWorld {
			worldStore = true
		}
	}
	switch {
	case d.Type != TypeSingle && t.Nodes <= 1:
		note := fmt.Sprintf("CKPT=%d: all %d ranks on one node, using SINGLE instead of %s", d.Index, t.Ranks, d.Type)
		d.Type = TypeSingle
		return d, note
	case d.Type != TypeSingle && worldStore:
		note := fmt.Sprintf("CKPT=%d: store %s is shared by all ranks, using SINGLE instead of %s", d.Index, d.Store, d.Type)
		d.Type = TypeSingle
		return d, note
	case d.Type == TypeRS && d.SetFailures == 1:
		d.Type = TypeXOR
		return d, fmt.Sprintf("CKPT=%d: RS with SET_FAILURES=1 is XOR", d.Index)
	}
	return d, ""
}

// StoreFor returns the store whose path is base, or false.
func (s *Settings) StoreFor(base string) (Store, bool) {
	base = filepath.Clean(base)
	for _, st := range s.Stores {
		if st.Path == base {
			return st, true
		}
	}
	return Store{}, false
}

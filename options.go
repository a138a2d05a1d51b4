package scr

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/config"
)

// Options configure one rank's handle.
type Options struct {
	// Comm is the world communicator (required). The handle uses it and
	// communicators split from it; the application may keep using Comm
	// between SCR calls, but not at the same time as an SCR call.
	Comm comm.Comm
	// Node is this rank's node name. Default: SCR_NODE_NAME, else the short
	// host name (doc/seams.md, section 2).
	Node string
	// Env reads SCR_* parameters and the job environment. Default
	// os.LookupEnv. Ranks running as goroutines pass their own.
	Env func(key string) (string, bool)
	// Config holds settings in SCR_Config syntax ("KEY=VALUE",
	// "CKPT=1 TYPE=XOR INTERVAL=10"), applied before Init. Precedence
	// (SCR's): environment > user config file ($SCR_CONF_FILE, else
	// <prefix>/.scrconf) > these values > system config file > defaults.
	// Rank 0 saves them to <prefix>/.scr/app.conf for the job scripts.
	Config []string
}

// params is what the library uses of the resolved configuration
// (internal/config) of one rank.
type params struct {
	enable         bool
	prefix         string
	cntlBase       string
	cacheBase      string
	user, jobID    string
	cacheSize      int
	purge          bool
	flushEvery     int
	flushAsync     bool
	fetch          bool
	distribute     bool
	ckptInterval   int
	ckptSeconds    float64
	ckptOverhead   float64
	haltSeconds    int64
	endTime        int64
	crcOnCopy      bool
	bufSize        int
	runID          int
	current        string
	nodeName       string
	prefixSize     int            // keep this many checkpoints on the prefix (0: all)
	prefixPurge    bool           // delete every prefix dataset at Init
	flushOnRestart bool           // flush every cached dataset at Init
	globalRestart  bool           // flush at Init, then restart from the prefix
	dropAfter      bool           // Current also drops newer index entries
	counts         map[string]int // datasets kept per store base
	descs          []config.Redundancy
	stores         []config.Store
	groups         []config.GroupDef
}

// resolve reads the configuration of one rank.
func resolve(env func(string) (string, bool), api []string) (*config.Config, params, error) {
	if env == nil {
		env = os.LookupEnv
	}
	cc, s, err := config.Resolve(config.Options{Env: config.Lookup(env), NoAppFile: true}, api)
	if err != nil {
		return nil, params{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	p := params{
		enable: s.Enable, prefix: s.Prefix, cntlBase: s.CntlBase, cacheBase: s.CacheBase,
		user: s.UserName, jobID: s.JobID, cacheSize: s.CacheSize, purge: s.CachePurge,
		flushEvery: s.Flush, flushAsync: s.FlushAsync, fetch: s.Fetch, distribute: s.Distribute,
		ckptInterval: s.CheckpointInterval, ckptSeconds: float64(s.CheckpointSeconds),
		ckptOverhead: s.CheckpointOverhead, haltSeconds: s.HaltSeconds, crcOnCopy: s.CRCOnCopy,
		bufSize: int(s.MPIBufSize), current: s.Current, nodeName: s.NodeName,
		descs: s.Redundancy, stores: s.Stores, groups: s.Groups,
		prefixSize: s.PrefixSize, prefixPurge: s.PrefixPurge, flushOnRestart: s.FlushOnRestart,
		globalRestart: s.GlobalRestart, dropAfter: s.DropAfterCurrent,
	}
	if !s.EndTime.IsZero() {
		p.endTime = s.EndTime.Unix()
	}
	if v, ok := env("SCR_RUN_ID"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, p, &ConfigError{Key: "SCR_RUN_ID", Value: v, Want: "an integer (set by scr_run)"}
		}
		p.runID = n
	}
	if st, ok := s.StoreFor(s.CacheBase); ok && st.Count > 0 {
		p.cacheSize = st.Count
	}
	if p.cacheSize < 1 {
		p.cacheSize = 1
	}
	if p.bufSize < 4096 {
		p.bufSize = 4096
	}
	p.counts = map[string]int{}
	for _, st := range p.stores {
		p.counts[filepath.Clean(st.Path)] = st.Count
	}
	for _, d := range p.descs {
		if d.Enabled && d.Store != "" {
			if _, ok := p.counts[filepath.Clean(d.Store)]; !ok {
				return nil, p, &ConfigError{Key: fmt.Sprintf("CKPT=%d STORE", d.Index), Value: d.Store,
					Want: "a store declared with STORE= (or SCR_CACHE_BASE)"}
			}
		}
	}
	return cc, p, nil
}

// layout is the node's cache layout from the resolved parameters.
func (p params) layout() cache.Layout {
	return p.storeLayout(p.cacheBase)
}

// storeLayout is the layout of the store with base directory base.
func (p params) storeLayout(base string) cache.Layout {
	sub := filepath.Join(p.user, "scr."+p.jobID)
	return cache.Layout{CntlDir: filepath.Join(p.cntlBase, sub), CacheDir: filepath.Join(base, sub)}
}

// storeBases are the base directories of the stores datasets may use: the
// cache base and the store of every enabled descriptor.
func (p params) storeBases() []string {
	out := []string{filepath.Clean(p.cacheBase)}
	for _, d := range p.descs {
		if d.Enabled && d.Store != "" && !slices.Contains(out, filepath.Clean(d.Store)) {
			out = append(out, filepath.Clean(d.Store))
		}
	}
	return out
}

// count is how many datasets the store with base directory base keeps.
func (p params) count(base string) int {
	if base == "" || filepath.Clean(base) == filepath.Clean(p.cacheBase) {
		return p.cacheSize
	}
	if n := p.counts[filepath.Clean(base)]; n > 0 {
		return n
	}
	return p.cacheSize
}

// ParseSize reads a byte count such as "512k", "64MB" or "1g" (powers of
// 1024). Commands use it for --size.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		if i := strings.IndexByte("kmgtpe", t[n-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			t = t[:n-1]
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 {
		return 0, &ConfigError{Key: "size", Value: s, Want: "a byte count such as 512k, 64MB or 1g"}
	}
	return n * mult, nil
}

// Config resolves a parameter the way a handle would, before Init: the
// environment (env, or os.LookupEnv when nil), the user config file,
// settings in SCR_Config syntax, the system config file, the default. key
// is "KEY" or "PARENT=VALUE CHILD" (e.g. "CKPT=0 TYPE"); ok is false when
// nothing sets it.
func Config(env func(string) (string, bool), settings []string, key string) (value string, ok bool, err error) {
	if env == nil {
		env = os.LookupEnv
	}
	cc, err := config.Load(config.Options{Env: config.Lookup(env), NoAppFile: true})
	if err != nil {
		return "", false, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for _, s := range settings {
		if err := cc.Set(s); err != nil {
			return "", false, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return cc.Query(key)
}

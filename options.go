package scr

import (
	"fmt"
	"io"
	"math"
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
	// Stderr receives the library's messages (default os.Stderr; never
	// stdout): rank 0's configuration warnings at Init, its warnings that a
	// checkpoint cannot be used and the restart falls back (also a
	// bad_dataset timeline event), and debug messages by SCR_DEBUG level.
	// See messages.go.
	Stderr io.Writer
}

// params is one rank's resolved configuration (internal/config's Settings,
// the only table of parameters) plus what the library derives from it.
type params struct {
	config.Settings
	cacheSize int            // datasets kept in the cache base (its STORE COUNT, else SCR_CACHE_SIZE; at least 1)
	bufSize   int            // SCR_MPI_BUF_SIZE, at least 4 KiB
	runID     int            // SCR_RUN_ID, set by scr_run (0 outside it)
	counts    map[string]int // datasets kept per store base
}

// resolve reads the configuration of one rank through internal/config:
// environment (env, os.LookupEnv when nil) > user file > api (SCR_Config
// syntax) > system file > defaults. A previous run's app.conf is not read.
func resolve(env func(string) (string, bool), api []string) (*config.Config, params, error) {
	if env == nil {
		env = os.LookupEnv
	}
	cc, s, err := config.Resolve(config.Options{Env: config.Lookup(env), NoAppFile: true}, api)
	if err != nil {
		if s != nil && len(s.Warnings) > 0 {
			// The warnings often say why (a descriptor SCR would disable
			// too, leaving none with INTERVAL=1).
			err = fmt.Errorf("%w\nwarnings:\n  %s", err, strings.Join(s.Warnings, "\n  "))
		}
		return nil, params{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	p := params{Settings: *s, cacheSize: s.CacheSize, bufSize: int(s.MPIBufSize)}
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
	for _, st := range p.Stores {
		p.counts[filepath.Clean(st.Path)] = st.Count
	}
	for _, d := range p.Redundancy {
		if d.Enabled && d.Store != "" {
			if _, ok := p.counts[filepath.Clean(d.Store)]; !ok {
				return nil, p, &ConfigError{Key: fmt.Sprintf("CKPT=%d STORE", d.Index), Value: d.Store,
					Want: "a store declared with STORE= (or SCR_CACHE_BASE)"}
			}
		}
	}
	return cc, p, nil
}

// copyBuf is the buffer of a file copy between cache and prefix:
// SCR_FILE_BUF_SIZE, no larger than the largest file to copy, at least 4 KiB.
func (p params) copyBuf(largest int64) int {
	n := min(p.FileBufSize, largest, 1<<30)
	return int(max(n, 4096))
}

// layout is the node's cache layout from the resolved parameters.
func (p params) layout() cache.Layout {
	return p.storeLayout(p.CacheBase)
}

// storeLayout is the layout of the store with base directory base.
func (p params) storeLayout(base string) cache.Layout {
	return cache.LayoutOf(p.CntlBase, base, p.UserName, p.JobID)
}

// storeBases are the base directories of the stores datasets may use: the
// cache base and the store of every enabled descriptor.
func (p params) storeBases() []string {
	out := []string{filepath.Clean(p.CacheBase)}
	for _, d := range p.Redundancy {
		if d.Enabled && d.Store != "" && !slices.Contains(out, filepath.Clean(d.Store)) {
			out = append(out, filepath.Clean(d.Store))
		}
	}
	return out
}

// count is how many datasets the store with base directory base keeps.
func (p params) count(base string) int {
	if base == "" || filepath.Clean(base) == filepath.Clean(p.CacheBase) {
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
	if n > math.MaxInt64/mult {
		return 0, &ConfigError{Key: "size", Value: s, Want: "a byte count below 8 EiB"}
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

// Enabled resolves SCR_ENABLE the way Init would (environment, user config
// file, settings in SCR_Config syntax, system file, default), so a caller
// can skip its own set-up when SCR is off. It reads no other rank's view:
// Init is what makes every rank agree.
func Enabled(env func(string) (string, bool), settings []string) (bool, error) {
	_, p, err := resolve(env, settings)
	if err != nil {
		return false, err
	}
	return p.Enable, nil
}

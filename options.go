package scr

import (
	"os"
	"strconv"
	"strings"

	"github.com/scr-go/scr/comm"
)

// Options configure one rank's handle.
type Options struct {
	// Comm is the world communicator (required). The handle uses it and
	// communicators split from it; the application may keep using Comm
	// between SCR calls, but not at the same time as an SCR call.
	Comm comm.Comm
	// Node is this rank's node name. Default: SCR_NODE_NAME, else
	// os.Hostname() (doc/seams.md, section 2).
	Node string
	// Env reads SCR_* parameters and the job environment. Default
	// os.LookupEnv. Ranks running as goroutines pass their own.
	Env func(key string) (string, bool)
	// Config holds settings in SCR_Config syntax ("KEY=VALUE"), applied
	// before Init. The environment wins over them (SCR's precedence).
	Config []string
}

// param is one parameter the library reads, with its default.
type param struct {
	key, def string
}

// The parameters the library reads and their defaults. Where scr-go differs
// from SCR v3 the comment says why.
var params = []param{
	{"SCR_ENABLE", "1"},
	{"SCR_PREFIX", ""}, // empty: the working directory
	{"SCR_CACHE_SIZE", "1"},
	{"SCR_CACHE_BYPASS", "0"}, // SCR v3: 1. Cache is the point of SCR; bypass is opt-in.
	{"SCR_CACHE_PURGE", "0"},
	{"SCR_COPY_TYPE", "XOR"},
	{"SCR_SET_SIZE", "8"},
	{"SCR_SET_FAILURES", "2"},
	{"SCR_FLUSH", "10"},
	{"SCR_FLUSH_ASYNC", "0"},
	{"SCR_FETCH", "1"},
	{"SCR_DISTRIBUTE", "1"},
	{"SCR_CHECKPOINT_INTERVAL", "0"},
	{"SCR_CHECKPOINT_SECONDS", "0"},
	{"SCR_CHECKPOINT_OVERHEAD", "0"},
	{"SCR_HALT_SECONDS", "0"},
	{"SCR_END_TIME", "0"},
	{"SCR_CRC_ON_COPY", "0"},
	{"SCR_CRC_ON_FLUSH", "1"},
	{"SCR_MPI_BUF_SIZE", "1048576"},
	{"SCR_FILE_BUF_SIZE", "1048576"},
	{"SCR_RUN_ID", "0"},
	{"SCR_CURRENT", ""},
	{"SCR_DEBUG", "0"},
}

// settings resolve parameters: environment first, then SCR_Config values,
// then the defaults above.
type settings struct {
	env    func(string) (string, bool)
	config map[string]string
}

func newSettings(env func(string) (string, bool)) *settings {
	if env == nil {
		env = os.LookupEnv
	}
	return &settings{env: env, config: map[string]string{}}
}

func defaultOf(key string) (string, bool) {
	for _, p := range params {
		if p.key == key {
			return p.def, true
		}
	}
	return "", false
}

// lookup returns the value of key and whether any source set it.
func (s *settings) lookup(key string) (string, bool) {
	if v, ok := s.env(key); ok {
		return os.Expand(v, func(k string) string { v, _ := s.env(k); return v }), true
	}
	if v, ok := s.config[key]; ok {
		return v, true
	}
	return defaultOf(key)
}

func (s *settings) str(key string) string {
	v, _ := s.lookup(key)
	return strings.TrimSpace(v)
}

func (s *settings) int(key string) (int64, error) {
	v := s.str(key)
	if v == "" {
		return 0, nil
	}
	n, err := parseSize(v)
	if err != nil {
		return 0, &ConfigError{Key: key, Value: v, Want: "an integer (units k, m, g allowed)"}
	}
	return n, nil
}

func (s *settings) float(key string) (float64, error) {
	v := s.str(key)
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, &ConfigError{Key: key, Value: v, Want: "a number"}
	}
	return f, nil
}

func (s *settings) bool(key string) (bool, error) {
	v := strings.ToLower(s.str(key))
	switch v {
	case "1", "y", "yes", "true", "on":
		return true, nil
	case "0", "n", "no", "false", "off", "":
		return false, nil
	}
	return false, &ConfigError{Key: key, Value: v, Want: "0 or 1"}
}

// parseSize reads an integer with an optional unit suffix k, m, g, t, p, e
// (powers of 1024, optional trailing "b", case-insensitive).
func parseSize(s string) (int64, error) {
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
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}

// ParseSize reads a byte count such as "512k", "64MB" or "1g" (powers of
// 1024). Commands use it for --size.
func ParseSize(s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil || n < 0 {
		return 0, &ConfigError{Key: "size", Value: s, Want: "a byte count such as 512k, 64MB or 1g"}
	}
	return n, nil
}

// config is the parsed set of parameters of one handle.
type config struct {
	enable       bool
	prefix       string
	cacheSize    int
	bypass       bool
	purge        bool
	copyType     string
	setSize      int
	setFailures  int
	flushEvery   int
	flushAsync   bool
	fetch        bool
	distribute   bool
	ckptInterval int
	ckptSeconds  float64
	ckptOverhead float64
	haltSeconds  int64
	endTime      int64
	crcOnCopy    bool
	bufSize      int
	runID        int
	current      string
}

func (s *settings) parse() (config, error) {
	var c config
	var errs []error
	b := func(k string) bool { v, err := s.bool(k); errs = append(errs, err); return v }
	i := func(k string) int64 { v, err := s.int(k); errs = append(errs, err); return v }
	f := func(k string) float64 { v, err := s.float(k); errs = append(errs, err); return v }
	c.enable = b("SCR_ENABLE")
	c.prefix = s.str("SCR_PREFIX")
	c.cacheSize = int(i("SCR_CACHE_SIZE"))
	c.bypass = b("SCR_CACHE_BYPASS")
	c.purge = b("SCR_CACHE_PURGE")
	c.copyType = strings.ToUpper(s.str("SCR_COPY_TYPE"))
	c.setSize = int(i("SCR_SET_SIZE"))
	c.setFailures = int(i("SCR_SET_FAILURES"))
	c.flushEvery = int(i("SCR_FLUSH"))
	c.flushAsync = b("SCR_FLUSH_ASYNC")
	c.fetch = b("SCR_FETCH")
	c.distribute = b("SCR_DISTRIBUTE")
	c.ckptInterval = int(i("SCR_CHECKPOINT_INTERVAL"))
	c.ckptSeconds = f("SCR_CHECKPOINT_SECONDS")
	c.ckptOverhead = f("SCR_CHECKPOINT_OVERHEAD")
	c.haltSeconds = i("SCR_HALT_SECONDS")
	c.endTime = i("SCR_END_TIME")
	c.crcOnCopy = b("SCR_CRC_ON_COPY")
	c.bufSize = int(i("SCR_MPI_BUF_SIZE"))
	c.runID = int(i("SCR_RUN_ID"))
	c.current = s.str("SCR_CURRENT")
	for _, e := range errs {
		if e != nil {
			return c, e
		}
	}
	switch c.copyType {
	case "SINGLE", "PARTNER", "XOR", "RS":
	default:
		return c, &ConfigError{Key: "SCR_COPY_TYPE", Value: c.copyType, Want: "SINGLE, PARTNER, XOR or RS"}
	}
	if c.cacheSize < 1 {
		return c, &ConfigError{Key: "SCR_CACHE_SIZE", Value: strconv.Itoa(c.cacheSize), Want: "at least 1"}
	}
	if c.setSize < 1 {
		return c, &ConfigError{Key: "SCR_SET_SIZE", Value: strconv.Itoa(c.setSize), Want: "at least 1"}
	}
	if c.bufSize < 4096 {
		c.bufSize = 4096
	}
	return c, nil
}

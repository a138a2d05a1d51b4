package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/jobid"
)

// Settings is the typed configuration of one rank or command, resolved from
// a Config. Every field is documented with its parameter and default.
type Settings struct {
	Enable             bool          // SCR_ENABLE (1): 0 disables the library
	Debug              int           // SCR_DEBUG (0)
	Prefix             string        // SCR_PREFIX (working directory)
	CntlBase           string        // SCR_CNTL_BASE (/dev/shm)
	CacheBase          string        // SCR_CACHE_BASE (/dev/shm)
	CacheSize          int           // SCR_CACHE_SIZE (1): datasets kept per store
	CacheBypass        bool          // SCR_CACHE_BYPASS (0 in scr-go: the cache is used)
	CachePurge         bool          // SCR_CACHE_PURGE (0)
	CopyType           string        // SCR_COPY_TYPE (XOR): SINGLE, PARTNER, XOR, RS or FILE
	SetSize            int           // SCR_SET_SIZE (8)
	SetFailures        int           // SCR_SET_FAILURES (2)
	Group              string        // SCR_GROUP (NODE)
	Flush              int           // SCR_FLUSH (10): flush every Nth checkpoint; 0 = never
	FlushType          string        // SCR_FLUSH_TYPE (SYNC)
	FlushAsync         bool          // SCR_FLUSH_ASYNC (0)
	FlushOnRestart     bool          // SCR_FLUSH_ON_RESTART (0; 1 if GlobalRestart)
	GlobalRestart      bool          // SCR_GLOBAL_RESTART (0)
	Fetch              bool          // SCR_FETCH (1)
	FetchBypass        bool          // SCR_FETCH_BYPASS (0; 1 if GlobalRestart)
	Distribute         bool          // SCR_DISTRIBUTE (1)
	Current            string        // SCR_CURRENT (unset)
	DropAfterCurrent   bool          // SCR_DROP_AFTER_CURRENT (0)
	PrefixSize         int           // SCR_PREFIX_SIZE (0 = keep all)
	PrefixPurge        bool          // SCR_PREFIX_PURGE (0)
	HaltSeconds        int64         // SCR_HALT_SECONDS (0)
	HaltExit           bool          // SCR_HALT_EXIT (0)
	CheckpointInterval int           // SCR_CHECKPOINT_INTERVAL (0)
	CheckpointSeconds  int64         // SCR_CHECKPOINT_SECONDS (0)
	CheckpointOverhead float64       // SCR_CHECKPOINT_OVERHEAD (0, percent)
	MPIBufSize         int64         // SCR_MPI_BUF_SIZE (1 MiB)
	FileBufSize        int64         // SCR_FILE_BUF_SIZE (32 MiB)
	CopyMetadata       bool          // SCR_COPY_METADATA (1)
	CRCOnCopy          bool          // SCR_CRC_ON_COPY (0)
	CRCOnFlush         bool          // SCR_CRC_ON_FLUSH (1)
	CRCOnDelete        bool          // SCR_CRC_ON_DELETE (0)
	UserName           string        // SCR_USER_NAME, else $USER, else the uid's name
	JobID              string        // SCR_JOB_ID, else the allocation's id (internal/jobid), else "defjobid"
	JobName            string        // SCR_JOB_NAME
	ClusterName        string        // SCR_CLUSTER_NAME
	NodeName           string        // SCR_NODE_NAME, else the host name
	EndTime            time.Time     // SCR_END_TIME (unix seconds; zero = unknown)
	Runs               int           // SCR_RUNS (1; -1 = unlimited; SCR_RETRIES+1 if only that is set)
	MinNodes           int           // SCR_MIN_NODES (0 = as many as the last run)
	ExcludeNodes       string        // SCR_EXCLUDE_NODES (host list)
	NodeList           string        // SCR_NODELIST (host list)
	NodeTests          []string      // SCR_NODE_TESTS (ping,echo,dir_capacity)
	Watchdog           bool          // SCR_WATCHDOG (0)
	WatchdogTimeout    time.Duration // SCR_WATCHDOG_TIMEOUT
	WatchdogTimeoutPFS time.Duration // SCR_WATCHDOG_TIMEOUT_PFS
	LaunchTimeout      time.Duration // SCR_LAUNCH_TIMEOUT (60 s): wait for a launched run to report in; 0 = do not wait
	WatchInterval      time.Duration // SCR_WATCH_INTERVAL (2 s): node checks while a step runs
	FinalizeTimeout    time.Duration // SCR_FINALIZE_TIMEOUT (60 s): a step still running this long after SCR_Finalize is killed; 0 = no limit
	CommTimeout        time.Duration // SCR_COMM_TIMEOUT (3 s): silence before a peer is lost
	LogEnable          bool          // SCR_LOG_ENABLE (0): write SCR's text event log
	LogTxtEnable       bool          // SCR_LOG_TXT_ENABLE (1): the text log is <prefix>/.scr/log (with SCR_LOG_ENABLE=1)

	// Warnings lists what was read but not acted on, or replaced, each
	// with its origin (Config.Warnings, complete once Settings ran).
	Warnings []string

	Stores     []Store      // STORE entries plus the implicit cache and control stores
	Groups     []GroupDef   // GROUPS entries
	Redundancy []Redundancy // CKPT entries (COPY_TYPE=FILE) or the implicit CKPT=0

	origins map[string]Origin
}

// Origin returns where parameter name's value came from.
func (s *Settings) Origin(name string) Origin { return s.origins[name] }

// read stores parameter name into dst with get, notes its origin in s, and
// appends get's error (if any) to errs.
func read[T any](c *Config, s *Settings, errs *[]error, name string, dst *T, get func(string) (T, error)) {
	v, err := get(name)
	if err != nil {
		*errs = append(*errs, err)
	}
	if got, ok, _ := c.Get(name); ok {
		s.origins[name] = got.Origin
	}
	*dst = v
}

// Settings resolves every parameter. It returns the settings and, if any
// value is malformed or inconsistent, an error joining one *ParamError per
// mistake (errors.Join); the settings are then partly filled and must not be
// used.
func (c *Config) Settings() (*Settings, error) {
	s := &Settings{origins: map[string]Origin{}}
	var errs []error
	// Each reader records the value's origin and keeps going on a bad
	// value, so one call reports every mistake.
	str := func(name string, dst *string) { read(c, s, &errs, name, dst, c.String) }
	b := func(name string, dst *bool) { read(c, s, &errs, name, dst, c.Bool) }
	i64 := func(name string, dst *int64) { read(c, s, &errs, name, dst, c.Int) }
	by := func(name string, dst *int64) { read(c, s, &errs, name, dst, c.Bytes) }
	du := func(name string, dst *time.Duration) { read(c, s, &errs, name, dst, c.Duration) }
	in := func(name string, dst *int) {
		var v int64
		i64(name, &v)
		*dst = int(v)
	}
	b("SCR_ENABLE", &s.Enable)
	in("SCR_DEBUG", &s.Debug)
	str("SCR_PREFIX", &s.Prefix)
	if s.Prefix == "" {
		s.Prefix = c.prefixDir
	} else if abs, err := filepath.Abs(s.Prefix); err == nil {
		s.Prefix = abs
	}
	str("SCR_CNTL_BASE", &s.CntlBase)
	str("SCR_CACHE_BASE", &s.CacheBase)
	in("SCR_CACHE_SIZE", &s.CacheSize)
	b("SCR_CACHE_BYPASS", &s.CacheBypass)
	b("SCR_CACHE_PURGE", &s.CachePurge)
	str("SCR_COPY_TYPE", &s.CopyType)
	s.CopyType = strings.ToUpper(s.CopyType)
	switch s.CopyType {
	case TypeSingle, TypePartner, TypeXOR, TypeRS, TypeFile:
	default:
		// SCR reads any other value as FILE: the CKPT descriptors.
		c.warn(fmt.Sprintf("config: %s: SCR_COPY_TYPE=%s is not SINGLE, PARTNER, XOR, RS or FILE: the CKPT descriptors are used (FILE), as in SCR", s.origins["SCR_COPY_TYPE"], s.CopyType))
		s.CopyType = TypeFile
	}
	in("SCR_SET_SIZE", &s.SetSize)
	in("SCR_SET_FAILURES", &s.SetFailures)
	str("SCR_GROUP", &s.Group)
	in("SCR_FLUSH", &s.Flush)
	str("SCR_FLUSH_TYPE", &s.FlushType)
	s.FlushType = c.flushType(s.FlushType, "SCR_FLUSH_TYPE", s.origins["SCR_FLUSH_TYPE"])
	b("SCR_FLUSH_ASYNC", &s.FlushAsync)
	b("SCR_FLUSH_ON_RESTART", &s.FlushOnRestart)
	b("SCR_GLOBAL_RESTART", &s.GlobalRestart)
	b("SCR_FETCH", &s.Fetch)
	b("SCR_FETCH_BYPASS", &s.FetchBypass)
	if s.GlobalRestart {
		s.FlushOnRestart, s.FetchBypass = true, true
	}
	b("SCR_DISTRIBUTE", &s.Distribute)
	str("SCR_CURRENT", &s.Current)
	b("SCR_DROP_AFTER_CURRENT", &s.DropAfterCurrent)
	in("SCR_PREFIX_SIZE", &s.PrefixSize)
	b("SCR_PREFIX_PURGE", &s.PrefixPurge)
	i64("SCR_HALT_SECONDS", &s.HaltSeconds)
	b("SCR_HALT_EXIT", &s.HaltExit)
	in("SCR_CHECKPOINT_INTERVAL", &s.CheckpointInterval)
	i64("SCR_CHECKPOINT_SECONDS", &s.CheckpointSeconds)
	read(c, s, &errs, "SCR_CHECKPOINT_OVERHEAD", &s.CheckpointOverhead, c.Float)
	by("SCR_MPI_BUF_SIZE", &s.MPIBufSize)
	by("SCR_FILE_BUF_SIZE", &s.FileBufSize)
	b("SCR_COPY_METADATA", &s.CopyMetadata)
	b("SCR_CRC_ON_COPY", &s.CRCOnCopy)
	b("SCR_CRC_ON_FLUSH", &s.CRCOnFlush)
	b("SCR_CRC_ON_DELETE", &s.CRCOnDelete)
	str("SCR_USER_NAME", &s.UserName)
	if s.UserName == "" {
		s.UserName = c.userName()
	}
	str("SCR_JOB_ID", &s.JobID)
	if s.JobID == "" {
		// The allocation, not the step: every run of one allocation
		// finds the same cache (internal/jobid).
		if s.JobID, _ = jobid.Allocation(jobid.Lookup(c.env)); s.JobID == "" {
			s.JobID = jobid.Default
		}
	}
	str("SCR_JOB_NAME", &s.JobName)
	str("SCR_CLUSTER_NAME", &s.ClusterName)
	str("SCR_NODE_NAME", &s.NodeName)
	if s.NodeName == "" {
		if h, err := os.Hostname(); err == nil {
			s.NodeName, _, _ = strings.Cut(h, ".")
		}
	}
	var end int64
	i64("SCR_END_TIME", &end)
	if end > 0 {
		s.EndTime = time.Unix(end, 0)
	}
	in("SCR_RUNS", &s.Runs)
	if o := s.origins["SCR_RUNS"]; o.Kind == SourceDefault {
		var retries int
		in("SCR_RETRIES", &retries)
		if o := s.origins["SCR_RETRIES"]; o.Kind != SourceDefault && retries >= 0 {
			s.Runs = retries + 1
		}
	}
	in("SCR_MIN_NODES", &s.MinNodes)
	str("SCR_EXCLUDE_NODES", &s.ExcludeNodes)
	str("SCR_NODELIST", &s.NodeList)
	var tests string
	str("SCR_NODE_TESTS", &tests)
	for _, t := range strings.Split(tests, ",") {
		if t = strings.TrimSpace(t); t != "" {
			s.NodeTests = append(s.NodeTests, t)
		}
	}
	b("SCR_WATCHDOG", &s.Watchdog)
	du("SCR_WATCHDOG_TIMEOUT", &s.WatchdogTimeout)
	du("SCR_WATCHDOG_TIMEOUT_PFS", &s.WatchdogTimeoutPFS)
	du("SCR_LAUNCH_TIMEOUT", &s.LaunchTimeout)
	du("SCR_WATCH_INTERVAL", &s.WatchInterval)
	du("SCR_FINALIZE_TIMEOUT", &s.FinalizeTimeout)
	du("SCR_COMM_TIMEOUT", &s.CommTimeout)
	b("SCR_LOG_ENABLE", &s.LogEnable)
	b("SCR_LOG_TXT_ENABLE", &s.LogTxtEnable)

	if len(errs) > 0 {
		s.Warnings = c.Warnings()
		return s, errors.Join(errs...)
	}
	var derr []error
	s.Stores, derr = c.stores(s)
	errs = append(errs, derr...)
	s.Groups, derr = c.groups()
	errs = append(errs, derr...)
	s.Redundancy, derr = c.redundancy(s)
	errs = append(errs, derr...)
	c.disableBroken(s)
	if err := s.Validate(); err != nil {
		errs = append(errs, err)
	}
	s.Warnings = c.Warnings()
	return s, errors.Join(errs...)
}

// flushType normalises a flush type (SCR_FLUSH_TYPE or a store's FLUSH):
// BBAPI and DATAWARP, the IBM and Cray burst-buffer transfers, fall back to
// PTHREAD, scr-go's copy in the background of the application (async when
// SCR_FLUSH_ASYNC=1), with a warning. Other values are checked by Validate.
func (c *Config) flushType(v, what string, o Origin) string {
	v = strings.ToUpper(v)
	switch v {
	case "BBAPI", "DATAWARP":
		c.warn(fmt.Sprintf("config: %s: %s=%s is not available in scr-go: flushing with PTHREAD instead (the application's files copied by the library in the background when SCR_FLUSH_ASYNC=1)", o, what, v))
		return "PTHREAD"
	}
	return v
}

func (c *Config) userName() string {
	if v, ok := c.env("USER"); ok && v != "" {
		return v
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid%d", os.Getuid())
}

// Validate checks ranges and relations between settings and returns one
// *ParamError per mistake, joined; nil if all is well.
func (s *Settings) Validate() error {
	var errs []error
	bad := func(name string, value any, format string, a ...any) {
		errs = append(errs, &ParamError{Name: name, Value: fmt.Sprint(value), Origin: s.origins[name], Reason: fmt.Sprintf(format, a...)})
	}
	if s.Debug < 0 {
		bad("SCR_DEBUG", s.Debug, "must be 0 or more")
	}
	if s.Prefix == "" {
		bad("SCR_PREFIX", s.Prefix, "must not be empty")
	}
	if s.CntlBase == "" {
		bad("SCR_CNTL_BASE", s.CntlBase, "must not be empty")
	}
	if s.CacheBase == "" {
		bad("SCR_CACHE_BASE", s.CacheBase, "must not be empty")
	}
	if s.CacheSize < 0 {
		bad("SCR_CACHE_SIZE", s.CacheSize, "must be 0 or more")
	}
	switch s.CopyType {
	case TypeSingle, TypePartner, TypeXOR, TypeRS, TypeFile:
	default:
		// SCR silently treats unknown types as FILE; we say so.
		bad("SCR_COPY_TYPE", s.CopyType, "must be SINGLE, PARTNER, XOR, RS or FILE")
	}
	if s.SetSize < 1 {
		bad("SCR_SET_SIZE", s.SetSize, "must be 1 or more")
	}
	if s.SetFailures < 1 {
		bad("SCR_SET_FAILURES", s.SetFailures, "must be 1 or more")
	} else if s.CopyType == TypeRS && s.SetFailures >= s.SetSize {
		bad("SCR_SET_FAILURES", s.SetFailures, "RS needs fewer failures than SCR_SET_SIZE (%d)", s.SetSize)
	}
	if s.Group == "" {
		bad("SCR_GROUP", s.Group, "must not be empty")
	}
	if s.Flush < 0 {
		bad("SCR_FLUSH", s.Flush, "must be 0 (never) or more")
	}
	if !validFlushType(s.FlushType) {
		bad("SCR_FLUSH_TYPE", s.FlushType, "must be SYNC or PTHREAD (or DEFAULT, NATIVE; BBAPI and DATAWARP fall back to PTHREAD)")
	}
	if s.PrefixSize < 0 {
		bad("SCR_PREFIX_SIZE", s.PrefixSize, "must be 0 (keep all) or more")
	}
	if s.HaltSeconds < 0 {
		bad("SCR_HALT_SECONDS", s.HaltSeconds, "must be 0 or more")
	}
	if s.CheckpointInterval < 0 {
		bad("SCR_CHECKPOINT_INTERVAL", s.CheckpointInterval, "must be 0 or more")
	}
	if s.CheckpointSeconds < 0 {
		bad("SCR_CHECKPOINT_SECONDS", s.CheckpointSeconds, "must be 0 or more")
	}
	if s.CheckpointOverhead < 0 || s.CheckpointOverhead > 100 {
		bad("SCR_CHECKPOINT_OVERHEAD", s.CheckpointOverhead, "must be a percentage from 0 to 100")
	}
	if s.MPIBufSize < 1 {
		bad("SCR_MPI_BUF_SIZE", s.MPIBufSize, "must be at least 1 byte")
	}
	if s.FileBufSize < 1 {
		bad("SCR_FILE_BUF_SIZE", s.FileBufSize, "must be at least 1 byte")
	}
	if s.Runs == 0 || s.Runs < -1 {
		bad("SCR_RUNS", s.Runs, "must be -1 (unlimited) or 1 or more")
	}
	if s.MinNodes < 0 {
		bad("SCR_MIN_NODES", s.MinNodes, "must be 0 or more")
	}
	for _, t := range s.NodeTests {
		switch t {
		case "ping", "echo", "dir_capacity": // as internal/nodecheck knows them
		default:
			bad("SCR_NODE_TESTS", strings.Join(s.NodeTests, ","), "unknown test %q (known: ping, echo, dir_capacity)", t)
		}
	}
	if s.Watchdog && s.WatchdogTimeout <= 0 {
		bad("SCR_WATCHDOG_TIMEOUT", s.WatchdogTimeout, "must be positive when SCR_WATCHDOG=1")
	}
	if s.WatchdogTimeout < 0 {
		bad("SCR_WATCHDOG_TIMEOUT", s.WatchdogTimeout, "must not be negative")
	}
	if s.WatchdogTimeoutPFS < 0 {
		bad("SCR_WATCHDOG_TIMEOUT_PFS", s.WatchdogTimeoutPFS, "must not be negative")
	}
	if s.LaunchTimeout < 0 {
		bad("SCR_LAUNCH_TIMEOUT", s.LaunchTimeout, "must be 0 (do not wait for the ranks to report in) or positive")
	}
	if s.FinalizeTimeout < 0 {
		bad("SCR_FINALIZE_TIMEOUT", s.FinalizeTimeout, "must be 0 (no limit) or positive")
	}
	if s.WatchInterval <= 0 {
		bad("SCR_WATCH_INTERVAL", s.WatchInterval, "must be positive")
	}
	if s.CommTimeout <= 0 {
		bad("SCR_COMM_TIMEOUT", s.CommTimeout, "must be positive")
	}
	errs = append(errs, validateDescriptors(s)...)
	return errors.Join(errs...)
}

// Resolve is the library's one-call setup: Load with opts, apply the
// application's API strings (SCR_Config syntax) in order, and resolve the
// typed settings. An API string that does not parse is an error naming it.
// Rank 0 should then call cfg.SaveApp() so commands see the API values.
func Resolve(opts Options, api []string) (*Config, *Settings, error) {
	c, err := Load(opts)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range api {
		if err := c.Set(s); err != nil {
			return nil, nil, err
		}
	}
	s, err := c.Settings()
	return c, s, err // s is partly filled on error: only its Warnings may be used
}

// validFlushType: the AXL transfer types SCR accepts.
func validFlushType(t string) bool {
	switch t {
	case "SYNC", "PTHREAD", "DEFAULT", "NATIVE", "BBAPI", "DATAWARP":
		return true
	}
	return false
}

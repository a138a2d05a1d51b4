package config

// Param describes one SCR_* parameter scr-go knows: its default (as the
// string a user would write) and what it means. Parameters not listed here
// can still be read with Config.String.
type Param struct {
	Name    string
	Default string // "" = unset
	Doc     string
}

// Params lists the parameters with their defaults. They follow SCR's
// reference table, except SCR_CACHE_BYPASS (0 here: the cache is really
// used; SCR v3 defaults to 1) and scr-go's own SCR_LAUNCH_TIMEOUT,
// SCR_WATCH_INTERVAL and SCR_COMM_TIMEOUT. SCR_RUNS=-1 means unlimited
// (SCR's scr_run clamps it to 1; we do not).
var Params = []Param{
	{"SCR_ENABLE", "1", "0 disables the library; scr_run just runs the launcher"},
	{"SCR_DEBUG", "0", "verbosity 0..3"},
	{"SCR_PREFIX", "", "prefix directory on the parallel file system (default: working directory)"},
	{"SCR_CONF_FILE", "", "user config file (default <prefix>/.scrconf)"},
	{"SCR_CNTL_BASE", "/dev/shm", "base of the node-local control directory"},
	{"SCR_CACHE_BASE", "/dev/shm", "base of the default cache store"},
	{"SCR_CACHE_SIZE", "1", "datasets kept per store (default store COUNT)"},
	{"SCR_CACHE_BYPASS", "0", "1 = files go straight to the prefix (scr-go default 0: the cache is used)"},
	{"SCR_CACHE_PURGE", "0", "delete every cached dataset at Init"},
	{"SCR_COPY_TYPE", "XOR", "SINGLE, PARTNER, XOR, RS, or FILE (use CKPT entries)"},
	{"SCR_SET_SIZE", "8", "processes per redundancy set (minimum)"},
	{"SCR_SET_FAILURES", "2", "RS: failures tolerated per set"},
	{"SCR_GROUP", "NODE", "default failure group"},
	{"SCR_FLUSH", "10", "flush every Nth checkpoint; 0 disables flushing"},
	{"SCR_FLUSH_TYPE", "SYNC", "SYNC or PTHREAD (async in-process)"},
	{"SCR_FLUSH_ASYNC", "0", "1 = flush in the background"},
	{"SCR_FLUSH_ON_RESTART", "0", "flush every cached dataset during Init"},
	{"SCR_GLOBAL_RESTART", "0", "flush at Init and restart from the prefix"},
	{"SCR_FETCH", "1", "allow fetching a checkpoint from the prefix"},
	{"SCR_FETCH_BYPASS", "0", "read a fetched checkpoint in place in the prefix"},
	{"SCR_DISTRIBUTE", "1", "0 disables the cache rebuild at Init"},
	{"SCR_CURRENT", "", "checkpoint name to restart from"},
	{"SCR_DROP_AFTER_CURRENT", "0", "SCR_CURRENT also drops newer index entries"},
	{"SCR_PREFIX_SIZE", "0", "checkpoints kept in the prefix; 0 = all"},
	{"SCR_PREFIX_PURGE", "0", "delete every indexed dataset at Init"},
	{"SCR_HALT_SECONDS", "0", "halt when this many seconds or fewer are left in the allocation"},
	{"SCR_HALT_EXIT", "0", "the library exits when a halt condition holds"},
	{"SCR_CHECKPOINT_INTERVAL", "0", "Need_checkpoint: every Nth call"},
	{"SCR_CHECKPOINT_SECONDS", "0", "Need_checkpoint: seconds since the last checkpoint"},
	{"SCR_CHECKPOINT_OVERHEAD", "0", "Need_checkpoint: percent of run time spent checkpointing"},
	{"SCR_MPI_BUF_SIZE", "1MiB", "piece size for redundancy encode and rebuild"},
	{"SCR_FILE_BUF_SIZE", "32MiB", "copy buffer size"},
	{"SCR_COPY_METADATA", "1", "copy mode and times with files"},
	{"SCR_CRC_ON_COPY", "0", "CRC32 while encoding"},
	{"SCR_CRC_ON_FLUSH", "1", "CRC32 while flushing and scavenging"},
	{"SCR_CRC_ON_DELETE", "0", "check CRC32 before deleting"},
	{"SCR_USER_NAME", "", "user name in cache paths (default $USER)"},
	{"SCR_JOB_ID", "", "job id in cache paths (default from the resource manager, else defjobid)"},
	{"SCR_JOB_NAME", "", "recorded in dataset metadata"},
	{"SCR_CLUSTER_NAME", "", "recorded in dataset metadata"},
	{"SCR_NODE_NAME", "", "this node's name (default the host name)"},
	{"SCR_END_TIME", "0", "allocation end, unix seconds; 0 = unknown"},
	{"SCR_RUNS", "1", "scr_run: launches per allocation; -1 = unlimited"},
	{"SCR_RETRIES", "0", "legacy: runs = retries+1 when SCR_RUNS is unset"},
	{"SCR_MIN_NODES", "0", "scr_run: nodes needed to relaunch; 0 = as many as the last run"},
	{"SCR_EXCLUDE_NODES", "", "scr_run: host list always treated as down"},
	{"SCR_NODELIST", "", "scr_run: overrides the allocation's node list"},
	{"SCR_NODE_TESTS", "ping,echo,dir_capacity", "scr_run: node tests"},
	{"SCR_WATCHDOG", "0", "scr_run: kill a step that makes no checkpoint progress"},
	{"SCR_WATCHDOG_TIMEOUT", "0", "watchdog: seconds without progress (cache)"},
	{"SCR_WATCHDOG_TIMEOUT_PFS", "0", "watchdog: seconds without progress (prefix)"},
	{"SCR_LAUNCH_TIMEOUT", "60", "scr-go: seconds scr_run waits for a launched run to report in"},
	{"SCR_WATCH_INTERVAL", "2", "scr-go: seconds between node checks while a step runs"},
	{"SCR_FINALIZE_TIMEOUT", "60", "scr-go: seconds scr_run lets a step run on after every rank finished SCR_Finalize; 0 = no limit"},
	{"SCR_COMM_TIMEOUT", "3", "scr-go: seconds of silence before a peer is declared lost"},
	{"SCR_LOG_ENABLE", "0", "1 = write SCR's text event log (with SCR_LOG_TXT_ENABLE)"},
	{"SCR_LOG_TXT_ENABLE", "1", "with SCR_LOG_ENABLE=1: the text log <prefix>/.scr/log"},
}

// unsupportedParam is an SCR parameter scr-go reads but does not act on.
type unsupportedParam struct {
	why   string // what scr-go does instead
	offOK bool   // no warning when the value is off (0): it asks for nothing
}

// unsupported are SCR's parameters (reference 2.3, SCR's config.rst and
// source) that scr-go does not act on: setting one gets a warning naming it
// and the reason, never an error.
var unsupported = map[string]unsupportedParam{
	"SCR_FLUSH_POSTSTAGE":     {why: "an IBM burst-buffer feature; the flush finishes inside the job, and Finalize waits for it", offOK: true},
	"SCR_FLUSH_ASYNC_BW":      {why: "the background flush is not throttled"},
	"SCR_FLUSH_ASYNC_PERCENT": {why: "the background flush is not throttled"},
	"SCR_FLUSH_ASYNC_USLEEP":  {why: "the background flush is polled at the next SCR call, not on a timer"},
	"SCR_FLUSH_WIDTH":         {why: "every rank flushes its own files at once (SCR v3 ignores it too)"},
	"SCR_FETCH_WIDTH":         {why: "every rank fetches its own files at once (SCR v3 ignores it too)"},
	"SCR_AXL_MKDIR":           {why: "scr-go creates the directories itself", offOK: true},
	"SCR_LOG_SYSLOG_ENABLE":   {why: "no syslog messages; the text log (SCR_LOG_ENABLE=1) and the timeline are written", offOK: true},
	"SCR_LOG_DB_ENABLE":       {why: "no MySQL log; the text log (SCR_LOG_ENABLE=1) and the timeline are written", offOK: true},
	"SCR_LOG_DB_DEBUG":        {why: "no MySQL log", offOK: true},
	"SCR_LOG_DB_HOST":         {why: "no MySQL log"},
	"SCR_LOG_DB_USER":         {why: "no MySQL log"},
	"SCR_LOG_DB_PASS":         {why: "no MySQL log"},
	"SCR_LOG_DB_NAME":         {why: "no MySQL log"},
	"SCR_CHECKPOINT_PATTERN":  {why: "there is no LD_PRELOAD interpose library"},
}

// IsUnsupported says whether name is an SCR parameter scr-go reads but does
// not act on, and why.
func IsUnsupported(name string) (string, bool) {
	u, ok := unsupported[name]
	return u.why, ok
}

var defaults = func() map[string]string {
	m := make(map[string]string, len(Params))
	for _, p := range Params {
		m[p.Name] = p.Default
	}
	return m
}()

// descriptorKeys are the parent keys whose entries are collected, not
// overridden: several lines with the same key accumulate.
var descriptorKeys = map[string]bool{"STORE": true, "CKPT": true, "GROUPS": true, "CACHEDIR": true, "CNTLDIR": true}

// IsDescriptorKey reports whether key is a multi-item descriptor key
// (STORE, CKPT, GROUPS, CACHEDIR, CNTLDIR).
func IsDescriptorKey(key string) bool { return descriptorKeys[key] }

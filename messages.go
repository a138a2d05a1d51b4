package scr

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/prefix"
)

// Library messages go to Options.Stderr (default os.Stderr), never to
// stdout, in SCR's form: "SCR <version> WARNING: rank R on NODE: ..." for
// warnings, printed whatever SCR_DEBUG says, and "SCR <version>: rank R on
// NODE: ..." for debug messages, printed when SCR_DEBUG is at least their
// level (1: what each phase did and how long it took, from rank 0; 2: the
// same per rank; 3: every routed file). SCR prints these on stdout; scr-go
// keeps stdout for the application.

// stderr is where library messages go.
func (h *Handle) stderr() io.Writer {
	if h.errw != nil {
		return h.errw
	}
	return os.Stderr
}

// warnf prints a warning (every rank that calls it).
func (h *Handle) warnf(format string, a ...any) {
	fmt.Fprintf(h.stderr(), "SCR %s WARNING: rank %d on %s: %s\n", Version, h.rank, h.nodeName, fmt.Sprintf(format, a...))
}

// debugf prints a debug message when SCR_DEBUG >= level.
func (h *Handle) debugf(level int, format string, a ...any) {
	if h.cfg.Debug < level {
		return
	}
	fmt.Fprintf(h.stderr(), "SCR %s: rank %d on %s: %s\n", Version, h.rank, h.nodeName, fmt.Sprintf(format, a...))
}

// debug0f is debugf on rank 0 only.
func (h *Handle) debug0f(level int, format string, a ...any) {
	if h.rank == 0 {
		h.debugf(level, format, a...)
	}
}

// initMessages prints, on rank 0 at Init, every configuration warning
// (values read but not acted on, with their origin) and, with SCR_DEBUG>=1,
// each parameter's value and origin and the redundancy descriptors, as SCR
// does at Init.
func (h *Handle) initMessages() {
	if h.rank != 0 {
		return
	}
	for _, w := range h.cfg.Warnings {
		h.warnf("%s", w)
	}
	if h.cfg.Debug < 1 {
		return
	}
	for _, p := range config.Params {
		v, ok, err := h.cc.Get(p.Name)
		if err != nil || !ok {
			continue
		}
		h.debugf(1, "%s=%s (%s)", p.Name, v.Raw, v.Origin)
	}
	for _, st := range h.cfg.Stores {
		h.debugf(1, "STORE=%s GROUP=%s COUNT=%d ENABLED=%d FLUSH=%s VIEW=%s", st.Path, st.Group, st.Count, b2i(st.Enabled), st.Flush, st.View)
	}
	for _, d := range h.cfg.Redundancy {
		h.debugf(1, "CKPT=%d INTERVAL=%d OUTPUT=%d ENABLED=%d STORE=%s TYPE=%s GROUP=%s SET_SIZE=%d SET_FAILURES=%d BYPASS=%d",
			d.Index, d.Interval, b2i(d.Output), b2i(d.Enabled), d.Store, d.Type, d.Group, d.SetSize, d.SetFailures, b2i(d.Bypass))
	}
}

// logEvent appends a record to SCR's text log (<prefix>/.scr/log) when
// SCR_LOG_ENABLE=1 and SCR_LOG_TXT_ENABLE=1. Only rank 0 calls it. A log
// that cannot be written is reported once and then left alone, as SCR
// disables it: the job matters more than its diary.
func (h *Handle) logEvent(r prefix.LogRecord) {
	if h.rank != 0 || !h.cfg.LogEnable || !h.cfg.LogTxtEnable || h.logBroken {
		return
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	r.Host, r.JobID = h.nodeName, h.cfg.JobID
	if err := prefix.AppendLog(h.prefix, r); err != nil {
		h.logBroken = true
		h.warnf("text log disabled: %v", err)
	}
}

// secs is a duration as the log's secs field.
func secs(d time.Duration) *float64 { return prefix.Float(d.Seconds()) }

// mbps is a bandwidth in MiB/s for debug messages.
func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / (1 << 20) / d.Seconds()
}

// logHalt logs a halt reason once (rank 0), as SCR logs HALT when it
// records one.
func (h *Handle) logHalt(reason string) {
	if h.rank != 0 || reason == "" || reason == h.haltLogged {
		return
	}
	h.haltLogged = reason
	h.debugf(1, "halt condition: %s", reason)
	h.logEvent(prefix.LogRecord{Event: "HALT", Note: reason})
}

// checkBeforeDelete is SCR_CRC_ON_DELETE (node leader, before removing a
// dataset's directory on its node): every cached file whose filemap has a
// CRC32C (SCR_CRC_ON_COPY=1, or fetched with it) is read again and checked,
// and a mismatch is reported as a warning: the cache device corrupted data
// (SCR prints "bad drive?"). Files read in place from the prefix (bypass)
// are not checked. It changes nothing: the dataset is deleted anyway.
func (h *Handle) checkBeforeDelete(dir string, id int) {
	rankDirs, _ := filepath.Glob(filepath.Join(dir, "rank.*"))
	for _, rd := range rankDirs {
		fm, err := cache.ReadFilemap(rd)
		if err != nil || fm.Dataset.Bypass {
			continue
		}
		for _, f := range fm.Files {
			if f.CRC == nil {
				continue
			}
			one := fm
			one.Files = []cache.File{f}
			if err := cache.Verify(rd, one); errors.Is(err, cache.ErrCorrupt) {
				h.warnf("SCR_CRC_ON_DELETE: dataset %d, rank %d: %v before deletion: the cache device may corrupt data", id, fm.Rank, err)
			}
		}
	}
}

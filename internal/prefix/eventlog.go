package prefix

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// LogFile is SCR's text event log, <prefix>/.scr/log, written when
// SCR_LOG_ENABLE=1 and SCR_LOG_TXT_ENABLE=1 (the default). Its lines are
// SCR's, so SCR users' tools (scr_ckpt_interval.py, scrlog.py) read it:
//
//	2026-12-07T13:59:27: host=node1, jobid=42, event=START, procs=4, nodes=2
//	2026-12-07T13:59:28: host=node1, jobid=42, event=CHECKPOINT_START, note="/dev/shm", dset=1, name="ckpt.1"
//	2026-12-07T13:59:28: host=node1, jobid=42, xfer=CHECKPOINT, from=/dev/shm, to=/dev/shm/u/scr.42/scr.dataset.1, dset=1, name="ckpt.1", secs=0.120000, bytes=268435456.000000, files=4
//
// The time is local, to the second, as SCR writes it. The timeline
// (TimelineFile) stays scr-go's machine-readable record; this log is for
// compatibility.
const LogFile = "log"

// LogRecord is one line of the text log: an event (Event set) or a
// transfer (Xfer set). Optional fields are written only when set, in SCR's
// order: note, dset, name, secs for events; from, to, dset, name, secs,
// bytes, files for transfers; procs and nodes for START.
type LogRecord struct {
	Time  time.Time
	Host  string
	JobID string
	Event string // START, HALT, CHECKPOINT_START, FLUSH_SUCCESS, RUN_START, ...
	Xfer  string // WRITE, CHECKPOINT, OUTPUT, FETCH, FLUSH_SYNC, FLUSH_ASYNC
	Note  string
	Dset  int64 // 0 = none (dataset ids count from 1)
	Name  string
	From  string
	To    string
	Secs  *float64
	Bytes *float64
	Files *int64
	Procs *int64 // START
	Nodes *int64 // START
}

// Float and Int make the optional numeric fields of a LogRecord.
func Float(v float64) *float64 { return &v }
func Int(v int64) *int64       { return &v }

// FormatLog writes one record as SCR writes it (with the newline).
func FormatLog(r LogRecord) string {
	var b strings.Builder
	b.WriteString(r.Time.Local().Format("2006-01-02T15:04:05"))
	fmt.Fprintf(&b, ": host=%s, jobid=%s", r.Host, r.JobID)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	if r.Xfer != "" {
		b.WriteString(", xfer=" + r.Xfer)
		if r.From != "" {
			b.WriteString(", from=" + r.From)
		}
		if r.To != "" {
			b.WriteString(", to=" + r.To)
		}
	} else {
		b.WriteString(", event=" + r.Event)
		if r.Procs != nil {
			fmt.Fprintf(&b, ", procs=%d", *r.Procs)
		}
		if r.Nodes != nil {
			fmt.Fprintf(&b, ", nodes=%d", *r.Nodes)
		}
		if r.Note != "" {
			b.WriteString(`, note="` + r.Note + `"`) // as SCR: no escaping
		}
	}
	if r.Dset > 0 {
		fmt.Fprintf(&b, ", dset=%d", r.Dset)
	}
	if r.Name != "" {
		b.WriteString(`, name="` + r.Name + `"`)
	}
	if r.Secs != nil {
		b.WriteString(", secs=" + f(*r.Secs))
	}
	if r.Xfer != "" {
		if r.Bytes != nil {
			b.WriteString(", bytes=" + f(*r.Bytes))
		}
		if r.Files != nil {
			fmt.Fprintf(&b, ", files=%d", *r.Files)
		}
	}
	// One record is one line: no newline inside a field.
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(b.String()) + "\n"
}

// LogPath is the text log of a prefix.
func LogPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), LogFile) }

// AppendLog appends one record to the prefix's text log with a single
// write on an O_APPEND descriptor (mode 0600, as SCR creates it), so the
// library's rank 0 and scr_run do not interleave within a line.
func AppendLog(prefixDir string, r LogRecord) error {
	return appendLine(prefixDir, LogFile, "log", []byte(FormatLog(r)))
}

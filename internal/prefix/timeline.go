package prefix

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// TimelineFile is the recovery timeline under the prefix: JSON lines, one
// event each (doc/seams.md, section 5).
const TimelineFile = "timeline"

// Event is one line of the timeline. Fields holds the event's extra fields
// (see doc/seams.md); they are written at the top level of the JSON object.
type Event struct {
	Time   time.Time      // when it happened; zero means now
	Source string         // scr_run, library, comm, test
	Event  string         // launch, started, peer_lost, node_down, ...
	Run    int            // SCR_RUN_ID seen by the library, or scr_run's attempt
	Fields map[string]any // extra fields
}

// MarshalJSON writes the event as one flat JSON object.
func (e Event) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(e.Fields)+5)
	for k, v := range e.Fields {
		m[k] = v
	}
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	m["time"] = t.UTC().Format(time.RFC3339Nano)
	m["unix"] = float64(t.UnixNano()) / 1e9
	m["source"] = e.Source
	m["event"] = e.Event
	m["run"] = e.Run
	return json.Marshal(m)
}

// UnmarshalJSON reads one flat JSON object back into an Event.
func (e *Event) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*e = Event{Fields: map[string]any{}}
	for k, v := range m {
		switch k {
		case "time":
			s, _ := v.(string)
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return fmt.Errorf("timeline event: bad time %q: %w", s, err)
			}
			e.Time = t
		case "unix":
			// derived from time
		case "source":
			e.Source, _ = v.(string)
		case "event":
			e.Event, _ = v.(string)
		case "run":
			f, _ := v.(float64)
			e.Run = int(f)
		default:
			e.Fields[k] = v
		}
	}
	return nil
}

// TimelinePath is the timeline file of a prefix directory.
func TimelinePath(prefixDir string) string {
	return filepath.Join(MetaDir(prefixDir), TimelineFile)
}

// MetaDir is the hidden metadata directory of a prefix: <prefix>/.scr.
func MetaDir(prefixDir string) string {
	return filepath.Join(prefixDir, ".scr")
}

// AppendTimeline appends one event to the prefix's timeline. The line is
// written with a single write on an O_APPEND descriptor, so concurrent
// writers (scr_run and the ranks) do not interleave within a line.
func AppendTimeline(prefixDir string, ev Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("timeline: encode %s event: %w", ev.Event, err)
	}
	return appendLine(prefixDir, TimelineFile, "timeline", append(line, '\n'))
}

// appendLine appends one line to a file of the metadata directory with a
// single write on an O_APPEND descriptor (mode 0600), so concurrent
// writers do not interleave within a line.
func appendLine(prefixDir, name, what string, line []byte) error {
	dir := MetaDir(prefixDir)
	if err := EnsureMetaDir(prefixDir); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", what, path, err)
	}
	_, werr := f.Write(line)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("%s: append to %s: %w", what, path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("%s: close %s: %w", what, path, cerr)
	}
	return nil
}

// ReadTimeline returns every event of the prefix's timeline, in file order.
// A missing file is an empty timeline. A torn last line (a writer died
// mid-write) is skipped; any other bad line is an error naming its number.
func ReadTimeline(prefixDir string) ([]Event, error) {
	evs, _, err := ReadTimelineFrom(prefixDir, 0)
	return evs, err
}

// ReadTimelineFrom reads the events that start at or after byte offset off
// and returns the offset to continue from, so a watcher can poll the file
// without re-reading it. Only whole lines (ending in '\n') are consumed.
func ReadTimelineFrom(prefixDir string, off int64) ([]Event, int64, error) {
	var evs []Event
	next, err := scanTimeline(prefixDir, off, func(ev Event, _ int64) bool {
		evs = append(evs, ev)
		return true
	})
	return evs, next, err
}

// scanTimeline calls fn for each whole line from offset off, with the offset
// just after that line, until fn returns false. It returns the offset after
// the last line consumed.
func scanTimeline(prefixDir string, off int64, fn func(ev Event, end int64) bool) (int64, error) {
	path := TimelinePath(prefixDir)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return off, nil
	}
	if err != nil {
		return off, fmt.Errorf("timeline: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, fmt.Errorf("timeline: seek %s: %w", path, err)
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var ev Event
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				return off, fmt.Errorf("timeline: %s: bad line at byte %d: %w", path, off, jerr)
			}
			off += int64(len(line))
			if !fn(ev, off) {
				return off, nil
			}
		}
		if err == io.EOF {
			return off, nil
		}
		if err != nil {
			return off, fmt.Errorf("timeline: read %s: %w", path, err)
		}
	}
}

// WaitTimeline polls the timeline from offset off until match returns true
// for an event, the context ends, or reading fails. It returns the matching
// event and the offset just after it.
func WaitTimeline(ctx context.Context, prefixDir string, off int64, poll time.Duration, match func(Event) bool) (Event, int64, error) {
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		var found *Event
		next, err := scanTimeline(prefixDir, off, func(ev Event, end int64) bool {
			if match(ev) {
				found = &ev
				return false
			}
			return true
		})
		if found != nil {
			return *found, next, nil
		}
		if err != nil {
			return Event{}, next, err
		}
		off = next
		select {
		case <-ctx.Done():
			return Event{}, off, ctx.Err()
		case <-t.C:
		}
	}
}

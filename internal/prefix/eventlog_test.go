package prefix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The lines are SCR's (src/scr_log.c): what scrlog.py and
// scr_ckpt_interval.py parse.
func TestFormatLog(t *testing.T) {
	at := time.Date(2026, 12, 7, 13, 59, 27, 500, time.Local)
	tests := []struct {
		r    LogRecord
		want string
	}{
		{LogRecord{Time: at, Host: "n1", JobID: "42", Event: "START", Procs: Int(4), Nodes: Int(2)},
			"2026-12-07T13:59:27: host=n1, jobid=42, event=START, procs=4, nodes=2\n"},
		{LogRecord{Time: at, Host: "n1", JobID: "42", Event: "HALT", Note: "SCR_FINALIZE_CALLED"},
			`2026-12-07T13:59:27: host=n1, jobid=42, event=HALT, note="SCR_FINALIZE_CALLED"` + "\n"},
		{LogRecord{Time: at, Host: "n1", JobID: "42", Event: "CHECKPOINT_END", Note: "/dev/shm", Dset: 3, Name: "ckpt.3", Secs: Float(0.25)},
			`2026-12-07T13:59:27: host=n1, jobid=42, event=CHECKPOINT_END, note="/dev/shm", dset=3, name="ckpt.3", secs=0.250000` + "\n"},
		{LogRecord{Time: at, Host: "n1", JobID: "42", Event: "COMPUTE_START"},
			"2026-12-07T13:59:27: host=n1, jobid=42, event=COMPUTE_START\n"},
		{LogRecord{Time: at, Host: "n1", JobID: "42", Xfer: "FLUSH_SYNC", From: "/dev/shm/u/scr.42/scr.dataset.3", To: "/p", Dset: 3, Name: "ckpt.3", Secs: Float(1.5), Bytes: Float(1 << 20), Files: Int(4)},
			`2026-12-07T13:59:27: host=n1, jobid=42, xfer=FLUSH_SYNC, from=/dev/shm/u/scr.42/scr.dataset.3, to=/p, dset=3, name="ckpt.3", secs=1.500000, bytes=1048576.000000, files=4` + "\n"},
		{LogRecord{Time: at, Host: "n1", JobID: "42", Event: "NODE_FAIL", Note: "n2: Failed\nto ping"},
			`2026-12-07T13:59:27: host=n1, jobid=42, event=NODE_FAIL, note="n2: Failed to ping"` + "\n"},
	}
	for _, tc := range tests {
		if got := FormatLog(tc.r); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestAppendLog(t *testing.T) {
	dir := t.TempDir()
	for _, ev := range []string{"START", "COMPUTE_START"} {
		if err := AppendLog(dir, LogRecord{Time: time.Now(), Host: "n1", JobID: "1", Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, ".scr", "log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "event=COMPUTE_START") {
		t.Fatalf("%q", b)
	}
	if st, _ := os.Stat(LogPath(dir)); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
}

package scr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/testio"
)

// These tests check that parameters SCR users set are acted on (or named
// in a warning): SCR's config files load, SCR_DEBUG, the text log,
// SCR_JOB_NAME / SCR_CLUSTER_NAME, SCR_FETCH_BYPASS, SCR_COPY_METADATA,
// SCR_CRC_ON_DELETE.

// An SCR config file with what scr-go does not have loads: Init goes on and
// rank 0 prints one warning per item, with the file and line.
func TestSCRConfigFileLoadsWithWarnings(t *testing.T) {
	j := confJob(t)
	var msgs testio.LockedBuffer
	j.stderr = &msgs
	writeConf(t, filepath.Join(j.prefix, ".scrconf"),
		"SCR_FLUHS=1",
		"SCR_FLUSH_TYPE=BBAPI",
		"SCR_FLUSH_POSTSTAGE=1",
		"SCR_COPY_TYPE=FILE",
		"CKPT=0 TYPE=XOR SET_SIZE=4",
		"CKPT=1 INTERVAL=4 TYPE=RAID6",
		"SCR_CACHE_SIZE=2",
		"SCR_FLUSH=0")
	o := ckptRun(t, j, 4, nil, nil)
	if strings.Join(o.schemes, ",") != "XOR,XOR,XOR,XOR" {
		t.Errorf("schemes %v: the broken CKPT=1 must be disabled", o.schemes)
	}
	out := msgs.String()
	conf := filepath.Join(j.prefix, ".scrconf")
	for _, want := range []string{
		"WARNING: rank 0 on n1: config: " + conf + " line 1: unknown parameter SCR_FLUHS (typo?)",
		conf + " line 2: SCR_FLUSH_TYPE=BBAPI is not available in scr-go: flushing with PTHREAD",
		conf + " line 3: SCR_FLUSH_POSTSTAGE is not supported by scr-go",
		conf + " line 6: CKPT=1: TYPE=RAID6 is not SINGLE, PARTNER, XOR or RS: the descriptor is disabled",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "SCR_FLUHS"); n != 1 {
		t.Errorf("the warning is printed %d times, want once (rank 0, at Init)", n)
	}
}

func TestDebugMessagesByLevel(t *testing.T) {
	for _, level := range []string{"0", "1", "2"} {
		j := newJob(t, map[string]string{"SCR_DEBUG": level, "SCR_FLUSH": "1"})
		var msgs testio.LockedBuffer
		j.stderr = &msgs
		mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
			if err := checkpoint(ctx, h, 1, 100, 0); err != nil {
				return err
			}
			return h.Finalize(ctx)
		}))
		out := msgs.String()
		switch level {
		case "0":
			if out != "" {
				t.Errorf("SCR_DEBUG=0 printed:\n%s", out)
			}
		case "1":
			for _, want := range []string{
				"SCR " + Version + ": rank 0 on n1: SCR_FLUSH=1 (environment)",
				"SCR_CACHE_SIZE=1 (environment)",
				"CKPT=0 INTERVAL=1 OUTPUT=0 ENABLED=1 STORE=",
				"Init: 4 ranks on 4 nodes",
				"Complete(ckpt.1): 4 files, 400 bytes",
				"flushed ckpt.1 (dataset 1) to " + j.prefix,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("SCR_DEBUG=1: missing %q in:\n%s", want, out)
				}
			}
			if strings.Contains(out, "rank 1 on") {
				t.Errorf("SCR_DEBUG=1 prints from rank 0 only:\n%s", out)
			}
		case "2":
			if !strings.Contains(out, "rank 3 on n4: StartOutput(ckpt.1): writing to ") {
				t.Errorf("SCR_DEBUG=2: no per-rank message:\n%s", out)
			}
		}
	}
}

// The text log has SCR's lines, which SCR's scrlog.py parses.
func TestTextLog(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_LOG_ENABLE": "1", "SCR_FLUSH": "2", "SCR_JOB_ID": "77"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		for step := 1; step <= 2; step++ {
			if err := checkpoint(ctx, h, step, 100, 0); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	}))
	b, err := os.ReadFile(prefix.LogPath(j.prefix))
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	line := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: host=n1, jobid=77, (event|xfer)=([A-Z_]+)`)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line not in SCR's form: %q", l)
		}
		labels = append(labels, m[2])
	}
	want := "START COMPUTE_START " +
		"COMPUTE_END CHECKPOINT_START WRITE CHECKPOINT_END CHECKPOINT COMPUTE_START " +
		"COMPUTE_END CHECKPOINT_START WRITE CHECKPOINT_END CHECKPOINT FLUSH_START FLUSH_SUCCESS FLUSH_SYNC COMPUTE_START " +
		"HALT"
	if got := strings.Join(labels, " "); got != want {
		t.Errorf("events\n got %s\nwant %s\n%s", got, want, b)
	}
	for _, want := range []string{
		"event=START, procs=4, nodes=4\n",
		`event=CHECKPOINT_END, note="` + j.nodeBase("n1") + `", dset=2, name="ckpt.2", secs=`,
		`xfer=FLUSH_SYNC, from=` + j.cacheDir("n1") + `/scr.dataset.2, to=` + j.prefix + `, dset=2, name="ckpt.2", secs=`,
		`event=HALT, note="SCR_FINALIZE_CALLED"`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("missing %q in\n%s", want, b)
		}
	}

	// SCR_LOG_TXT_ENABLE=0, or no SCR_LOG_ENABLE: no log.
	for _, env := range []map[string]string{{"SCR_LOG_ENABLE": "1", "SCR_LOG_TXT_ENABLE": "0"}, {}} {
		j := newJob(t, env)
		mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error { return h.Finalize(ctx) }))
		if _, err := os.Stat(prefix.LogPath(j.prefix)); !os.IsNotExist(err) {
			t.Errorf("%v: a log was written (%v)", env, err)
		}
	}
}

func TestJobAndClusterNameInMetadata(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_JOB_NAME": "climate run", "SCR_CLUSTER_NAME": "quartz", "SCR_FLUSH": "1"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 10, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	ix, err := prefix.ReadIndex(j.prefix)
	if err != nil {
		t.Fatal(err)
	}
	e := ix.ByName("ckpt.1")
	s, err := prefix.ReadSummary(j.prefix, 1)
	if e == nil || err != nil || e.Dataset.JobName != "climate run" || e.Dataset.Cluster != "quartz" ||
		s.Dataset.JobName != "climate run" || s.Dataset.Cluster != "quartz" {
		t.Fatalf("index %+v, summary %+v %v", e, s, err)
	}
}

// SCR_FETCH_BYPASS: a checkpoint fetched from the prefix is read in place;
// the cache holds its metadata only.
func TestFetchBypass(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_FLUSH": "1"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 300, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	for _, n := range four {
		j.wipe(n)
	}
	var routed results[string]
	mustAll(t, j.run(four, map[string]string{"SCR_FETCH_BYPASS": "1"}, func(ctx context.Context, h *Handle) error {
		name, ok, err := h.HaveRestart(ctx)
		if err != nil || !ok || name != "ckpt.1" {
			t.Errorf("rank %d: HaveRestart %q %v %v", h.Rank(), name, ok, err)
			return err
		}
		h.StartRestart(ctx)
		p, err := h.Route(fileName(1, h.Rank()))
		if err != nil {
			return err
		}
		routed.set(h.Rank(), p)
		b, err := os.ReadFile(p)
		return h.CompleteRestart(ctx, err == nil && bytes.Equal(b, content(h.Rank(), 1, 300)))
	}))
	for r, p := range routed.m {
		if want := filepath.Join(j.prefix, fileName(1, r)); p != want {
			t.Errorf("rank %d reads %s, want the prefix file %s", r, p, want)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(j.cacheDir("n1"), "scr.dataset.1", "rank.0", "ckpt.1")); len(m) != 0 {
		t.Errorf("the data was copied into the cache: %v", m)
	}
}

// SCR_COPY_METADATA: the flushed file keeps the cached file's mode and
// modification time, or, with 0, gets a new file's.
func TestCopyMetadata(t *testing.T) {
	for _, copyMeta := range []string{"1", "0"} {
		j := newJob(t, map[string]string{"SCR_FLUSH": "1", "SCR_COPY_METADATA": copyMeta})
		mustAll(t, j.run([]string{"n1"}, nil, func(ctx context.Context, h *Handle) error {
			if err := checkpoint(ctx, h, 1, 10, 0); err != nil { // written 0640
				return err
			}
			return h.Finalize(ctx)
		}))
		st, err := os.Stat(filepath.Join(j.prefix, fileName(1, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if copyMeta == "1" && st.Mode().Perm() != 0o640 {
			t.Errorf("SCR_COPY_METADATA=1: mode %v, want the cached file's 0640", st.Mode())
		}
		if copyMeta == "0" && st.Mode().Perm() == 0o640 {
			t.Errorf("SCR_COPY_METADATA=0: mode %v copied", st.Mode())
		}
	}
}

// SCR_CRC_ON_DELETE: a cached file damaged before its dataset is deleted is
// reported (SCR's "bad drive?").
func TestCRCOnDelete(t *testing.T) {
	j := newJob(t, map[string]string{"SCR_CRC_ON_COPY": "1", "SCR_CRC_ON_DELETE": "1"})
	var msgs testio.LockedBuffer
	j.stderr = &msgs
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 64, 0); err != nil {
			return err
		}
		if h.Rank() == 2 {
			p := filepath.Join(j.cacheDir("n3"), "scr.dataset.1", "rank.2", fileName(1, 2))
			b, _ := os.ReadFile(p)
			b[0] ^= 0xff
			os.WriteFile(p, b, 0o640)
		}
		if err := h.world.Barrier(ctx); err != nil {
			return err
		}
		return checkpoint(ctx, h, 2, 64, 0) // evicts ckpt.1 (SCR_CACHE_SIZE=1)
	}))
	out := msgs.String()
	if !strings.Contains(out, "WARNING: rank 2 on n3: SCR_CRC_ON_DELETE: dataset 1, rank 2:") || strings.Count(out, "SCR_CRC_ON_DELETE") != 1 {
		t.Errorf("messages:\n%s", out)
	}
}

// Shared files in bypass mode (MPI-IO, HDF5): every rank routes and writes
// its part of one file; SCR's rule makes the lowest rank its owner. A
// restart, from the cache's record or fetched from the prefix, gives every
// rank the file in place. Without bypass it is an error that says so.
func TestSharedFileInBypass(t *testing.T) {
	const part = 1000
	write := func(ctx context.Context, h *Handle) error {
		if err := h.StartOutput(ctx, "ckpt.1", Checkpoint); err != nil {
			return err
		}
		p, err := h.Route("ckpt.1/shared.dat")
		if err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			_, err = f.WriteAt(content(h.Rank(), 1, part), int64(h.Rank()*part))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		own, rerr := h.Route(fileName(1, h.Rank()))
		if err == nil && rerr == nil {
			err = os.WriteFile(own, content(h.Rank(), 1, 10), 0o644)
		}
		return h.Complete(ctx, err == nil && rerr == nil)
	}
	read := func(ctx context.Context, h *Handle) error {
		name, ok, err := h.HaveRestart(ctx)
		if err != nil || !ok || name != "ckpt.1" {
			return fmt.Errorf("HaveRestart %q %v %v", name, ok, err)
		}
		h.StartRestart(ctx)
		p, err := h.Route("ckpt.1/shared.dat")
		good := err == nil
		if good {
			b, err := os.ReadFile(p)
			good = err == nil && len(b) == 4*part && bytes.Equal(b[h.Rank()*part:(h.Rank()+1)*part], content(h.Rank(), 1, part))
		}
		return h.CompleteRestart(ctx, good)
	}

	j := newJob(t, map[string]string{"SCR_CACHE_BYPASS": "1", "SCR_COPY_TYPE": "XOR"})
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		if err := write(ctx, h); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	s, err := prefix.ReadSummary(j.prefix, 1)
	if err != nil || s.Dataset.Files != 5 || s.Dataset.Size != 4*part+40 {
		t.Fatalf("summary %+v %v: want the shared file counted once", s, err)
	}
	for r := 0; r < 4; r++ {
		files, err := prefix.RankFiles(j.prefix, s, r)
		if err != nil || len(files) != map[bool]int{true: 2, false: 1}[r == 0] {
			t.Errorf("rank %d rank2file %+v %v: only rank 0 owns the shared file", r, files, err)
		}
	}
	// Restart from the cache's record (the files are in the prefix).
	mustAll(t, j.run(four, nil, read))
	// And fetched from the prefix (the caches are gone).
	for _, n := range four {
		j.wipe(n)
	}
	mustAll(t, j.run(four, nil, read))
	var from []string
	for _, e := range j.events("restart") {
		from = append(from, fmt.Sprint(e.Fields["from"]))
	}
	if strings.Join(from, ",") != "cache,prefix" {
		t.Errorf("restarts from %v, want cache then prefix", from)
	}

	// In the cache, a file two ranks write is an error naming bypass.
	j = newJob(t, nil)
	errs := j.run(four, nil, write)
	var de *DuplicateError
	if !errors.As(errs[0], &de) || de.Path != "ckpt.1/shared.dat" || !strings.Contains(errs[0].Error(), "SCR_CACHE_BYPASS=1") {
		t.Fatalf("without bypass: %v", errs[0])
	}
}

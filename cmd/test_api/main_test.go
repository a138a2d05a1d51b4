package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/prefix"
)

type world struct {
	base, prefix string
	env          map[string]string
}

func newWorld(t *testing.T, env map[string]string) *world {
	base := t.TempDir()
	w := &world{base: base, prefix: filepath.Join(base, "prefix"), env: map[string]string{
		"SCR_JOB_ID": "5", "SCR_USER_NAME": "u", "SCR_COPY_TYPE": "SINGLE", "SCR_FLUSH": "0",
	}}
	w.env["SCR_PREFIX"] = w.prefix
	for k, v := range env {
		w.env[k] = v
	}
	os.MkdirAll(w.prefix, 0o755)
	return w
}

// run runs test_api's Run on one goroutine per host and returns rank 0's
// output and every rank's error.
func (w *world) run(t *testing.T, hosts []string, o Options) (string, []error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	comms := comm.NewLocal(hosts)
	errs := make([]error, len(hosts))
	var out bytes.Buffer
	var wg sync.WaitGroup
	for r, host := range hosts {
		m := map[string]string{"SCR_CACHE_BASE": filepath.Join(w.base, host), "SCR_CNTL_BASE": filepath.Join(w.base, host), "SCR_NODE_NAME": host}
		for k, v := range w.env {
			m[k] = v
		}
		oo := o
		oo.Env = func(k string) (string, bool) { v, ok := m[k]; return v, ok }
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			var sink bytes.Buffer
			dst := &sink
			if r == 0 {
				dst = &out
			}
			errs[r] = Run(ctx, comms[r], oo, dst)
		}(r)
	}
	wg.Wait()
	return out.String(), errs
}

func noErr(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

var hosts = []string{"a", "b", "c", "d"}

func TestRunTwiceRestartsAndContinues(t *testing.T) {
	w := newWorld(t, nil)
	o := Options{Size: 10_000, Times: 2}
	out, errs := w.run(t, hosts, o)
	noErr(t, errs)
	if !strings.Contains(out, "Completed checkpoint 3:") || strings.Contains(out, "Restarting") {
		t.Fatalf("first run output:\n%s", out)
	}
	out, errs = w.run(t, hosts, o)
	noErr(t, errs)
	if !strings.Contains(out, "Restarting from checkpoint named ckpt.3") || !strings.Contains(out, "Completed checkpoint 6:") {
		t.Fatalf("second run output:\n%s", out)
	}
}

func TestCorruptCheckpointFailsTheRestartCheck(t *testing.T) {
	w := newWorld(t, nil)
	o := Options{Size: 1000, Times: 0}
	_, errs := w.run(t, hosts, o)
	noErr(t, errs)
	// Same size, one byte changed, no CRC: only test_api's check sees it.
	p := filepath.Join(w.base, "c", "u", "scr.5", "scr.dataset.1", "rank.2", "ckpt.1", "rank_2.ckpt")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[500] ^= 0x55
	os.WriteFile(p, b, 0o644)
	out, errs := w.run(t, hosts, o)
	if !errors.Is(errs[2], ErrRestartCheck) || !strings.Contains(errs[2].Error(), "Invalid value in buffer") {
		t.Fatalf("rank 2: %v", errs[2])
	}
	for r, err := range errs {
		if exitCode(err) != 3 {
			t.Fatalf("rank %d exit %d (%v), want 3", r, exitCode(err), err)
		}
	}
	if !strings.Contains(out, "At least one rank (perhaps all) did not find its checkpoint") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestNoSCRAndFlushOutput(t *testing.T) {
	w := newWorld(t, nil)
	_, errs := w.run(t, hosts[:2], Options{Size: 100, Times: 1, NoSCR: true, Path: "plain"})
	noErr(t, errs)
	if _, err := check(filepath.Join(w.prefix, "plain", "ckpt.2", "rank_1.ckpt"), 1, 100); err != nil {
		t.Fatal(err)
	}
	_, errs = w.run(t, hosts[:2], Options{Size: 100, Times: 3, Flush: 2, Output: 3, NoSCRRestart: true})
	noErr(t, errs)
	// Writes 1..4: 2 and 4 flushed as checkpoint+output, 3 is pure output.
	for _, name := range []string{"ckpt.2", "output.3", "ckpt.4"} {
		if _, err := check(filepath.Join(w.prefix, name, "rank_1.ckpt"), 1, 100); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(w.prefix, "ckpt.1")); !os.IsNotExist(err) {
		t.Fatalf("ckpt.1 must stay in cache: %v", err)
	}
}

func TestParse(t *testing.T) {
	o, err := parse([]string{"--size", "64MB", "-t", "3", "--noscr", "--path", "x"})
	if err != nil || o.Size != 64<<20 || o.Times != 3 || !o.NoSCR || o.Path != "x" {
		t.Fatalf("%+v %v", o, err)
	}
	if _, err := parse([]string{"--size", "lots"}); !errors.Is(err, ErrUsage) {
		t.Fatalf("bad size: %v", err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "EXIT STATUS") {
		t.Fatalf("--help: %d %q", code, out.String())
	}
	if code := run(context.Background(), []string{"--bogus"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag exit %d", code)
	}
}

func TestHaltStopsTheRun(t *testing.T) {
	w := newWorld(t, nil)
	two := int64(2)
	if _, err := prefix.UpdateHalt(context.Background(), w.prefix, func(h *prefix.Halt, _ bool) error {
		h.CheckpointsLeft = &two
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, errs := w.run(t, hosts, Options{Size: 100, Times: 10})
	noErr(t, errs)
	if !strings.Contains(out, "Halting after checkpoint 2: NO_CHECKPOINTS_LEFT") || strings.Contains(out, "Completed checkpoint 3") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestCurrentRestartsFromTheNamedCheckpoint(t *testing.T) {
	w := newWorld(t, map[string]string{"SCR_FLUSH": "1", "SCR_CACHE_SIZE": "3"})
	_, errs := w.run(t, hosts, Options{Size: 500, Times: 2})
	noErr(t, errs)
	out, errs := w.run(t, hosts, Options{Size: 500, Times: 1, Current: "ckpt.2"})
	noErr(t, errs)
	if !strings.Contains(out, "Restarting from checkpoint named ckpt.2") || !strings.Contains(out, "Completed checkpoint 4:") {
		t.Fatalf("output:\n%s", out)
	}
	// Without SCR's restart: read the prefix copy directly.
	out, errs = w.run(t, hosts, Options{Size: 500, Times: 0, Current: "ckpt.1", NoSCRRestart: true})
	noErr(t, errs)
	if !strings.Contains(out, "Completed checkpoint 2:") {
		t.Fatalf("output:\n%s", out)
	}
}

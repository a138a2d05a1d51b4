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
	if _, err := check(filepath.Join(w.prefix, "plain", "ckpt.2", "rank_1.ckpt"), 1, 100, fileLayout(Options{Size: 100}, 1, 2)); err != nil {
		t.Fatal(err)
	}
	_, errs = w.run(t, hosts[:2], Options{Size: 100, Times: 3, Flush: 2, Output: 3, NoSCRRestart: true})
	noErr(t, errs)
	// Writes 1..4: 2 and 4 flushed as checkpoint+output, 3 is pure output.
	for _, name := range []string{"ckpt.2", "output.3", "ckpt.4"} {
		if _, err := check(filepath.Join(w.prefix, name, "rank_1.ckpt"), 1, 100, fileLayout(Options{Size: 100}, 1, 2)); err != nil {
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
	// Sizes and times that do not fit: usage errors (exit 2 with a
	// message), not a panic of the allocation (1EB) or a duration that
	// wrapped (--seconds 99999999999).
	for _, args := range [][]string{{"--size", "1EB"}, {"--size", "16EB"}, {"--seconds", "99999999999"}} {
		errb.Reset()
		if code := run(context.Background(), args, &out, &errb); code != 2 || !strings.Contains(errb.String(), strings.TrimLeft(args[0], "-")) {
			t.Errorf("%v: exit %d: %s", args, code, errb.String())
		}
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

func TestParseSCROptions(t *testing.T) {
	o, err := parse([]string{"-w", "3", "-k", "2", "--config-api=yes", "-c", "no", "--shared-file", "--global-store", "/g", "-s", "1kb"})
	if err != nil || o.Reduce != 3 || o.Kernel != 2 || !o.ConfigAPI || !o.NoConfFile || !o.SharedFile || o.GlobalStore != "/g" || o.Size != 1024 {
		t.Fatalf("%+v %v", o, err)
	}
	if o, err := parse(nil); err != nil || o.NoConfFile || o.ConfigAPI {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	for _, bad := range [][]string{{"-k", "4"}, {"-a", "maybe"}, {"-w", "-1"}} {
		if _, err := parse(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v", bad, err)
		}
	}
}

// --shared-file: one file, each rank's part at its offset; in bypass mode
// it checkpoints and restarts; in the cache it is refused.
func TestSharedFile(t *testing.T) {
	w := newWorld(t, map[string]string{"SCR_CACHE_BYPASS": "1"})
	_, errs := w.run(t, hosts, Options{Size: 1000, Times: 1, SharedFile: true})
	noErr(t, errs)
	p := filepath.Join(w.prefix, "ckpt.2", "rank_shared.ckpt")
	for r := range hosts {
		if step, err := check(p, r, 1000, fileLayout(Options{Size: 1000, SharedFile: true}, r, len(hosts))); err != nil || step != 2 {
			t.Fatalf("rank %d's part: step %d %v", r, step, err)
		}
	}
	out, errs := w.run(t, hosts, Options{Size: 1000, Times: 1, SharedFile: true})
	noErr(t, errs)
	if !strings.Contains(out, "Restarting from checkpoint named ckpt.2") || !strings.Contains(out, "Completed checkpoint 4:") {
		t.Fatalf("restart:\n%s", out)
	}
	w = newWorld(t, nil)
	_, errs = w.run(t, hosts, Options{Size: 100, Times: 0, SharedFile: true})
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "bypass") {
		t.Fatalf("in the cache: %v", errs[0])
	}
}

// --config-api sets SCR's test configuration; --conf-file=no ignores the
// file SCR_CONF_FILE names; --global-store adds a WORLD store.
func TestConfigOptions(t *testing.T) {
	w := newWorld(t, nil)
	delete(w.env, "SCR_COPY_TYPE") // the API's FILE must win
	conf := filepath.Join(w.base, "my.conf")
	os.WriteFile(conf, []byte("SCR_FLUSH=1\n"), 0o644)
	w.env["SCR_CONF_FILE"] = conf
	delete(w.env, "SCR_FLUSH")
	for _, tc := range []struct {
		o       Options
		flushed bool
	}{{Options{Size: 100, Times: 0}, true}, {Options{Size: 100, Times: 0, NoConfFile: true}, false}} {
		os.RemoveAll(filepath.Join(w.prefix, "ckpt.1"))
		os.RemoveAll(filepath.Join(w.prefix, ".scr"))
		_, errs := w.run(t, hosts[:2], tc.o)
		noErr(t, errs)
		_, err := os.Stat(filepath.Join(w.prefix, "ckpt.1", "rank_1.ckpt"))
		if (err == nil) != tc.flushed {
			t.Errorf("NoConfFile=%v: ckpt.1 on the prefix: %v (SCR_FLUSH=1 comes from the file)", tc.o.NoConfFile, err)
		}
	}
	// The API values land in app.conf. (SCR_COPY_TYPE in the environment
	// wins over the API's FILE, so the test writes nothing to /dev/shm.)
	w.env["SCR_COPY_TYPE"] = "SINGLE"
	_, errs := w.run(t, hosts[:2], Options{Size: 100, Times: 0, ConfigAPI: true, GlobalStore: filepath.Join(w.base, "global")})
	noErr(t, errs)
	b, err := os.ReadFile(filepath.Join(w.prefix, ".scr", "app.conf"))
	if err != nil || !strings.Contains(string(b), "CKPT=0 INTERVAL=1 GROUP=NODE STORE=/dev/shm TYPE=XOR SET_SIZE=16") ||
		!strings.Contains(string(b), "SCR_COPY_TYPE=FILE") || !strings.Contains(string(b), "GROUP=WORLD") {
		t.Fatalf("app.conf: %v\n%s", err, b)
	}
}

func TestKernels(t *testing.T) {
	w := newWorld(t, nil)
	for k, want := range map[int]string{0: "CPU cost 2:  5 iters, ", 2: "Allreduce cost 2:  5 iters, ", 3: "Allreduce iteration times end"} {
		out, errs := w.run(t, hosts[:2], Options{Size: 10, Times: 0, Reduce: 5, Kernel: k, NoSCR: true})
		noErr(t, errs)
		if !strings.Contains(out, want) {
			t.Errorf("kernel %d: want %q in\n%s", k, want, out)
		}
	}
}

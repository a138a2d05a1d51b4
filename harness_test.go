package scr

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/prefix"
)

// job is a simulated allocation: each node has its own cache and control
// base in real tmpfs (t.TempDir or /dev/shm), one prefix for all.
type job struct {
	t      *testing.T
	base   string
	prefix string
	env    map[string]string // for every rank
	stderr io.Writer         // Options.Stderr of every rank (nil: os.Stderr)
}

func newJob(t *testing.T, env map[string]string) *job {
	t.Helper()
	base := t.TempDir()
	j := &job{t: t, base: base, prefix: filepath.Join(base, "prefix"), env: map[string]string{
		"SCR_JOB_ID":     "77",
		"SCR_USER_NAME":  "tester",
		"SCR_COPY_TYPE":  "SINGLE",
		"SCR_FLUSH":      "0",
		"SCR_CACHE_SIZE": "1",
	}}
	j.env["SCR_PREFIX"] = j.prefix
	for k, v := range env {
		j.env[k] = v
	}
	os.MkdirAll(j.prefix, 0o755)
	return j
}

func (j *job) nodeBase(node string) string { return filepath.Join(j.base, "nodes", node, "shm") }

// cacheDir is a node's cache directory of this job.
func (j *job) cacheDir(node string) string {
	return filepath.Join(j.nodeBase(node), "tester", "scr.77")
}

// wipe removes everything a node holds (its node-local storage is gone).
func (j *job) wipe(node string) {
	if err := os.RemoveAll(j.nodeBase(node)); err != nil {
		j.t.Fatal(err)
	}
}

func (j *job) envFor(node string, extra map[string]string) func(string) (string, bool) {
	m := map[string]string{}
	for k, v := range j.env {
		m[k] = v
	}
	m["SCR_CACHE_BASE"] = j.nodeBase(node)
	m["SCR_CNTL_BASE"] = j.nodeBase(node)
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// run starts one rank per entry of hosts as goroutines over comm.NewLocal,
// calls Init, fn, and returns each rank's error (Init's or fn's).
func (j *job) run(hosts []string, extra map[string]string, fn func(ctx context.Context, h *Handle) error) []error {
	j.t.Helper()
	return j.runEnv(hosts, extra, fn)
}

// runB is run for benchmarks (no *testing.T).
func (j *job) runB(hosts []string, fn func(ctx context.Context, h *Handle) error) []error {
	return j.runEnv(hosts, nil, fn)
}

// runWithConfig is run with Options.Config on every rank.
func (j *job) runWithConfig(hosts []string, api []string, fn func(ctx context.Context, h *Handle) error) []error {
	return j.runOpts(hosts, nil, api, fn)
}

func (j *job) runEnv(hosts []string, extra map[string]string, fn func(ctx context.Context, h *Handle) error) []error {
	return j.runOpts(hosts, extra, nil, fn)
}

// runPerNode is run with extra environment per node and Options.Config.
func (j *job) runPerNode(hosts []string, extra func(node string) map[string]string, api []string, fn func(ctx context.Context, h *Handle) error) []error {
	return j.runAll(hosts, extra, api, fn)
}

func (j *job) runOpts(hosts []string, extra map[string]string, api []string, fn func(ctx context.Context, h *Handle) error) []error {
	return j.runAll(hosts, func(string) map[string]string { return extra }, api, fn)
}

func (j *job) runAll(hosts []string, extra func(node string) map[string]string, api []string, fn func(ctx context.Context, h *Handle) error) []error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	comms := comm.NewLocal(hosts)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for r := range hosts {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			defer comms[r].Close()
			h, err := Init(ctx, Options{Comm: comms[r], Node: hosts[r], Env: j.envFor(hosts[r], extra(hosts[r])), Config: api, Stderr: j.stderr})
			if err != nil {
				errs[r] = err
				return
			}
			errs[r] = fn(ctx, h)
		}(r)
	}
	wg.Wait()
	return errs
}

// mustAll fails the test if any rank returned an error.
func mustAll(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// content is rank r's data for checkpoint step: distinct per rank and step.
func content(r, step, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r*31 + step*7 + i)
	}
	return b
}

func fileName(step, r int) string { return fmt.Sprintf("ckpt.%d/rank_%d.ckpt", step, r) }

// checkpoint writes one checkpoint named ckpt.<step> on every rank.
func checkpoint(ctx context.Context, h *Handle, step, size int, flags Flags) error {
	name := fmt.Sprintf("ckpt.%d", step)
	if flags == 0 {
		flags = Checkpoint
	}
	if err := h.StartOutput(ctx, name, flags); err != nil {
		return err
	}
	p, err := h.Route(fileName(step, h.Rank()))
	if err != nil {
		return err
	}
	werr := os.WriteFile(p, content(h.Rank(), step, size), 0o640)
	return h.Complete(ctx, werr == nil)
}

// restartResult is what one rank saw when restarting.
type restartResult struct {
	name string
	ok   bool
}

// restart runs the HaveRestart loop, checks the content of this rank's
// file, and returns the name restarted from.
func restart(ctx context.Context, h *Handle, size int) (restartResult, error) {
	for {
		name, ok, err := h.HaveRestart(ctx)
		if err != nil || !ok {
			return restartResult{}, err
		}
		if _, err := h.StartRestart(ctx); err != nil {
			return restartResult{}, err
		}
		var step int
		fmt.Sscanf(name, "ckpt.%d", &step)
		valid := true
		p, err := h.Route(fileName(step, h.Rank()))
		if err != nil {
			valid = false
		} else if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, content(h.Rank(), step, size)) {
			valid = false
		}
		if err := h.CompleteRestart(ctx, valid); err == nil {
			return restartResult{name: name, ok: true}, nil
		} else if !isInvalid(err) {
			return restartResult{}, err
		}
	}
}

func isInvalid(err error) bool { return err != nil && errorsIs(err, ErrInvalid) }

// events returns the timeline events of one kind.
func (j *job) events(kind string) []prefix.Event {
	evs, err := prefix.ReadTimeline(j.prefix)
	if err != nil {
		j.t.Fatal(err)
	}
	var out []prefix.Event
	for _, e := range evs {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func writeHalt(ctx context.Context, dir, reason string) error {
	_, err := prefix.UpdateHalt(ctx, dir, func(h *prefix.Halt, _ bool) error {
		h.ExitReason = reason
		return nil
	})
	return err
}

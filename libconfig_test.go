package scr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/redundancy"
)

// These tests check that the library resolves its parameters through
// internal/config: the user file (<prefix>/.scrconf or SCR_CONF_FILE), the
// API values (Options.Config, saved to app.conf), the system file
// (SCR_CONFIG_FILE) and SCR's precedence between them.

func writeConf(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// confJob is a job whose environment leaves the copy type, cache size and
// flush to the configuration files.
func confJob(t *testing.T) *job {
	j := newJob(t, nil)
	for _, k := range []string{"SCR_COPY_TYPE", "SCR_CACHE_SIZE", "SCR_FLUSH"} {
		delete(j.env, k)
	}
	return j
}

// observed is what rank 0 saw of its configuration in one run.
type observed struct {
	schemes []string // scheme of each checkpoint, in order
	copy    string   // h.Config("SCR_COPY_TYPE")
}

// ckptRun writes n checkpoints on four nodes and returns what rank 0 saw.
func ckptRun(t *testing.T, j *job, n int, extra map[string]string, api []string) observed {
	t.Helper()
	var res results[observed]
	mustAll(t, j.runOpts(four, extra, api, func(ctx context.Context, h *Handle) error {
		var o observed
		for step := 1; step <= n; step++ {
			if err := checkpoint(ctx, h, step, 777, 0); err != nil {
				return err
			}
			o.schemes = append(o.schemes, h.cached[h.dsID].Scheme)
		}
		v, err := h.Config("SCR_COPY_TYPE")
		if err != nil {
			return err
		}
		o.copy = v
		res.set(h.Rank(), o)
		return h.Finalize(ctx)
	}))
	return res.m[0]
}

// cachedDatasets counts the datasets in a node's cache directory.
func cachedDatasets(t *testing.T, j *job, node string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(j.cacheDir(node), "scr.dataset.*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func TestUserFileInPrefixIsUsedAndEnvironmentWins(t *testing.T) {
	j := confJob(t)
	writeConf(t, filepath.Join(j.prefix, ".scrconf"),
		"# the user's file",
		"SCR_COPY_TYPE = XOR   # comment after the value",
		"SCR_CACHE_SIZE=2",
		"SCR_FLUSH=0")
	o := ckptRun(t, j, 3, nil, nil)
	if fmt.Sprint(o.schemes) != "[XOR XOR XOR]" || o.copy != "XOR" {
		t.Fatalf(".scrconf SCR_COPY_TYPE=XOR: schemes %v, Config %q", o.schemes, o.copy)
	}
	if n := cachedDatasets(t, j, "n1"); n != 2 {
		t.Fatalf(".scrconf SCR_CACHE_SIZE=2: %d datasets cached on n1", n)
	}
	// The environment wins over the file.
	o = ckptRun(t, j, 2, map[string]string{"SCR_COPY_TYPE": "SINGLE", "SCR_CACHE_SIZE": "1"}, nil)
	if fmt.Sprint(o.schemes) != "[SINGLE SINGLE]" || o.copy != "SINGLE" {
		t.Fatalf("env SCR_COPY_TYPE=SINGLE over .scrconf: schemes %v, Config %q", o.schemes, o.copy)
	}
	if n := cachedDatasets(t, j, "n1"); n != 1 {
		t.Fatalf("env SCR_CACHE_SIZE=1 over .scrconf: %d datasets cached on n1", n)
	}
	// Values set through Options.Config lose to the user file.
	o = ckptRun(t, j, 1, nil, []string{"SCR_COPY_TYPE=SINGLE"})
	if fmt.Sprint(o.schemes) != "[XOR]" {
		t.Fatalf("Options.Config must lose to .scrconf: schemes %v", o.schemes)
	}
}

func TestConfFileReplacesPrefixFile(t *testing.T) {
	j := confJob(t)
	writeConf(t, filepath.Join(j.prefix, ".scrconf"), "SCR_COPY_TYPE=XOR", "SCR_CACHE_SIZE=1")
	conf := filepath.Join(j.base, "etc", "my.conf")
	writeConf(t, conf, "SCR_COPY_TYPE=PARTNER", "SCR_CACHE_SIZE=3", "SCR_FLUSH=0")
	j.env["SCR_CONF_FILE"] = conf
	o := ckptRun(t, j, 4, nil, nil)
	if fmt.Sprint(o.schemes) != "[PARTNER PARTNER PARTNER PARTNER]" {
		t.Fatalf("SCR_CONF_FILE SCR_COPY_TYPE=PARTNER: schemes %v (the prefix's .scrconf must be ignored)", o.schemes)
	}
	if n := cachedDatasets(t, j, "n2"); n != 3 {
		t.Fatalf("SCR_CONF_FILE SCR_CACHE_SIZE=3: %d datasets cached on n2", n)
	}
	o = ckptRun(t, j, 1, map[string]string{"SCR_COPY_TYPE": "SINGLE"}, nil)
	if fmt.Sprint(o.schemes) != "[SINGLE]" {
		t.Fatalf("env must win over SCR_CONF_FILE: schemes %v", o.schemes)
	}
}

func TestSystemFileIsBelowConfigCalls(t *testing.T) {
	j := confJob(t)
	sys := filepath.Join(j.base, "etc", "scr.conf")
	writeConf(t, sys, "SCR_COPY_TYPE=XOR", "SCR_CACHE_SIZE=2", "SCR_FLUSH=0")
	j.env["SCR_CONFIG_FILE"] = sys
	o := ckptRun(t, j, 3, nil, []string{"SCR_COPY_TYPE=PARTNER"})
	if fmt.Sprint(o.schemes) != "[PARTNER PARTNER PARTNER]" {
		t.Fatalf("Options.Config must win over the system file: schemes %v", o.schemes)
	}
	if n := cachedDatasets(t, j, "n4"); n != 2 {
		t.Fatalf("system file SCR_CACHE_SIZE=2: %d datasets cached on n4", n)
	}
	o = ckptRun(t, j, 1, nil, nil)
	if fmt.Sprint(o.schemes) != "[XOR]" {
		t.Fatalf("system file SCR_COPY_TYPE=XOR: schemes %v", o.schemes)
	}
}

func TestBadValueInFileFailsInitOnEveryRank(t *testing.T) {
	// One node's file is bad: that rank names the parameter, file and
	// line; the others learn that a rank could not read its configuration.
	j := confJob(t)
	good := filepath.Join(j.base, "good.conf")
	bad := filepath.Join(j.base, "bad.conf")
	writeConf(t, good, "SCR_COPY_TYPE=SINGLE", "SCR_FLUSH=0")
	writeConf(t, bad, "SCR_COPY_TYPE=SINGLE", "# a comment", "SCR_FLUSH=ten")
	errs := j.runPerNode(four, func(node string) map[string]string {
		if node == "n3" {
			return map[string]string{"SCR_CONF_FILE": bad}
		}
		return map[string]string{"SCR_CONF_FILE": good}
	}, nil, func(ctx context.Context, h *Handle) error { return nil })
	for r, err := range errs {
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("rank %d: %v, want ErrConfig", r, err)
		}
	}
	for _, want := range []string{"SCR_FLUSH", `"ten"`, bad + " line 3"} {
		if !strings.Contains(errs[2].Error(), want) {
			t.Fatalf("rank 2's error does not say %q: %v", want, errs[2])
		}
	}
	if !strings.Contains(errs[0].Error(), "1 rank(s)") {
		t.Fatalf("rank 0 does not say how many ranks failed: %v", errs[0])
	}
	// A malformed line in the prefix's .scrconf fails every rank with the
	// file and line; nothing was created in the caches.
	j = confJob(t)
	scrconf := filepath.Join(j.prefix, ".scrconf")
	writeConf(t, scrconf, "SCR_FLUSH=0", `SCR_JOB_NAME="quoted name"`)
	errs = j.run(four, nil, func(ctx context.Context, h *Handle) error { return nil })
	for r, err := range errs {
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), scrconf) || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("rank %d: %v, want ErrConfig naming %s line 2", r, err, scrconf)
		}
	}
	if _, err := os.Stat(j.cacheDir("n1")); !os.IsNotExist(err) {
		t.Fatalf("Init created the cache despite the bad configuration: %v", err)
	}
}

func TestConfigValuesAreSavedForTheCommands(t *testing.T) {
	j := confJob(t)
	api := []string{"SCR_FLUSH=3", "SCR_CACHE_SIZE=2", "SCR_HALT_SECONDS=120", "CKPT=0 TYPE=XOR SET_SIZE=4"}
	mustAll(t, j.runWithConfig(four, api, func(ctx context.Context, h *Handle) error {
		if err := checkpoint(ctx, h, 1, 100, 0); err != nil {
			return err
		}
		return h.Finalize(ctx)
	}))
	// A command loads the configuration as scr_run does (app.conf
	// included), in an environment that only names the prefix.
	cmdEnv := func(extra map[string]string) config.Lookup {
		m := map[string]string{"SCR_PREFIX": j.prefix}
		for k, v := range extra {
			m[k] = v
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	cc, err := config.Load(config.Options{Env: cmdEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"SCR_FLUSH": "3", "SCR_CACHE_SIZE": "2", "SCR_HALT_SECONDS": "120", "CKPT=0 TYPE": "XOR", "CKPT=0 SET_SIZE": "4"} {
		if got, _, err := cc.Query(key); err != nil || got != want {
			t.Errorf("command sees %s = %q (%v), want %q from app.conf", key, got, err, want)
		}
	}
	v, ok, err := cc.Get("SCR_FLUSH")
	if err != nil || !ok || v.Origin.Kind != config.SourceApp {
		t.Errorf("SCR_FLUSH origin %v (%v %v), want the saved API values", v.Origin, ok, err)
	}
	s, err := cc.Settings()
	if err != nil || s.Flush != 3 || s.HaltSeconds != 120 {
		t.Fatalf("command settings: flush %d halt %d: %v", s.Flush, s.HaltSeconds, err)
	}
	// The environment still wins for the command.
	cc, err = config.Load(config.Options{Env: cmdEnv(map[string]string{"SCR_FLUSH": "5"})})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := cc.Query("SCR_FLUSH"); got != "5" {
		t.Fatalf("env SCR_FLUSH=5 over app.conf: command sees %q", got)
	}
	// The next run of the library does not inherit them: it starts from
	// its own Options.Config, and saves those instead.
	var flush results[string]
	mustAll(t, j.run(four, nil, func(ctx context.Context, h *Handle) error {
		v, err := h.Config("SCR_FLUSH")
		flush.set(h.Rank(), v)
		return err
	}))
	if flush.m[0] != "10" {
		t.Fatalf("next run's SCR_FLUSH = %q, want the default 10 (no leak from app.conf)", flush.m[0])
	}
	cc, err = config.Load(config.Options{Env: cmdEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := cc.Query("SCR_FLUSH"); got != "10" {
		t.Fatalf("app.conf of a run without API values still sets SCR_FLUSH=%q", got)
	}
}

func TestIntervalDescriptorSelectsXOREverySecondCheckpoint(t *testing.T) {
	j := confJob(t)
	writeConf(t, filepath.Join(j.prefix, ".scrconf"),
		"SCR_COPY_TYPE=FILE",
		"SCR_CACHE_SIZE=4",
		"SCR_FLUSH=0",
		"CKPT=0 INTERVAL=1 TYPE=SINGLE",
		"CKPT=1 INTERVAL=2 TYPE=XOR SET_SIZE=4")
	o := ckptRun(t, j, 4, nil, nil)
	if fmt.Sprint(o.schemes) != "[SINGLE XOR SINGLE XOR]" {
		t.Fatalf("schemes %v, want XOR on every 2nd checkpoint", o.schemes)
	}
	// Only the XOR checkpoints carry redundancy data.
	for id := 1; id <= 4; id++ {
		dir := cache.RankDir(filepath.Join(j.cacheDir("n1"), fmt.Sprintf("scr.dataset.%d", id)), 0)
		if _, err := os.Stat(dir); err != nil {
			t.Fatal(err)
		}
		if has := redundancyIntact(dir); has != (id%2 == 0) {
			t.Fatalf("dataset %d: redundancy data present=%v", id, has)
		}
	}
	// Lose a node: the newest (XOR) checkpoint is rebuilt.
	j.wipe("n3")
	sameName(t, restartAll(t, j, four, nil, 777), "ckpt.4")
	if got := lastRestartFrom(t, j); got != "cache-rebuild" {
		t.Fatalf("restart from %q, want cache-rebuild", got)
	}
}

func TestGroupsFromConfigFormRedundancySets(t *testing.T) {
	// Racks a (n1, n2) and b (n3, n4); sets of 2 never hold two ranks of
	// one rack, so losing a whole rack loses one member per set.
	rackConf := []string{
		"SCR_COPY_TYPE=XOR", "SCR_SET_SIZE=2", "SCR_FLUSH=0",
		"GROUPS=n1 RACK=a", "GROUPS=n2 RACK=a", "GROUPS=n3 RACK=b", "GROUPS=n4 RACK=b",
	}
	cases := []struct {
		group, want, from string
	}{
		{"RACK", "ckpt.1", "cache-rebuild"},
		{"NODE", "", ""}, // sets {n1,n2},{n3,n4}: one set loses both members
	}
	for _, c := range cases {
		t.Run(c.group, func(t *testing.T) {
			j := confJob(t)
			writeConf(t, filepath.Join(j.prefix, ".scrconf"), append(rackConf, "SCR_GROUP="+c.group)...)
			writeCkpts(t, j, four, 1, 4096)
			j.wipe("n1")
			j.wipe("n2")
			sameName(t, restartAll(t, j, four, nil, 4096), c.want)
			if c.from == "" {
				if evs := j.events("restart"); len(evs) != 0 {
					t.Fatalf("SCR_GROUP=%s: restarted: %+v", c.group, evs)
				}
				return
			}
			if got := lastRestartFrom(t, j); got != c.from {
				t.Fatalf("SCR_GROUP=%s: restart from %q, want %q", c.group, got, c.from)
			}
		})
	}
}

// runCodec runs fn on four ranks (goroutines, one per node) with an XOR
// codec of a bare handle; dir is each rank's directory under base.
func runCodec(t *testing.T, base string, fn func(ctx context.Context, r int, cd codec, dir string) error) []error {
	t.Helper()
	comms := comm.NewLocal(four)
	errs := make([]error, len(four))
	done := make(chan struct{})
	for r := range four {
		go func(r int) {
			defer func() { done <- struct{}{} }()
			defer comms[r].Close()
			h := &Handle{world: comms[r], rank: r, size: len(four), hosts: four}
			cd, err := h.codecFor("XOR")
			if err != nil {
				errs[r] = err
				return
			}
			dir := cache.RankDir(filepath.Join(base, four[r]), r)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				errs[r] = err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs[r] = fn(ctx, r, cd, dir)
		}(r)
	}
	for range four {
		<-done
	}
	return errs
}

var xorSpec = codecSpec{Scheme: "XOR", SetSize: 4, Group: "NODE", BufSize: 1 << 12, Dataset: 9}

func TestEncodeFailsOnEveryRankWhenOneCannotStatItsFiles(t *testing.T) {
	base := t.TempDir()
	errs := runCodec(t, base, func(ctx context.Context, r int, cd codec, dir string) error {
		if r != 1 { // rank 1 lists a file it does not have
			if err := os.WriteFile(filepath.Join(dir, "a.ckpt"), content(r, 1, 3000), 0o644); err != nil {
				return err
			}
		}
		return cd.Encode(ctx, nil, xorSpec, dir, []string{"a.ckpt"})
	})
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: encode succeeded although rank 1 has no files", r)
		}
		if redundancyIntact(cache.RankDir(filepath.Join(base, four[r]), r)) {
			t.Fatalf("rank %d: redundancy marked encoded", r)
		}
	}
	var ee *redundancy.EncodeError
	if !errors.As(errs[0], &ee) || ee.First != 1 {
		t.Fatalf("rank 0's error does not name rank 1: %v", errs[0])
	}
	if !strings.Contains(errs[1].Error(), "cannot describe its files") {
		t.Fatalf("rank 1's error does not say why: %v", errs[1])
	}
}

func TestRebuildTooManyLostIsErrUnrecoverable(t *testing.T) {
	base := t.TempDir()
	mustAll(t, runCodec(t, base, func(ctx context.Context, r int, cd codec, dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "a.ckpt"), content(r, 1, 3000), 0o644); err != nil {
			return err
		}
		return cd.Encode(ctx, nil, xorSpec, dir, []string{"a.ckpt"})
	}))
	// XOR tolerates one lost member per set; lose two.
	for _, n := range []string{"n2", "n4"} {
		if err := os.RemoveAll(filepath.Join(base, n)); err != nil {
			t.Fatal(err)
		}
	}
	errs := runCodec(t, base, func(ctx context.Context, r int, cd codec, dir string) error {
		_, err := cd.Rebuild(ctx, nil, xorSpec, dir, r == 1 || r == 3)
		return err
	})
	for r, err := range errs {
		if !errors.Is(err, ErrUnrecoverable) || !errors.Is(err, redundancy.ErrUnrecoverable) {
			t.Fatalf("rank %d: %v, want ErrUnrecoverable", r, err)
		}
	}
}

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envMap is an injectable environment.
func envMap(kv ...string) Lookup {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// setup makes a prefix dir with optional user and system files and returns
// Options pointing at them.
func setup(t *testing.T, user, system string, env ...string) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	pfx := filepath.Join(dir, "prefix")
	os.MkdirAll(pfx, 0o700)
	sys := filepath.Join(dir, "system.conf")
	if user != "" {
		write(t, filepath.Join(pfx, ".scrconf"), user)
	}
	if system != "" {
		write(t, sys, system)
	}
	env = append(env, "SCR_PREFIX", pfx, "USER", "tester")
	return Options{Env: envMap(env...), SystemFile: sys}, pfx
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		user     string
		app      string
		system   string
		want     string
		wantKind SourceKind
	}{
		{"default", nil, "", "", "", "10", SourceDefault},
		{"system over default", nil, "", "", "SCR_FLUSH=5", "5", SourceSystemFile},
		{"app over system", nil, "", "SCR_FLUSH=4", "SCR_FLUSH=5", "4", SourceApp},
		{"user over app", nil, "SCR_FLUSH=3", "SCR_FLUSH=4", "SCR_FLUSH=5", "3", SourceUserFile},
		{"env over user", []string{"SCR_FLUSH", "2"}, "SCR_FLUSH=3", "SCR_FLUSH=4", "SCR_FLUSH=5", "2", SourceEnv},
		{"empty env is unset", []string{"SCR_FLUSH", ""}, "SCR_FLUSH=3", "", "", "3", SourceUserFile},
		{"env expands vars", []string{"SCR_FLUSH", "$N", "N", "7"}, "", "", "", "7", SourceEnv},
		{"lower-case key in file", nil, "scr_flush = 6", "", "", "6", SourceUserFile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts, _ := setup(t, tc.user, tc.system, tc.env...)
			c, err := Load(opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.app != "" {
				if err := c.Set(tc.app); err != nil {
					t.Fatal(err)
				}
			}
			v, ok, err := c.Get("SCR_FLUSH")
			if err != nil || !ok {
				t.Fatalf("Get: %v %v", ok, err)
			}
			if v.Raw != tc.want || v.Origin.Kind != tc.wantKind {
				t.Errorf("got %q from %v, want %q from kind %d", v.Raw, v.Origin, tc.want, tc.wantKind)
			}
		})
	}
}

func TestConfFileEnvOverridesPrefixLocation(t *testing.T) {
	dir := t.TempDir()
	user := write(t, filepath.Join(dir, "my.conf"), "SCR_CACHE_SIZE=3\n")
	c, err := Load(Options{Env: envMap("SCR_CONF_FILE", user, "SCR_PREFIX", dir), SystemFile: filepath.Join(dir, "none")})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := c.Get("SCR_CACHE_SIZE")
	if v.Raw != "3" || v.Origin.File != user || v.Origin.Line != 1 {
		t.Fatalf("got %+v", v)
	}
}

func TestSystemFileFromEnv(t *testing.T) {
	dir := t.TempDir()
	sys := write(t, filepath.Join(dir, "sys.conf"), "\n# comment\nSCR_SET_SIZE=4\n")
	c, err := Load(Options{Env: envMap("SCR_CONFIG_FILE", sys, "SCR_PREFIX", dir)})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := c.Get("SCR_SET_SIZE")
	if v.Raw != "4" || v.Origin.String() != sys+" line 3" {
		t.Fatalf("got %q from %s", v.Raw, v.Origin)
	}
}

func TestSetUnsetQuery(t *testing.T) {
	opts, _ := setup(t, "SCR_FLUSH=3\n", "")
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Set("SCR_CACHE_SIZE=2"))
	must(c.Set("SCR_FLUSH=9")) // user file wins
	must(c.Set("CKPT=0 TYPE=XOR SET_SIZE=16"))
	must(c.Set("CKPT=0 SET_SIZE=4"))
	must(c.Set("SCR_JOB_NAME=a=b"))
	if v, _, _ := c.Query("SCR_CACHE_SIZE"); v != "2" {
		t.Errorf("SCR_CACHE_SIZE = %q", v)
	}
	if v, _, _ := c.Query("SCR_FLUSH"); v != "3" {
		t.Errorf("SCR_FLUSH = %q, want the user file's 3", v)
	}
	if v, ok, _ := c.Query("CKPT=0 SET_SIZE"); v != "4" || !ok {
		t.Errorf("CKPT=0 SET_SIZE = %q", v)
	}
	if v, _, _ := c.Query("ckpt=0 type"); v != "XOR" {
		t.Errorf("CKPT=0 TYPE = %q", v)
	}
	if v, _, _ := c.Query("SCR_JOB_NAME"); v != "a=b" {
		t.Errorf("SCR_JOB_NAME = %q", v)
	}
	must(c.Set("SCR_CACHE_SIZE ="))
	if v, _, _ := c.Query("SCR_CACHE_SIZE"); v != "1" {
		t.Errorf("after unset SCR_CACHE_SIZE = %q, want default 1", v)
	}
	for _, bad := range []string{"", "   ", "=", "SCR_FLUSH", "SCR_FLUSH=1 EXTRA=2", "=3", "A=\"x y\"", "A=1\nB=2"} {
		if err := c.Set(bad); err == nil {
			t.Errorf("Set(%q) succeeded", bad)
		}
	}
}

func TestSaveAppRoundTrip(t *testing.T) {
	opts, pfx := setup(t, "", "")
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SCR_FLUSH=1", "SCR_FLUSH=2", "STORE=/dev/shm/a\\ b COUNT=2", "SCR_JOB_NAME=x\\$y\\#z"} {
		if err := c.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SaveApp(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(pfx, ".scr", "app.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "SCR_FLUSH") != 1 {
		t.Errorf("app.conf keeps old values:\n%s", b)
	}
	// A command loading the same prefix sees the API values.
	c2, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := c2.Get("SCR_FLUSH")
	if v.Raw != "2" || v.Origin.Kind != SourceApp || v.Origin.Line != 1 {
		t.Errorf("SCR_FLUSH from app.conf: %+v", v)
	}
	if v, _, _ := c2.Query("SCR_JOB_NAME"); v != "x$y#z" {
		t.Errorf("SCR_JOB_NAME = %q", v)
	}
	es := c2.Entries("STORE")
	if len(es) != 1 || es[0].Value != "/dev/shm/a b" {
		t.Errorf("STORE entries %+v", es)
	}
	// The library does not inherit a previous run's API values.
	opts.NoAppFile = true
	c3, _ := Load(opts)
	if v, _, _ := c3.Get("SCR_FLUSH"); v.Raw != "10" {
		t.Errorf("NoAppFile: SCR_FLUSH = %q", v.Raw)
	}
}

func TestDefaultSettings(t *testing.T) {
	opts, pfx := setup(t, "", "")
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.CacheBypass || !s.Enable || s.Flush != 10 || s.SetSize != 8 || s.CopyType != TypeXOR || s.Runs != 1 ||
		s.LaunchTimeout != 60*time.Second || s.WatchInterval != 2*time.Second || s.CommTimeout != 3*time.Second ||
		s.MPIBufSize != 1<<20 || s.FileBufSize != 32<<20 || s.Prefix != pfx || s.UserName != "tester" || s.JobID != "defjobid" {
		t.Errorf("defaults: %+v", s)
	}
	if len(s.Stores) != 1 || s.Stores[0].Path != "/dev/shm" || s.Stores[0].Count != 1 {
		t.Errorf("stores %+v (cache and control base are the same path: one store)", s.Stores)
	}
	if len(s.Redundancy) != 1 || s.Redundancy[0].Type != TypeXOR || s.Redundancy[0].Interval != 1 || s.Redundancy[0].SetSize != 8 {
		t.Errorf("redundancy %+v", s.Redundancy)
	}
	if s.Origin("SCR_FLUSH").Kind != SourceDefault {
		t.Errorf("origin %v", s.Origin("SCR_FLUSH"))
	}
}

func TestRunsAndRetries(t *testing.T) {
	tests := []struct {
		env  []string
		want int
		err  string
	}{
		{nil, 1, ""},
		{[]string{"SCR_RUNS", "-1"}, -1, ""},
		{[]string{"SCR_RUNS", "5"}, 5, ""},
		{[]string{"SCR_RETRIES", "2"}, 3, ""},
		{[]string{"SCR_RUNS", "4", "SCR_RETRIES", "2"}, 4, ""},
		{[]string{"SCR_RUNS", "0"}, 0, "SCR_RUNS"},
		{[]string{"SCR_RUNS", "-2"}, 0, "SCR_RUNS"},
	}
	for _, tc := range tests {
		opts, _ := setup(t, "", "", tc.env...)
		c, _ := Load(opts)
		s, err := c.Settings()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want mention of %s", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || s.Runs != tc.want {
			t.Errorf("%v: runs %d err %v, want %d", tc.env, s.Runs, err, tc.want)
		}
	}
}

func TestJobIDAndUser(t *testing.T) {
	opts, _ := setup(t, "", "", "SLURM_JOB_ID", "123", "SLURM_STEP_ID", "4")
	c, _ := Load(opts)
	s, err := c.Settings()
	if err != nil || s.JobID != "123" {
		t.Fatalf("job id %q err %v", s.JobID, err)
	}
	// A Flux job inside an allocation: the allocation, whatever the step;
	// Flux before Slurm (a Flux instance may run inside a Slurm job).
	opts, _ = setup(t, "", "", "SLURM_JOB_ID", "123", "FLUX_JOB_ID", "ƒ2", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ2")
	c, _ = Load(opts)
	if s, err = c.Settings(); err != nil || s.JobID != "fVaSC5xK" {
		t.Fatalf("job id %q err %v, want the Flux allocation fVaSC5xK", s.JobID, err)
	}
	opts, _ = setup(t, "", "", "SCR_JOB_ID", "j9", "SLURM_JOB_ID", "123", "SCR_USER_NAME", "u2")
	c, _ = Load(opts)
	s, _ = c.Settings()
	if s.JobID != "j9" || s.UserName != "u2" {
		t.Fatalf("job id %q user %q", s.JobID, s.UserName)
	}
}

func TestBadValuesNameParamAndOrigin(t *testing.T) {
	opts, pfx := setup(t, "SCR_FLUSH=ten\n\nSCR_CACHE_BYPASS=maybe\n", "SCR_SET_SIZE=0\n", "SCR_MPI_BUF_SIZE", "lots", "SCR_LAUNCH_TIMEOUT", "soon")
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Settings()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	user := filepath.Join(pfx, ".scrconf")
	for _, want := range []string{
		`SCR_FLUSH="ten" (from ` + user + ` line 1): not an integer`,
		`SCR_CACHE_BYPASS="maybe" (from ` + user + ` line 3): not a boolean`,
		`SCR_MPI_BUF_SIZE="lots" (from environment)`,
		`SCR_LAUNCH_TIMEOUT="soon" (from environment)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Errorf("not a ParamError: %T", err)
	}
}

func TestValidateOneMessagePerMistake(t *testing.T) {
	opts, _ := setup(t, "", "SCR_SET_SIZE=0\nSCR_COPY_TYPE=BOGUS\nSCR_COMM_TIMEOUT=0\n")
	c, _ := Load(opts)
	_, err := c.Settings()
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{"SCR_SET_SIZE", "SCR_COPY_TYPE", "SCR_COMM_TIMEOUT"} {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, want+"=") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s mentioned %d times:\n%s", want, n, err)
		}
	}
}

func TestParseBytesAndDuration(t *testing.T) {
	bytesCases := map[string]int64{"4096": 4096, "1KB": 1024, "1k": 1024, "1MiB": 1 << 20, "32MB": 32 << 20, "2G": 2 << 30, "1.5KB": 1536, "7B": 7}
	for in, want := range bytesCases {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MB", "-1", "x", "1XB", "1e30"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) succeeded", bad)
		}
	}
	durCases := map[string]time.Duration{"60": time.Minute, "0.5": 500 * time.Millisecond, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond}
	for in, want := range durCases {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDuration("soon"); err == nil {
		t.Error("ParseDuration(soon) succeeded")
	}
}

func TestWarningForScriptParamsSetThroughAPI(t *testing.T) {
	opts, _ := setup(t, "", "")
	c, _ := Load(opts)
	c.Set("SCR_CACHE_BASE=/tmp/x")
	c.Set("SCR_FLUSH=1")
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "SCR_CACHE_BASE set through the API") {
		t.Fatalf("%v", w)
	}
}

// TestPerRankEnvironments: ranks as goroutines in one process, each with
// its own environment, resolve their own values concurrently.
func TestPerRankEnvironments(t *testing.T) {
	dir := t.TempDir()
	const ranks = 8
	errs := make(chan error, ranks)
	for r := 0; r < ranks; r++ {
		go func() {
			node := "node" + string(rune('a'+r))
			c, err := Load(Options{Env: envMap("SCR_PREFIX", dir, "SCR_NODE_NAME", node, "SCR_CACHE_BASE", "/dev/shm/"+node),
				SystemFile: filepath.Join(dir, "none")})
			if err != nil {
				errs <- err
				return
			}
			s, err := c.Settings()
			if err == nil && (s.NodeName != node || s.CacheBase != "/dev/shm/"+node) {
				err = fmt.Errorf("rank %d saw node %q base %q", r, s.NodeName, s.CacheBase)
			}
			errs <- err
		}()
	}
	for r := 0; r < ranks; r++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestResolve(t *testing.T) {
	opts, pfx := setup(t, "SCR_SET_SIZE=4\n", "", "SCR_FLUSH", "3")
	opts.NoAppFile = true
	c, s, err := Resolve(opts, []string{"SCR_FLUSH=1", "SCR_CACHE_SIZE=2", "CKPT=0 TYPE=XOR"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Flush != 3 || s.CacheSize != 2 || s.SetSize != 4 {
		t.Fatalf("%+v", s)
	}
	if err := c.SaveApp(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(pfx, ".scr", "app.conf")); !strings.Contains(string(b), "SCR_CACHE_SIZE=2") {
		t.Errorf("app.conf: %s", b)
	}
	if _, _, err := Resolve(opts, []string{"SCR_FLUSH"}); err == nil || !strings.Contains(err.Error(), `Set("SCR_FLUSH")`) {
		t.Errorf("bad API string: %v", err)
	}
	if _, _, err := Resolve(opts, []string{"SCR_FLUSH=x"}); err != nil {
		t.Errorf("env wins, the API value is never parsed: %v", err)
	}
}

func TestRelativePrefixIsMadeAbsolute(t *testing.T) {
	wd, _ := os.Getwd()
	c, err := Load(Options{Env: envMap("SCR_PREFIX", "rel/ckpt"), SystemFile: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "rel/ckpt"); c.PrefixDir() != want {
		t.Fatalf("%q, want %q", c.PrefixDir(), want)
	}
	s, err := c.Settings()
	if err != nil || s.Prefix != filepath.Join(wd, "rel/ckpt") {
		t.Fatalf("%q %v", s.Prefix, err)
	}
}

// goneWorkingDir makes the working directory one that no longer exists, so
// os.Getwd fails (as it did on the virtual cluster's nodes).
func goneWorkingDir(t *testing.T) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Chdir(d)
	t.Setenv("PWD", "")
	if err := os.Remove(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Getwd(); err == nil {
		t.Skip("getwd still works in a removed directory here")
	}
}

func TestPrefixOptional(t *testing.T) {
	goneWorkingDir(t)
	conf := write(t, filepath.Join(t.TempDir(), "my.conf"), "SCR_NODE_TESTS=ping\n")
	env := envMap("SCR_CONF_FILE", conf)
	if _, err := Load(Options{Env: env, SystemFile: "/nonexistent"}); err == nil || !strings.Contains(err.Error(), "set SCR_PREFIX") {
		t.Fatalf("a prefix is needed by default: %v", err)
	}
	c, err := Load(Options{Env: env, SystemFile: "/nonexistent", PrefixOptional: true})
	if err != nil {
		t.Fatal(err)
	}
	if c.PrefixDir() != "" {
		t.Errorf("PrefixDir %q, want none", c.PrefixDir())
	}
	if v, _ := c.String("SCR_NODE_TESTS"); v != "ping" {
		t.Errorf("SCR_CONF_FILE not read without a prefix: %q", v)
	}
	c, err = Load(Options{Env: envMap(), SystemFile: "/nonexistent", PrefixOptional: true})
	if err != nil || c.UserFile() != "" {
		t.Fatalf("no user file without a prefix: %q %v", c.UserFile(), err)
	}
}

// Environment values expand as SCR expands them: an unset variable is
// empty (with a warning), a '$' that starts no name stays, backslashes stay.
func TestEnvExpansionAsSCR(t *testing.T) {
	opts, _ := setup(t, "", "", "SCR_CACHE_BASE", "/dev/shm/$NOT_SET/x", "SCR_JOB_NAME", `a$-b\c${HOME}`, "HOME", "/h",
		"SCR_FLUSH_WIDTH", "16", "SCR_LOG_DB_ENABLE", "0")
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Settings()
	if err != nil {
		t.Fatal(err)
	}
	if s.CacheBase != "/dev/shm//x" || s.JobName != `a$-b\c/h` {
		t.Errorf("cache base %q, job name %q", s.CacheBase, s.JobName)
	}
	w := strings.Join(s.Warnings, "\n")
	if !strings.Contains(w, "environment: SCR_CACHE_BASE=\"/dev/shm/$NOT_SET/x\" uses $NOT_SET, which is not set") ||
		!strings.Contains(w, "environment: SCR_FLUSH_WIDTH is not supported") || strings.Contains(w, "SCR_LOG_DB_ENABLE") {
		t.Errorf("warnings:\n%s", w)
	}
}

package config

import (
	"errors"
	"strings"
	"testing"
)

func settingsFrom(t *testing.T, user string, env ...string) (*Settings, error) {
	t.Helper()
	opts, _ := setup(t, user, "", env...)
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c.Settings()
}

const multiLevel = `
SCR_COPY_TYPE=FILE
STORE=/dev/shm/single COUNT=1
STORE=/dev/shm/xor COUNT=1
CKPT=0 INTERVAL=1 STORE=/dev/shm/single TYPE=SINGLE
CKPT=1 INTERVAL=10 STORE=/dev/shm/xor TYPE=XOR SET_SIZE=4
CKPT=2 INTERVAL=5 TYPE=RS SET_SIZE=6 SET_FAILURES=2
CKPT=3 OUTPUT=1 TYPE=PARTNER
`

func TestMultiLevelDescriptors(t *testing.T) {
	s, err := settingsFrom(t, multiLevel)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Redundancy) != 4 || s.Redundancy[1].SetSize != 4 || s.Redundancy[2].Store != "/dev/shm" || s.Redundancy[0].Group != GroupNode {
		t.Fatalf("%+v", s.Redundancy)
	}
	tests := []struct {
		name      string
		ckpt, out bool
		id        int64
		wantIndex int
	}{
		{"plain checkpoint", true, false, 3, 0},
		{"every 5th", true, false, 15, 2},
		{"every 10th beats 5th", true, false, 20, 1},
		{"output descriptor", false, true, 0, 3},
		{"checkpoint+output uses the output one", true, true, 10, 3},
	}
	for _, tc := range tests {
		d, err := Select(s.Redundancy, tc.ckpt, tc.out, tc.id)
		if err != nil || d.Index != tc.wantIndex {
			t.Errorf("%s: got CKPT=%d %v, want %d", tc.name, d.Index, err, tc.wantIndex)
		}
	}
}

func TestSelectSkipsDisabledAndFailsClearly(t *testing.T) {
	ds := []Redundancy{{Index: 0, Interval: 1, Enabled: false}, {Index: 1, Interval: 2, Enabled: true}}
	if d, err := Select(ds, true, false, 4); err != nil || d.Index != 1 {
		t.Errorf("%+v %v", d, err)
	}
	if _, err := Select(ds, true, false, 3); !errors.Is(err, ErrNoDescriptor) {
		t.Errorf("odd id: %v", err)
	}
	if _, err := Select(ds, false, true, 0); !errors.Is(err, ErrNoDescriptor) {
		t.Errorf("pure output with no INTERVAL=1: %v", err)
	}
}

func TestImplicitDescriptorFromParams(t *testing.T) {
	s, err := settingsFrom(t, "SCR_COPY_TYPE=rs\nSCR_SET_SIZE=6\nSCR_SET_FAILURES=3\nSCR_CACHE_BYPASS=1\nSCR_CACHE_BASE=/tmp/cache\n")
	if err != nil {
		t.Fatal(err)
	}
	d := s.Redundancy[0]
	if len(s.Redundancy) != 1 || d.Type != TypeRS || d.SetSize != 6 || d.SetFailures != 3 || !d.Bypass || d.Store != "/tmp/cache" || d.Interval != 1 {
		t.Fatalf("%+v", s.Redundancy)
	}
	if len(s.Stores) != 2 {
		t.Errorf("stores %+v: want the cache base and the control base", s.Stores)
	}
}

func TestAdjust(t *testing.T) {
	stores := []Store{{Path: "/dev/shm", Group: GroupNode}, {Path: "/gpfs", Group: GroupWorld}}
	tests := []struct {
		name     string
		d        Redundancy
		top      Topology
		wantType string
		note     string
	}{
		{"one node", Redundancy{Type: TypeXOR, Store: "/dev/shm", SetSize: 8}, Topology{Ranks: 4, Nodes: 1}, TypeSingle, "one node"},
		{"world store", Redundancy{Type: TypePartner, Store: "/gpfs"}, Topology{Ranks: 8, Nodes: 4}, TypeSingle, "shared by all ranks"},
		{"rs with one failure", Redundancy{Type: TypeRS, SetFailures: 1, Store: "/dev/shm"}, Topology{Ranks: 8, Nodes: 4}, TypeXOR, "is XOR"},
		{"rs kept", Redundancy{Type: TypeRS, SetFailures: 2, Store: "/dev/shm"}, Topology{Ranks: 8, Nodes: 4}, TypeRS, ""},
		{"single stays", Redundancy{Type: TypeSingle, Store: "/dev/shm"}, Topology{Ranks: 1, Nodes: 1}, TypeSingle, ""},
	}
	for _, tc := range tests {
		d, note := Adjust(tc.d, stores, tc.top)
		if d.Type != tc.wantType || (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
			t.Errorf("%s: %s %q", tc.name, d.Type, note)
		}
		if d.SetSize != tc.d.SetSize {
			t.Errorf("%s: SET_SIZE changed (SCR's quirk must not be copied)", tc.name)
		}
	}
}

func TestDescriptorMistakes(t *testing.T) {
	tests := []struct {
		name string
		conf string
		want string // substring of the error, which must name the file ("" = none)
		warn string // substring of a warning, which must name the file ("" = none)
	}{
		// SCR disables such a descriptor and goes on; so does scr-go, with
		// a warning; the only descriptor gone, no INTERVAL=1 is left.
		{"unknown type", "SCR_COPY_TYPE=FILE\nCKPT=0 TYPE=RAID6\n", "no enabled descriptor has INTERVAL=1", "CKPT=0: TYPE=RAID6 is not SINGLE"},
		{"set failures out of range", "SCR_COPY_TYPE=FILE\nCKPT=0 TYPE=RS SET_SIZE=4 SET_FAILURES=4\n", "no enabled descriptor", "SET_FAILURES < SET_SIZE"},
		{"unknown store", "SCR_COPY_TYPE=FILE\nCKPT=0 STORE=/nvme\n", "no enabled descriptor", "not an enabled store"},
		{"disabled one of two", "SCR_COPY_TYPE=FILE\nCKPT=0 TYPE=XOR\nCKPT=1 INTERVAL=4 STORE=/nvme\n", "", "CKPT=1: STORE=/nvme is not an enabled store"},
		{"unknown child", "SCR_COPY_TYPE=FILE\nCKPT=0 SETSIZE=4\n", "", "unknown key SETSIZE"},
		{"bad view", "STORE=/dev/shm VIEW=SHARED\n", "", "VIEW=SHARED is not PRIVATE or GLOBAL"},
		{"global view", "STORE=/p/cache VIEW=GLOBAL\n", "", "VIEW=GLOBAL is not supported"},
		{"mkdir 0", "STORE=/dev/persist MKDIR=0\n", "", "MKDIR=0 is not acted on"},
		{"store group unknown", "STORE=/nvme GROUP=RACK\nSCR_COPY_TYPE=FILE\nCKPT=0\nCKPT=1 INTERVAL=2 STORE=/nvme\n", "", "STORE=/nvme GROUP=RACK"},
		{"conflicting duplicate", "SCR_FLUSH=1\nSCR_FLUSH=2\n", "", "also set to 1 on line 1 of the same file: 2 (line 2) is used"},
		{"unknown copy type", "SCR_COPY_TYPE=RAID\nCKPT=0 TYPE=XOR\n", "", "SCR_COPY_TYPE=RAID is not SINGLE"},
		{"bbapi", "SCR_FLUSH_TYPE=BBAPI\nSTORE=/dev/shm FLUSH=DATAWARP\n", "", "SCR_FLUSH_TYPE=BBAPI is not available"},
		{"unsupported param", "SCR_FLUSH_ASYNC_BW=100MB\n", "", "SCR_FLUSH_ASYNC_BW is not supported by scr-go"},
		{"sub-keys of a simple parameter", "SCR_CACHE_BASE=/dev/shm SCR_CACHE_SIZE=2\n", "", "SCR_CACHE_SIZE=2 on the same line as SCR_CACHE_BASE=/dev/shm"},
		{"unset variable", "SCR_CNTL_BASE=/dev/shm/$NOT_SET_ANYWHERE\n", "", "$NOT_SET_ANYWHERE, which is not set"},
		// Mistakes SCR cannot survive either stay errors.
		{"no interval 1", "SCR_COPY_TYPE=FILE\nCKPT=0 INTERVAL=2\n", "no enabled descriptor has INTERVAL=1", ""},
		{"bad int child", "SCR_COPY_TYPE=FILE\nCKPT=0 SET_SIZE=four\n", "not an integer", ""},
		{"undefined group", "SCR_COPY_TYPE=FILE\nCKPT=0 GROUP=RACK\n", "GROUPS line", ""},
		{"file with no ckpt", "SCR_COPY_TYPE=FILE\n", "needs CKPT entries", ""},
		{"bad ckpt number", "SCR_COPY_TYPE=FILE\nCKPT=x\nCKPT=0\n", "descriptor number", ""},
		{"relative store", "STORE=shm\n", "absolute path", ""},
		{"groups redefines NODE", "GROUPS=n1 NODE=x\n", "built-in", ""},
		{"rs set failures param", "SCR_COPY_TYPE=RS\nSCR_SET_SIZE=2\nSCR_SET_FAILURES=2\n", "RS needs fewer failures", ""},
		{"unknown flush type", "SCR_FLUSH_TYPE=FTP\n", "must be SYNC or PTHREAD", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := settingsFrom(t, tc.conf)
			if tc.want == "" && err != nil {
				t.Fatalf("error %v; SCR loads this file", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ".scrconf line")) {
				t.Fatalf("got %v, want %q with file and line", err, tc.want)
			}
			w := strings.Join(s.Warnings, "\n")
			if tc.warn != "" && (!strings.Contains(w, tc.warn) || !strings.Contains(w, ".scrconf line")) {
				t.Fatalf("warnings %q, want %q with file and line", w, tc.warn)
			}
		})
	}
}

// Settings that replace a value SCR accepts but scr-go does not have.
func TestFallbacks(t *testing.T) {
	s, err := settingsFrom(t, "SCR_FLUSH_TYPE=bbapi\nSCR_FLUSH_ASYNC=1\nSTORE=/dev/shm FLUSH=DATAWARP\nSCR_COPY_TYPE=raid\nCKPT=0 TYPE=XOR\nCKPT=1 INTERVAL=2 TYPE=RAID6\n")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.StoreFor("/dev/shm")
	if s.FlushType != "PTHREAD" || !s.FlushAsync || st.Flush != "PTHREAD" || s.CopyType != TypeFile {
		t.Errorf("flush %s async %v store %s copy %s", s.FlushType, s.FlushAsync, st.Flush, s.CopyType)
	}
	if len(s.Redundancy) != 2 || !s.Redundancy[0].Enabled || s.Redundancy[1].Enabled {
		t.Errorf("descriptors %+v", s.Redundancy)
	}
	if d, err := Select(s.Redundancy, true, false, 2); err != nil || d.Index != 0 {
		t.Errorf("checkpoint 2 uses %+v %v, want CKPT=0 (CKPT=1 is disabled)", d, err)
	}
}

// As SCR: of several lines setting one parameter, the newest new value
// wins; a switch is any integer.
func TestSCRValueRules(t *testing.T) {
	s, err := settingsFrom(t, "SCR_FLUSH=1\nSCR_FLUSH=2\nSCR_FLUSH=1\nSCR_FLUSH_ASYNC=2\nSCR_CACHE_BYPASS=0\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.Flush != 2 || !s.FlushAsync || s.CacheBypass {
		t.Errorf("flush %d async %v bypass %v", s.Flush, s.FlushAsync, s.CacheBypass)
	}
	if o := s.Origin("SCR_FLUSH"); o.Line != 2 {
		t.Errorf("origin %v, want line 2", o)
	}
}

func TestGroupsDefinitions(t *testing.T) {
	s, err := settingsFrom(t, "GROUPS=n1 RACK=r1 SWITCH=s1\nGROUPS=n2 RACK=r1\nSCR_COPY_TYPE=FILE\nCKPT=0 GROUP=RACK TYPE=XOR\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Groups) != 2 || s.Groups[0].Values["SWITCH"] != "s1" || s.Redundancy[0].Group != "RACK" {
		t.Fatalf("%+v %+v", s.Groups, s.Redundancy)
	}
}

func TestWarningsForUnknownKeys(t *testing.T) {
	opts, _ := setup(t, "SCR_FLUHS=1\nSCR_FLUSH=1\n", "")
	c, _ := Load(opts)
	w := c.Warnings()
	if len(w) != 1 || !strings.Contains(w[0], "unknown parameter SCR_FLUHS (typo?)") || !strings.Contains(w[0], "line 1") {
		t.Fatalf("%v", w)
	}
}

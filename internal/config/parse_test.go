package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	env := envMap("HOME", "/home/u", "N", "4", "EMPTY", "", "A", "a")
	tests := []struct {
		in   string
		want []KV
		warn string // substring of a warning; "" = none
		err  string // substring of the error; "" = no error
	}{
		{"", nil, "", ""},
		{"   # only a comment", nil, "", ""},
		{"SCR_FLUSH=10", []KV{{"SCR_FLUSH", "10"}}, "", ""},
		{"scr_flush = 10   # trailing comment", []KV{{"SCR_FLUSH", "10"}}, "", ""},
		{"SCR_FLUSH=10\r", []KV{{"SCR_FLUSH", "10"}}, "", ""},
		{"\tSCR_PREFIX=$HOME/ckpt", []KV{{"SCR_PREFIX", "/home/u/ckpt"}}, "", ""},
		{"SCR_PREFIX=${HOME}x", []KV{{"SCR_PREFIX", "/home/ux"}}, "", ""},
		// As SCR's file parser: a variable name is letters and underscores.
		{"X=$A1", []KV{{"X", "a1"}}, "", ""},
		{"A=$EMPTY.", []KV{{"A", "."}}, "", ""},
		{"STORE=/dev/shm GROUP=NODE COUNT=2", []KV{{"STORE", "/dev/shm"}, {"GROUP", "NODE"}, {"COUNT", "2"}}, "", ""},
		{"CKPT=0 TYPE=XOR SET_SIZE=$N", []KV{{"CKPT", "0"}, {"TYPE", "XOR"}, {"SET_SIZE", "4"}}, "", ""},
		{"GROUPS=host1 SWITCH=s1 RACK=r2", []KV{{"GROUPS", "host1"}, {"SWITCH", "s1"}, {"RACK", "r2"}}, "", ""},
		{`A=a\ b\#c\$d\\`, []KV{{"A", `a b#c$d\`}}, "", ""},
		// SCR's escapes.
		{`A=x\ty\n\qz`, []KV{{"A", "x\ty\nqz"}}, "", ""},
		{`A=x\`, []KV{{"A", "x"}}, "", ""},
		{"A=x=y", []KV{{"A", "x=y"}}, "", ""},
		{"a.b-c=1", []KV{{"A.B-C", "1"}}, "", ""},
		// SCR keeps quotes and a '#' inside a value, with a warning here.
		{`A="x"`, []KV{{"A", `"x"`}}, "quotes", ""},
		{"SCR_FLUSH=10#c", []KV{{"SCR_FLUSH", "10#c"}}, "contains '#'", ""},
		// SCR ignores a pair whose variable is not set (the line if first).
		{"SCR_PREFIX=$NOPE/x FLUSH=1", nil, "$NOPE, which is not set", ""},
		{"STORE=/x COUNT=$NOPE GROUP=NODE", []KV{{"STORE", "/x"}, {"GROUP", "NODE"}}, "COUNT ignored", ""},
		{"A=${HOME", nil, "unterminated", ""},
		{"A=$", nil, "not followed by a variable name", ""},
		{"A=${1X}", nil, "bad variable name", ""},
		{"A", nil, "", "has no '=VALUE'"},
		{"A=", nil, "", "empty value"},
		{"A= # c", nil, "", "empty value"},
		{"=1", nil, "", "expected a KEY=VALUE pair"},
		{"A=1 B", nil, "", "key B has no"},
		{"\xffA=1", nil, "", "printable ASCII"},
	}
	for _, tc := range tests {
		got, warns, err := ParseLine(tc.in, env)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLine(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseLine(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		w := strings.Join(warns, "\n")
		if (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
			t.Errorf("ParseLine(%q) warnings %q, want %q", tc.in, w, tc.warn)
		}
	}
}

func TestParseFileLinesAndOrigins(t *testing.T) {
	src := "# system config\n\nSTORE=/dev/shm COUNT=1\nSTORE=/ssd GROUP=NODE\nSTORE=/dev/shm COUNT=3 MKDIR=0\nSCR_FLUSH=2\n"
	es, _, err := Parse(strings.NewReader(src), "sys.conf", SourceSystemFile, envMap())
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 4 || es[0].Origin.Line != 3 || es[3].Origin.Line != 6 || es[3].Origin.String() != "sys.conf line 6" {
		t.Fatalf("%+v", es)
	}
	es, warns, err := Parse(strings.NewReader("A=1\nB=$UNSET\nC=2\n"), "f.conf", SourceUserFile, envMap())
	if err != nil || len(es) != 2 || len(warns) != 1 || !strings.HasPrefix(warns[0], "config: f.conf line 2: value of B uses $UNSET") {
		t.Fatalf("%+v %q %v", es, warns, err)
	}
	_, _, err = Parse(strings.NewReader("A=1\nB\n"), "f.conf", SourceUserFile, envMap())
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 2 || se.File != "f.conf" || !strings.Contains(err.Error(), "f.conf line 2 column 2") {
		t.Fatalf("%v", err)
	}
}

func TestRepeatedParentsAccumulate(t *testing.T) {
	opts, _ := setup(t, "STORE=/dev/shm COUNT=1\nSTORE=/ssd GROUP=WORLD\nSTORE=/dev/shm/ COUNT=3 MKDIR=0\n", "STORE=/sys/only COUNT=9\n")
	c, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	es := c.Entries("STORE")
	// The user file hides the system file's STORE lines entirely.
	if len(es) != 3 {
		t.Fatalf("%+v", es)
	}
	s, err := c.Settings()
	if err != nil {
		t.Fatal(err)
	}
	st, ok := s.StoreFor("/dev/shm")
	if !ok || st.Count != 3 || st.MkDir {
		t.Errorf("merged /dev/shm store: %+v (paths are cleaned, later children win)", s.Stores)
	}
	if w, _ := s.StoreFor("/ssd"); w.Group != GroupWorld {
		t.Errorf("/ssd: %+v", w)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	in := []Entry{{KV: KV{"A", "x y#z$w\\v\"q'\t\n\r"}}, {KV: KV{"STORE", "/a b"}, Children: []KV{{"COUNT", "2"}}}}
	out, _, err := Parse(strings.NewReader(Format(in)), "x", SourceApp, envMap())
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Value != in[0].Value || out[1].Value != "/a b" || out[1].Children[0] != (KV{"COUNT", "2"}) {
		t.Fatalf("%q -> %+v", Format(in), out)
	}
}

// FuzzParse: the parser never panics or hangs; whatever it accepts, Format
// writes back in a form it parses to the same pairs.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"SCR_FLUSH=10\n", "STORE=/dev/shm GROUP=NODE COUNT=2 # c\n", "A=$HOME\nB=${HOME}/x\n",
		`A=a\ b` + "\n", "=\n", "A=\"x\"\n", "CKPT=0 TYPE=XOR SET_SIZE=4\nCKPT=1 INTERVAL=10\n", "\x00=\xff\n", "A=${\n"} {
		f.Add(s)
	}
	env := envMap("HOME", "/h", "V", "a b")
	f.Fuzz(func(t *testing.T, src string) {
		es, _, err := Parse(strings.NewReader(src), "fuzz", SourceUserFile, env)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 || se.Col < 1 {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		for _, e := range es {
			if e.Key == "" || e.Value == "" || strings.ToUpper(e.Key) != e.Key {
				t.Fatalf("bad entry %+v", e)
			}
		}
		again, warns, err := Parse(strings.NewReader(Format(es)), "fuzz2", SourceUserFile, envMap())
		if err != nil {
			t.Fatalf("Format output does not parse: %v\n%q", err, Format(es))
		}
		if len(warns) > 0 {
			t.Fatalf("Format output draws warnings: %q\n%q", warns, Format(es))
		}
		if len(again) != len(es) {
			t.Fatalf("round trip: %d entries, want %d", len(again), len(es))
		}
		for i := range es {
			if es[i].KV != again[i].KV || !reflect.DeepEqual(es[i].Children, again[i].Children) {
				t.Fatalf("round trip entry %d: %+v != %+v", i, again[i], es[i])
			}
		}
	})
}

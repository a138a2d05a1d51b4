package hostlist

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"node1", []string{"node1"}},
		{"node[1-4,7]", []string{"node1", "node2", "node3", "node4", "node7"}},
		{"n[01-03]", []string{"n01", "n02", "n03"}},
		{"n[08-10]", []string{"n08", "n09", "n10"}},
		{"n[8-10]", []string{"n8", "n9", "n10"}},
		{"n[007]", []string{"n007"}},
		{"a,b[1-2],c", []string{"a", "b1", "b2", "c"}},
		{"a b\tc\n", []string{"a", "b", "c"}},
		{"r[1-2]n[1-2]", []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
		{"n[1-2]-ib", []string{"n1-ib", "n2-ib"}},
		{"n[3,1]", []string{"n3", "n1"}},
		{"n1,n1", []string{"n1", "n1"}},
		{"fnode[0-2]", []string{"fnode0", "fnode1", "fnode2"}},
		{"[1-2]", []string{"1", "2"}},
		{"a,,b", []string{"a", "b"}},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in)
		if err != nil {
			t.Errorf("Expand(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	for _, in := range []string{
		"n[1-2", "n1-2]", "n[[1]]", "n[]", "n[a-b]", "n[3-1]", "n[1-]", "n[-1]",
		"n[1-9999999]", "n[1-1000]m[1-1000]x[1-1000]", "n[1 2]",
		"n[1234567890123456789]",
	} {
		_, err := Expand(in)
		if err == nil {
			t.Errorf("Expand(%q): no error", in)
			continue
		}
		var se *SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) {
			t.Errorf("Expand(%q): error %v is not a *SyntaxError", in, err)
		}
		if !strings.Contains(err.Error(), in) {
			t.Errorf("Expand(%q): error %q does not name the list", in, err)
		}
	}
}

func TestCompress(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, "a"},
		{[]string{"n1", "n2", "n3", "n7"}, "n[1-3,7]"},
		{[]string{"n01", "n02", "n03"}, "n[01-03]"},
		{[]string{"n8", "n9", "n10"}, "n[8-10]"},
		{[]string{"n08", "n09", "n10"}, "n[08-10]"},
		{[]string{"n9", "n010"}, "n[9,010]"},
		{[]string{"n1", "m1", "n2"}, "n1,m1,n2"},
		{[]string{"login", "n1", "n2"}, "login,n[1-2]"},
		{[]string{"n3", "n1", "n2"}, "n[3,1-2]"},
		{[]string{"n1", "n1"}, "n[1,1]"},
	}
	for _, tt := range tests {
		got := Compress(tt.in)
		if got != tt.want {
			t.Errorf("Compress(%q) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := Expand(got)
		if err != nil || !reflect.DeepEqual(back, tt.in) && !(len(back) == 0 && len(tt.in) == 0) {
			t.Errorf("Expand(Compress(%q)) = %q, %v", tt.in, back, err)
		}
	}
}

func TestSetOps(t *testing.T) {
	a := MustExpand("n[1-5]")
	b := MustExpand("n[2,4,9]")
	if got := Minus(a, b); !reflect.DeepEqual(got, MustExpand("n[1,3,5]")) {
		t.Errorf("Minus = %q", got)
	}
	if got := Intersect(a, b); !reflect.DeepEqual(got, MustExpand("n[2,4]")) {
		t.Errorf("Intersect = %q", got)
	}
	if got := Dedupe([]string{"b", "a", "b", "c", "a"}); !reflect.DeepEqual(got, []string{"b", "a", "c"}) {
		t.Errorf("Dedupe = %q", got)
	}
}

func TestSort(t *testing.T) {
	h := []string{"n10", "login", "n2", "m1", "n02", "n1"}
	Sort(h)
	want := []string{"login", "m1", "n1", "n02", "n2", "n10"}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("Sort = %q, want %q", h, want)
	}
	if got := Compress(h); got != "login,m1,n[1,02,2,10]" {
		t.Errorf("Compress(sorted) = %q", got)
	}
}

// validHost reports whether s is a name Compress promises to round-trip.
func validHost(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !(r == '-' || r == '.' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// FuzzRoundTrip checks Expand(Compress(x)) == x for any list of valid names
// (the input is split on '|' into names).
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"n1|n2|n3", "n08|n09|n10", "a|n1|n1|b7", "x0|x00|x000|x1", "9|10|11", "n1-ib|n2-ib"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var hosts []string
		for _, h := range strings.Split(s, "|") {
			if !validHost(h) {
				return
			}
			hosts = append(hosts, h)
		}
		c := Compress(hosts)
		back, err := Expand(c)
		if err != nil {
			t.Fatalf("Expand(Compress(%q)) = Expand(%q): %v", hosts, c, err)
		}
		if !reflect.DeepEqual(back, hosts) {
			t.Fatalf("Expand(Compress(%q)) = Expand(%q) = %q", hosts, c, back)
		}
	})
}

// FuzzExpand checks Expand never panics and that what it expands survives
// a Compress/Expand round trip.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"node[1-4,7]", "n[01-10]", "r[1-2]n[3-4]", "a,b", "n[", "n[9-1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hosts, err := Expand(s)
		if err != nil {
			return
		}
		for _, h := range hosts {
			if !validHost(h) {
				return
			}
		}
		back, err := Expand(Compress(hosts))
		if err != nil || (len(hosts) > 0 && !reflect.DeepEqual(back, hosts)) {
			t.Fatalf("round trip of %q: got %q, %v", hosts, back, err)
		}
	})
}

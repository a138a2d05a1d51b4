package safefs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/scr-go/scr/internal/safefs"
	"github.com/scr-go/scr/internal/safefs/safefstest"
)

func TestRel(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"a/b", "a/b"},
		{"..data/f", "..data/f"},
		{"a/../b", "b"},
		{"./a//b/", "a/b"},
		{"a..", "a.."},
	} {
		got, err := safefs.Rel(tc.in)
		if err != nil || got != filepath.FromSlash(tc.want) {
			t.Errorf("Rel(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/../../x", "/etc/passwd", "a\x00b", "../../../../home/victim/.bashrc"} {
		if _, err := safefs.Rel(bad); !errors.Is(err, safefs.ErrUnsafe) {
			t.Errorf("Rel(%q) accepted (%v)", bad, err)
		}
	}
}

func TestComponent(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "a\x00", string(make([]byte, 300))} {
		if safefs.Component(bad) == nil {
			t.Errorf("Component(%q) accepted", bad)
		}
	}
	if err := safefs.Component("scr.1234"); err != nil {
		t.Fatal(err)
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		dir, p string
		ok     bool
	}{{"/p", "/p", true}, {"/p", "/p/a/b", true}, {"/p", "/pa", false}, {"/p", "/", false}, {"/p", "/p/../q", false}, {"/p", "/p/..x", true}} {
		if got := safefs.Within(tc.dir, filepath.Clean(tc.p)); got != tc.ok {
			t.Errorf("Within(%s, %s) = %v", tc.dir, tc.p, got)
		}
	}
}

// Our own directories pass; a symbolic link, a group-writable directory
// and a file are refused with an error that names the path.
func TestPrivate(t *testing.T) {
	d := t.TempDir()
	ok := filepath.Join(d, "ok")
	if err := safefs.Mkdir(ok, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := safefs.Mkdir(ok, 0o700); err != nil {
		t.Fatalf("reuse of our own directory: %v", err)
	}
	link := filepath.Join(d, "link")
	os.Symlink(ok, link)
	loose := filepath.Join(d, "loose")
	os.Mkdir(loose, 0o700)
	os.Chmod(loose, 0o777)
	file := filepath.Join(d, "file")
	os.WriteFile(file, nil, 0o600)
	for _, p := range []string{link, loose, file} {
		err := safefs.Mkdir(p, 0o700)
		var ue *safefs.UnsafeError
		if !errors.As(err, &ue) || ue.Path != p {
			t.Errorf("%s accepted or not named: %v", p, err)
		}
	}
}

func TestShared(t *testing.T) {
	d := t.TempDir()
	open := filepath.Join(d, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if err := safefs.Shared(open); !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("world-writable without sticky bit accepted: %v", err)
	}
	os.Chmod(open, 0o777|os.ModeSticky)
	if err := safefs.Shared(open); err != nil {
		t.Fatal(err)
	}
	if _, err := safefs.Ensure(open, 0o700, "alice", "scr.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := safefs.Ensure(open, 0o700, "../x"); err == nil {
		t.Fatal("a name with '/' was used as a directory name")
	}
}

// Another user pre-creates our directory in a 1777 directory (with mode
// 0777, so she can plant files in it later), or puts a symbolic link to
// her own directory there: Ensure refuses both, and a world-writable
// shared directory owned by her is refused too.
func TestEnsureRefusesOtherUsersDirectories(t *testing.T) {
	safefstest.RequireRoot(t)
	shm := safefstest.SharedDir(t)
	safefstest.As(t, safefstest.Mallory, "mkdir -m 0777 "+shm+"/alice && mkdir "+shm+"/mal && ln -s "+shm+"/mal "+shm+"/bob")
	for _, user := range []string{"alice", "bob"} {
		_, err := safefs.Ensure(shm, 0o700, user, "scr.1")
		var ue *safefs.UnsafeError
		if !errors.As(err, &ue) || ue.Path != filepath.Join(shm, user) {
			t.Fatalf("%s: Mallory's directory was accepted: %v", user, err)
		}
		t.Log(err)
		if _, err := os.Stat(filepath.Join(shm, "mal", "scr.1")); err == nil {
			t.Fatal("a directory was created through Mallory's link")
		}
	}
	// Mallory's own 1777 directory: she may rename what we put there.
	safefstest.As(t, safefstest.Mallory, "mkdir "+shm+"/mtmp && chmod 1777 "+shm+"/mtmp")
	if _, err := safefs.Ensure(filepath.Join(shm, "mtmp"), 0o700, "alice"); !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("a world-writable directory of another user was trusted: %v", err)
	}
}

func TestCreateTemp(t *testing.T) {
	d := t.TempDir()
	f, err := safefs.CreateTemp(d, "secret.tmp*", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
}

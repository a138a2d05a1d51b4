// Package safefstest lets tests play another user of a shared node: it
// runs shell commands under another uid (syscall credentials, like
// setpriv), so that a test can reproduce what a hostile local user does in
// /dev/shm or in a shared prefix before or while scr-go runs. It needs
// root (CI runs the tests as root); without it the tests skip.
package safefstest

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Mallory and Alice are two unprivileged uids (and gids) tests use for the
// other users of a node.
const (
	Mallory = 4242
	Alice   = 4343
)

// RequireRoot skips the test unless it runs as root and can switch uids.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as several users (CI runs the tests as root)")
	}
	if err := command(Mallory, "true").Run(); err != nil {
		t.Skipf("cannot run a command as uid %d: %v", Mallory, err)
	}
}

func command(uid int, script string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}

// As runs script with /bin/sh as uid (and gid) uid, and fails the test if
// it fails. The script is what the other user types.
func As(t testing.TB, uid int, script string) string {
	t.Helper()
	out, err := command(uid, script).CombinedOutput()
	if err != nil {
		t.Fatalf("as uid %d: %s: %v\n%s", uid, script, err, out)
	}
	return string(out)
}

// SharedDir returns a new directory that stands in for /dev/shm or /tmp:
// mode 1777, owned by root.
func SharedDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "shared-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// Try runs script as uid like As but returns its error instead of failing
// the test: for what the other user must not be able to do.
func Try(uid int, script string) (string, error) {
	out, err := command(uid, script).CombinedOutput()
	return string(out), err
}

package vcluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nsID identifies a namespace: the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

func (n nsID) zero() bool { return n.ino == 0 }

// nsOf returns the namespace a /proc/<pid>/ns/<kind> or /run/netns/<name>
// file refers to.
func nsOf(path string) (nsID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nsID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nsID{}, fmt.Errorf("stat %s: no inode", path)
	}
	return nsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// nsOfFile is the namespace of an open /proc/<pid>/ns/<kind> file, which
// keeps that namespace (and so its identity) alive while open.
func nsOfFile(f *os.File) (nsID, error) {
	fi, err := f.Stat()
	if err != nil {
		return nsID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nsID{}, fmt.Errorf("stat %s: no inode", f.Name())
	}
	return nsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// pidsIn lists the processes whose namespace of the given kind ("net",
// "mnt", "pid", ...) is one of ids. Processes that exit during the scan are
// skipped; zombies have no namespaces and are never listed.
func pidsIn(kind string, ids ...nsID) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		id, err := nsOf("/proc/" + e.Name() + "/ns/" + kind)
		if err != nil {
			continue
		}
		for _, want := range ids {
			if id == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// killAllIn SIGKILLs every process in the given namespaces (of the given
// kind) until none is left, or ctx ends. New processes forked meanwhile are
// caught by the next scan.
func killAllIn(ctx context.Context, kind string, ids ...nsID) error {
	var live []nsID
	for _, id := range ids {
		if !id.zero() {
			live = append(live, id)
		}
	}
	if len(live) == 0 {
		return nil
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pids := pidsIn(kind, live...)
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v still alive in %s namespace: %w", pids, kind, ctx.Err())
		case <-tick.C:
		}
	}
}

// childPIDs returns the children of pid (needs CONFIG_PROC_CHILDREN).
func childPIDs(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z'
}

// run runs a host command and returns its combined output; the error names
// the command and carries its output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	path, err := lookPath(name)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ip runs the ip(8) command.
func ip(ctx context.Context, args ...string) error {
	_, err := run(ctx, "ip", args...)
	return err
}

// netnsPath is where ip-netns(8) keeps a named network namespace.
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, fi.Size()-off)
	_, _ = f.ReadAt(buf, off)
	return strings.TrimSpace(string(buf))
}

package nodecheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Dir is one directory the storage check tests, with the capacity it must
// have (0 = any).
type Dir struct {
	Kind  string // "cntl" or "cache" (for messages)
	Path  string
	Bytes int64
}

// String writes the flag form "PATH[:BYTES]".
func (d Dir) String() string {
	if d.Bytes > 0 {
		return d.Path + ":" + strconv.FormatInt(d.Bytes, 10)
	}
	return d.Path
}

// ParseDir reads "PATH[:BYTES]"; BYTES may carry a unit (KB, MB, GB, TB,
// PB: powers of 1024, as SCR reads them; KiB etc. too).
func ParseDir(kind, s string) (Dir, error) {
	path, size, hasSize := strings.Cut(s, ":")
	if path == "" {
		return Dir{}, fmt.Errorf("%s directory %q: empty path", kind, s)
	}
	d := Dir{Kind: kind, Path: path}
	if hasSize {
		b, err := ParseBytes(size)
		if err != nil {
			return Dir{}, fmt.Errorf("%s directory %q: %w", kind, s, err)
		}
		d.Bytes = b
	}
	return d, nil
}

// ParseBytes reads a byte count such as "1048576", "512MB", "2GiB", "1.5TB".
func ParseBytes(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"PIB", 1 << 50}, {"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
		{"PB", 1 << 50}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad byte count %q (want e.g. 1048576, 512MB, 2GB)", s)
	}
	return int64(v * float64(mult)), nil
}

// StorageError says which directory failed which part of the check.
type StorageError struct {
	Dir Dir
	Msg string
	Err error
}

func (e *StorageError) Error() string {
	s := fmt.Sprintf("%s directory %s: %s", e.Dir.Kind, e.Dir.Path, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *StorageError) Unwrap() error { return e.Err }

// CheckStorage checks each directory on this node: its file system has at
// least Bytes of total capacity (free capacity with free=true, to catch a
// previous job's leftovers), and it is writable: it is created if missing
// (like mkdir -p), then a test file is written, synced and removed. The
// first failure is returned as a *StorageError.
func CheckStorage(dirs []Dir, free bool, host string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d.Path, 0o700); err != nil {
			return &StorageError{Dir: d, Msg: "cannot create", Err: err}
		}
		if d.Bytes > 0 {
			var st syscall.Statfs_t
			if err := syscall.Statfs(d.Path, &st); err != nil {
				return &StorageError{Dir: d, Msg: "statfs failed", Err: err}
			}
			have, what := int64(st.Blocks)*st.Bsize, "total"
			if free {
				have, what = int64(st.Bavail)*st.Bsize, "free"
			}
			if have < d.Bytes {
				return &StorageError{Dir: d, Msg: fmt.Sprintf("insufficient space: %s %d bytes < %d required", what, have, d.Bytes)}
			}
		}
		p := filepath.Join(d.Path, fmt.Sprintf(".scr_check_node.%s.%d", host, os.Getpid()))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return &StorageError{Dir: d, Msg: "not writable", Err: err}
		}
		_, werr := f.Write([]byte("scr_check_node\n"))
		serr := f.Sync()
		cerr := f.Close()
		rerr := os.Remove(p)
		if err := errors.Join(werr, serr, cerr); err != nil {
			return &StorageError{Dir: d, Msg: "could not write a test file", Err: err}
		}
		if rerr != nil {
			return &StorageError{Dir: d, Msg: "could not remove the test file", Err: rerr}
		}
	}
	return nil
}

// Storage check output lines (SCR's scr_check_node wording).
const (
	StoragePass = "scr_check_node: PASS"
	storageFail = "scr_check_node: FAIL: "
)

// StorageResult is the one line the remote storage check prints.
func StorageResult(err error) string {
	if err == nil {
		return StoragePass
	}
	return storageFail + strings.ReplaceAll(err.Error(), "\n", " ")
}

// StorageArgs is the argument list of the remote storage check (after the
// program): --check-storage [--free] [--cntl D[:B]]... [--cache D[:B]]...
func StorageArgs(dirs []Dir, free bool) []string {
	args := []string{"--check-storage"}
	if free {
		args = append(args, "--free")
	}
	for _, d := range dirs {
		args = append(args, "--"+d.Kind, d.String())
	}
	return args
}

// DefaultDirs are the directories checked when none are configured: the
// node's SCR_CNTL_BASE and SCR_CACHE_BASE (default /dev/shm), as the node's
// own environment gives them.
func DefaultDirs(getenv func(string) string) []Dir {
	cntl, cache := getenv("SCR_CNTL_BASE"), getenv("SCR_CACHE_BASE")
	if cntl == "" {
		cntl = "/dev/shm"
	}
	if cache == "" {
		cache = "/dev/shm"
	}
	dirs := []Dir{{Kind: "cntl", Path: cntl}}
	if filepath.Clean(cache) != filepath.Clean(cntl) {
		dirs = append(dirs, Dir{Kind: "cache", Path: cache})
	}
	return dirs
}

// ParseStorageArgs reads the arguments after --check-storage (see
// StorageArgs). A kind (cntl, cache) not given is checked at the node's own
// base directory (DefaultDirs), unless that path is already in the list.
func ParseStorageArgs(args []string, getenv func(string) string) (dirs []Dir, free bool, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--check-storage":
		case a == "--free" || a == "-f":
			free = true
		case a == "--cntl" || a == "--cache":
			if i+1 >= len(args) {
				return nil, false, fmt.Errorf("%s needs DIR[:BYTES]", a)
			}
			d, err := ParseDir(strings.TrimPrefix(a, "--"), args[i+1])
			if err != nil {
				return nil, false, err
			}
			dirs = append(dirs, d)
			i++
		case strings.HasPrefix(a, "--cntl=") || strings.HasPrefix(a, "--cache="):
			k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			d, err := ParseDir(k, v)
			if err != nil {
				return nil, false, err
			}
			dirs = append(dirs, d)
		default:
			return nil, false, fmt.Errorf("storage check: unknown argument %q", a)
		}
	}
	// A kind not given is checked at the node's own base (DefaultDirs).
	have := map[string]bool{}
	seen := map[string]bool{}
	for _, d := range dirs {
		have[d.Kind] = true
		seen[filepath.Clean(d.Path)] = true
	}
	for _, d := range DefaultDirs(getenv) {
		if !have[d.Kind] && !seen[filepath.Clean(d.Path)] {
			dirs = append(dirs, d)
			seen[filepath.Clean(d.Path)] = true
		}
	}
	return dirs, free, nil
}

// EchoArg asks the remote storage check to print "UP" first, so one remote
// command serves both the echo and the storage check.
const EchoArg = "--echo"

// LabelArg asks the remote storage check to start every line with its node
// name and ": ", so the output of many nodes launched at once (one srun
// step) can be told apart.
const LabelArg = "--label"

// NodeName is how a node names itself in labelled output: SCR_NODE_NAME,
// else SLURMD_NODENAME (Slurm's NodeName for this node), else the short
// host name.
func NodeName(getenv func(string) string) string {
	for _, k := range []string{"SCR_NODE_NAME", "SLURMD_NODENAME"} {
		if v := getenv(k); v != "" {
			return v
		}
	}
	h, _ := os.Hostname()
	short, _, _ := strings.Cut(h, ".")
	return short
}

// RunStorageCheck is the whole remote side: parse args, check, and return
// the text to print ("UP" first with --echo, then the one result line) and
// whether the check passed.
func RunStorageCheck(args []string, getenv func(string) string, host string) (string, bool) {
	echo, label := false, false
	rest := make([]string, 0, len(args))
	for _, a := range args {
		switch a {
		case EchoArg:
			echo = true
		case LabelArg:
			label = true
		default:
			rest = append(rest, a)
		}
	}
	dirs, free, err := ParseStorageArgs(rest, getenv)
	if err == nil {
		err = CheckStorage(dirs, free, host)
	}
	line := StorageResult(err)
	if echo {
		line = "UP\n" + line
	}
	if label {
		line = host + ": " + strings.ReplaceAll(line, "\n", "\n"+host+": ")
	}
	return line, err == nil
}

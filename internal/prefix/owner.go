package prefix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// OwnerFile names the job that uses the prefix now; OwnerLock is held
// (flock) by that job's rank 0 while it runs.
const (
	OwnerFile     = "owner.json"
	ownerLockFile = "owner.lock"
	ownerFormat   = "scr-owner"
	OwnerVersion  = 1
)

// Owner is the owner file: which job uses the prefix.
type Owner struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	JobID   string    `json:"job_id"` // the allocation's job id (the one the cache directories are named after)
	User    string    `json:"user,omitempty"`
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Since   time.Time `json:"since"`
}

// OwnerPath is the owner file of a prefix.
func OwnerPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), OwnerFile) }

// ReadOwner reads the owner file; (nil, nil) when there is none.
func ReadOwner(prefixDir string) (*Owner, error) {
	o := &Owner{}
	ok, err := readJSON(OwnerPath(prefixDir), ownerFormat, OwnerVersion, o)
	if err != nil || !ok {
		return nil, err
	}
	return o, nil
}

// ErrPrefixBusy is wrapped by *BusyError.
var ErrPrefixBusy = errors.New("prefix in use by another job")

// BusyError says that another job runs on the prefix.
type BusyError struct {
	Prefix string
	Owner  *Owner // nil if the owner file could not be read
}

func (e *BusyError) Error() string {
	who := "another job (its owner file cannot be read)"
	if o := e.Owner; o != nil {
		who = fmt.Sprintf("job %s (user %s, pid %d on %s, since %s)", o.JobID, o.User, o.PID, o.Host, o.Since.Local().Format("2006-01-02T15:04:05"))
	}
	return fmt.Sprintf("prefix %s is in use by %s: two jobs on one prefix would mix their datasets; give this job its own SCR_PREFIX, or wait for the other one to end", e.Prefix, who)
}

// Unwrap returns ErrPrefixBusy.
func (e *BusyError) Unwrap() error { return ErrPrefixBusy }

// OwnerLock is a claim on a prefix (see Claim).
type OwnerLock struct{ f *os.File }

// Release gives the prefix up (nil-safe). The lock also goes when the
// process ends, however it ends.
func (l *OwnerLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

// Claim makes the job me the user of the prefix for as long as the
// returned lock is held: it takes an exclusive flock on .scr/owner.lock
// and records me in .scr/owner.json. If another process holds the lock,
// the owner file decides: a run of the same job (same job id: a relaunch
// while the old run's rank 0 is not gone yet, e.g. on a node that lost
// power) proceeds without the lock, any other job gets a *BusyError. A
// lock left by a dead process is free again: nothing to clean up.
func Claim(prefixDir string, me Owner) (*OwnerLock, error) {
	if err := EnsureMetaDir(prefixDir); err != nil {
		return nil, err
	}
	path := filepath.Join(MetaDir(prefixDir), ownerLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		me.Format, me.Version = ownerFormat, OwnerVersion
		if me.Since.IsZero() {
			me.Since = time.Now().UTC()
		}
		if err := writeJSON(OwnerPath(prefixDir), &me); err != nil {
			f.Close()
			return nil, err
		}
		return &OwnerLock{f: f}, nil
	}
	f.Close()
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("lock %s: %w (does the file system support flock?)", path, err)
	}
	o, rerr := ReadOwner(prefixDir)
	if rerr == nil && o != nil && o.JobID == me.JobID {
		return &OwnerLock{}, nil
	}
	return nil, &BusyError{Prefix: prefixDir, Owner: o}
}

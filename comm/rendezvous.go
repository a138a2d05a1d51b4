package comm

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/safefs"
)

// launcher is what a launcher without PMI tells a task about itself.
type launcher struct {
	name       string // slurm, flux, ompi, jsm, mvapich
	rank, size int
	step       string // job step key, unique per launch of the step
}

// launcherVars reads rank and size from the variables launchers set; ok is
// false when there are none (a process started by hand: a singleton).
func launcherVars(getenv func(string) string) (launcher, bool, error) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return v
			}
		}
		return ""
	}
	type src struct {
		name        string
		rank, size  []string
		step        func() string
		needsStepID bool
	}
	srcs := []src{
		// Slurm sets SLURM_PROCID in the batch script too; only a task of
		// a step (srun) also has SLURM_STEP_ID.
		{"slurm", []string{"SLURM_PROCID"}, []string{"SLURM_NTASKS", "SLURM_NPROCS"},
			func() string { return getenv("SLURM_JOB_ID") + "." + first("SLURM_STEP_ID", "SLURM_STEPID") }, true},
		{"flux", []string{"FLUX_TASK_RANK"}, []string{"FLUX_JOB_SIZE"},
			func() string { return getenv("FLUX_JOB_ID") }, false},
		{"ompi", []string{"OMPI_COMM_WORLD_RANK", "PMIX_RANK"}, []string{"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"},
			func() string { return first("PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_ess_jobid") }, false},
		{"jsm", []string{"JSM_NAMESPACE_RANK"}, []string{"JSM_NAMESPACE_SIZE"},
			func() string { return getenv("LSB_JOBID") + "." + first("JSM_NAMESPACE_LOCAL_ID", "PMIX_NAMESPACE") }, false},
		{"mvapich", []string{"MV2_COMM_WORLD_RANK"}, []string{"MV2_COMM_WORLD_SIZE"},
			func() string { return "" }, false},
	}
	for _, s := range srcs {
		rv, sv := first(s.rank...), first(s.size...)
		if rv == "" || sv == "" {
			continue
		}
		if s.needsStepID && first("SLURM_STEP_ID", "SLURM_STEPID") == "" {
			continue
		}
		r, err1 := strconv.Atoi(rv)
		n, err2 := strconv.Atoi(sv)
		if err1 != nil || err2 != nil || n < 1 || r < 0 || r >= n {
			return launcher{}, false, fmt.Errorf("comm: bad %s rank/size %q/%q in the environment", s.name, rv, sv)
		}
		return launcher{name: s.name, rank: r, size: n, step: s.step()}, true, nil
	}
	return launcher{}, false, nil
}

// rendezvousDir is SCR_RENDEZVOUS_DIR, else
// <SCR_PREFIX>/.scr/rendezvous/<key>, the key naming this launch of the job
// step (SCR_RENDEZVOUS_KEY, else the launcher's step id) plus SCR_RUN_ID.
func rendezvousDir(getenv func(string) string, lv launcher) (string, error) {
	if d := getenv("SCR_RENDEZVOUS_DIR"); d != "" {
		return d, nil
	}
	pfx := getenv("SCR_PREFIX")
	key := getenv("SCR_RENDEZVOUS_KEY")
	if key == "" && strings.Trim(lv.step, ".") != "" {
		key = lv.name + "-" + lv.step
		if run := getenv("SCR_RUN_ID"); run != "" {
			key += "-run" + run
		}
	}
	if pfx == "" || key == "" {
		return "", fmt.Errorf("comm: rank %d of %d was started by %s without PMI and no rendezvous is possible: set SCR_RENDEZVOUS_DIR, or SCR_PREFIX (and SCR_RENDEZVOUS_KEY if the launcher names no job step)", lv.rank, lv.size, lv.name)
	}
	key = strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, key)
	return filepath.Join(pfx, ".scr", "rendezvous", key), nil
}

// dirBoot is the rendezvous through a shared directory: rank 0 writes the
// job's secret to a 0600 file; every rank writes "node;addr;mac" to its
// own file, the MAC (over the secret) telling a current entry from a stale
// one of an earlier launch with the same key. Lookups poll for the file.
//
// A rank other than 0 trusts the secret it read only once rank 0 answered
// the challenge with it (a probe connection, see probeRank0): a secret file
// left by an earlier launch with the same key, read before rank 0 rewrote
// it, is then re-read instead of splitting the job into two worlds that
// cannot authenticate each other.
type dirBoot struct {
	dir     string
	rank    int
	secret  []byte
	timeout time.Duration // bound of one probe's handshake
}

func (b *dirBoot) entryMAC(r int, node, addr string) string {
	return hex.EncodeToString(mac(b.secret, []byte(strconv.Itoa(r)), []byte(node), []byte(addr)))[:32]
}

// writeAtomic writes data to a new temporary file next to path (random
// name, O_EXCL: never a file another user prepared to read the secret
// from; created with its final mode perm) and renames it over path.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := safefs.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*", perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// ensureRendezvousDir creates the rendezvous directory, or checks the one
// there: it holds the job's secret, so it must be ours, a real directory,
// not writable by others (internal/safefs). Below <prefix>/.scr the
// metadata directory is checked instead (everything under it is ours).
func ensureRendezvousDir(dir string) error {
	dir = filepath.Clean(dir)
	for d := dir; d != filepath.Dir(d); d = filepath.Dir(d) {
		if filepath.Base(d) == ".scr" {
			if err := prefix.EnsureMetaDir(filepath.Dir(d)); err != nil {
				return err
			}
			return os.MkdirAll(dir, 0o700)
		}
	}
	if _, err := os.Stat(filepath.Dir(dir)); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return err
		}
	}
	return safefs.EnsureDir(dir, 0o700)
}

// poll calls f until it returns true or an error, or ctx ends.
func poll(ctx context.Context, what string, f func() (bool, error)) error {
	wait := 20 * time.Millisecond
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}

func (b *dirBoot) exchange(ctx context.Context, node, addr string) ([]byte, error) {
	if err := ensureRendezvousDir(b.dir); err != nil {
		return nil, fmt.Errorf("rendezvous directory: %w", err)
	}
	secretPath := filepath.Join(b.dir, "secret")
	if b.rank == 0 {
		s := make([]byte, 32)
		rand.Read(s)
		if err := writeAtomic(secretPath, []byte(hex.EncodeToString(s)), 0o600); err != nil {
			return nil, fmt.Errorf("write the job's secret: %w", err)
		}
	}
	err := poll(ctx, "the job's secret in "+secretPath+", confirmed by rank 0 (is rank 0 running?)", func() (bool, error) {
		v, err := os.ReadFile(secretPath)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		s, err := hex.DecodeString(strings.TrimSpace(string(v)))
		if err != nil || len(s) < 16 {
			return false, nil // being replaced
		}
		b.secret = s
		if b.rank == 0 {
			return true, nil
		}
		addr0, _, ok, err := b.readEntry(0)
		if err != nil || !ok {
			return false, err // rank 0's entry not there yet, or not for this secret
		}
		pctx, cancel := context.WithTimeout(ctx, b.timeout)
		defer cancel()
		return probeRank0(pctx, addr0, s, b.timeout) == nil, nil
	})
	if err != nil {
		return nil, err
	}
	entry := node + ";" + addr + ";" + b.entryMAC(b.rank, node, addr)
	if err := writeAtomic(filepath.Join(b.dir, "rank."+strconv.Itoa(b.rank)), []byte(entry), 0o600); err != nil {
		return nil, fmt.Errorf("publish my address: %w", err)
	}
	return b.secret, nil
}

// readEntry reads rank r's entry; ok is false when there is none yet or it
// does not verify with the secret (a stale entry of an earlier launch).
func (b *dirBoot) readEntry(r int) (addr, node string, ok bool, err error) {
	v, err := os.ReadFile(filepath.Join(b.dir, "rank."+strconv.Itoa(r)))
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, err
	}
	f := strings.Split(strings.TrimSpace(string(v)), ";")
	if len(f) != 3 || !hmac.Equal([]byte(f[2]), []byte(b.entryMAC(r, f[0], f[1]))) {
		return "", "", false, nil
	}
	return f[1], f[0], true, nil
}

func (b *dirBoot) lookup(ctx context.Context, r int) (addr, node string, err error) {
	path := filepath.Join(b.dir, "rank."+strconv.Itoa(r))
	err = poll(ctx, "rank "+strconv.Itoa(r)+"'s address in "+path, func() (bool, error) {
		var ok bool
		var err error
		addr, node, ok, err = b.readEntry(r)
		return ok, err
	})
	return addr, node, err
}

func (b *dirBoot) close() {}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
)

// The rank program: what every rank of a measured job runs. scr_bench
// starts it through a launcher (scr_launch by default) as
//
//	RANKCMD --mode MODE --size BYTES --times T --out DIR [--nofsync]
//	        [--lose NODE] [--cpuprofile PREFIX]
//
// with the SCR parameters (SCR_PREFIX, SCR_COPY_TYPE, ...) in the
// environment, and reads back one DIR/rank.<r>.json per rank (RankReport).
// Another implementation (e.g. a C program over libscr and MPI) plugs in
// by following the same contract; see doc/performance.md.

// Modes of the rank program.
const (
	ModeCkpt    = "ckpt"    // Init, then Times x (plain write, checkpoint)
	ModePrepare = "prepare" // Init, one checkpoint (for a rebuild run)
	ModeRebuild = "rebuild" // wipe --lose's cache, plain write of its ranks, Init that rebuilds, verify
)

// Section names in a RankReport.
const (
	SecInit    = "init"    // scr.Init of a ckpt run
	SecPlain   = "plain"   // every rank writes SIZE bytes to a new file, no SCR
	SecCkpt    = "ckpt"    // StartOutput, Route, the same write, Complete
	SecNode    = "node"    // only the lost node's ranks write their bytes
	SecRebuild = "rebuild" // scr.Init rebuilding the lost node
)

// Record is one timed section on one rank: wall-clock Unix nanoseconds
// (one clock for every process of the machine), and the peak resident set
// of the process during the section (kB, 0 if unknown).
type Record struct {
	What   string `json:"what"`
	I      int    `json:"i"`
	Start  int64  `json:"start_ns"`
	End    int64  `json:"end_ns"`
	PeakKB int64  `json:"peak_rss_kb"`
	CPU    int64  `json:"cpu_ns"` // user + system time of the process during the section
	// Minor page faults and context switches (voluntary: waits) of the
	// process during the section.
	Faults int64 `json:"minflt"`
	Waits  int64 `json:"nvcsw"`
}

// RankReport is what a rank writes to <out>/rank.<r>.json.
type RankReport struct {
	Rank    int      `json:"rank"`
	Node    string   `json:"node"`
	Records []Record `json:"records"`
}

type rankOpts struct {
	mode, out, lose, cpuprofile string
	size                        int64
	times                       int
	fsync                       bool
}

func parseRank(args []string) (rankOpts, error) {
	o := rankOpts{fsync: true, times: 1}
	var nofsync bool
	fs := flag.NewFlagSet("scr_bench rank", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.mode, "mode", "", "")
	fs.Int64Var(&o.size, "size", 0, "")
	fs.IntVar(&o.times, "times", 1, "")
	fs.StringVar(&o.out, "out", "", "")
	fs.StringVar(&o.lose, "lose", "", "")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "")
	fs.BoolVar(&nofsync, "nofsync", false, "")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.fsync = !nofsync
	switch {
	case o.mode != ModeCkpt && o.mode != ModePrepare && o.mode != ModeRebuild:
		return o, fmt.Errorf("--mode %q: want %s, %s or %s", o.mode, ModeCkpt, ModePrepare, ModeRebuild)
	case o.size < 1 || o.times < 1 || o.out == "" || fs.NArg() > 0:
		return o, errors.New("want --size >= 1, --times >= 1, --out DIR and no other arguments")
	case o.mode == ModeRebuild && o.lose == "":
		return o, errors.New("--mode rebuild needs --lose NODE")
	}
	return o, nil
}

// RankMain runs one rank of a measured job (the hidden "rank" command of
// scr_bench) and returns its exit code: 0, 1 on failure, 2 on usage
// errors, comm.ExitPeerLost when a peer was lost.
func RankMain(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parseRank(args)
	if err != nil {
		fmt.Fprintf(stderr, "scr_bench rank: %v\n", err)
		return 2
	}
	c, err := comm.FromEnv(ctx, comm.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "scr_bench rank: %v\n", err)
		return 1
	}
	err = runRank(ctx, c, o)
	c.Close()
	if err != nil {
		fmt.Fprintf(stderr, "scr_bench rank %d on %s: %v\n", c.Rank(), c.Host(c.Rank()), err)
		if errors.Is(err, comm.ErrPeerLost) {
			return comm.ExitPeerLost
		}
		return 1
	}
	return 0
}

// blockSize is the buffer the application writes its file from: the
// rank's memory then reflects SCR's own, not a copy of the checkpoint.
const blockSize = 4 << 20

type rank struct {
	c     comm.Comm
	o     rankOpts
	block []byte
	plain string // directory of the plain writes
	rep   RankReport
}

func runRank(ctx context.Context, c comm.Comm, o rankOpts) (err error) {
	if o.cpuprofile != "" {
		f, err := os.Create(fmt.Sprintf("%s.rank%d.pprof", o.cpuprofile, c.Rank()))
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
	}
	r := &rank{c: c, o: o, rep: RankReport{Rank: c.Rank(), Node: c.Host(c.Rank())}}
	if r.plain, err = r.plainDir(); err != nil {
		return err
	}
	defer os.RemoveAll(r.plain)
	r.block = make([]byte, min(blockSize, o.size))
	for i := range r.block {
		r.block[i] = byte(i*7 + c.Rank())
	}
	switch o.mode {
	case ModeCkpt:
		err = r.ckptRun(ctx)
	case ModePrepare:
		err = r.prepareRun(ctx)
	case ModeRebuild:
		err = r.rebuildRun(ctx)
	}
	if err != nil {
		return err
	}
	b, _ := json.Marshal(r.rep)
	return os.WriteFile(filepath.Join(o.out, "rank."+strconv.Itoa(c.Rank())+".json"), b, 0o600)
}

// timed runs section after a barrier and records it.
func (r *rank) timed(ctx context.Context, what string, i int, section func() error) error {
	if err := r.c.Barrier(ctx); err != nil {
		return err
	}
	resetPeakRSS()
	u0 := usage()
	start := time.Now().UnixNano()
	if err := section(); err != nil {
		return fmt.Errorf("%s %d: %w", what, i, err)
	}
	end := time.Now().UnixNano()
	u := usage()
	r.rep.Records = append(r.rep.Records, Record{What: what, I: i, Start: start, End: end, PeakKB: peakRSS(),
		CPU: u.cpu - u0.cpu, Faults: u.minflt - u0.minflt, Waits: u.nvcsw - u0.nvcsw})
	return nil
}

// write writes SIZE bytes of the rank's pattern to a new file at p, the
// way an application writes its checkpoint.
func (r *rank) write(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for left := r.o.size; left > 0 && err == nil; {
		n := min(left, int64(len(r.block)))
		_, err = f.Write(r.block[:n])
		left -= n
	}
	if err == nil && r.o.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// verify checks that p holds the rank's pattern.
func (r *rank) verify(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, len(r.block))
	got := make([]byte, len(r.block))
	var off int64
	for off < r.o.size {
		n := min(r.o.size-off, int64(len(got)))
		if _, err := io.ReadFull(br, got[:n]); err != nil {
			return fmt.Errorf("%s at %d: %w", p, off, err)
		}
		if !bytes.Equal(got[:n], r.block[:n]) {
			return fmt.Errorf("%s: content differs in the %d bytes at %d", p, n, off)
		}
		off += n
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return fmt.Errorf("%s is longer than %d bytes", p, r.o.size)
	}
	return nil
}

// plainDir is where the plain writes go: a directory of ours in the
// node's cache base (the same tmpfs as the checkpoints).
func (r *rank) plainDir() (string, error) {
	base, _ := os.LookupEnv("SCR_CACHE_BASE")
	if base == "" {
		base = "/dev/shm"
	}
	d := filepath.Join(base, fmt.Sprintf("scr_bench.%d.%s.rank%d", os.Getuid(), cache.JobID(os.LookupEnv), r.c.Rank()))
	if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
		return "", err
	}
	if st, err := os.Lstat(d); err != nil || !st.IsDir() || !ownedByMe(st) {
		return "", fmt.Errorf("%s exists and is not a directory of ours", d)
	}
	return d, nil
}

// plainWrite times every rank (with writes) writing its bytes to the file
// "plain" of its plain directory, the way an application writes its own
// checkpoint: the first write of a run creates the file, later ones
// replace it (O_TRUNC frees the previous one's pages, as the eviction of
// the previous checkpoint does for SCR with SCR_CACHE_SIZE=1).
func (r *rank) plainWrite(ctx context.Context, what string, i int, writes bool) error {
	return r.timed(ctx, what, i, func() error {
		if !writes {
			return nil
		}
		return r.write(filepath.Join(r.plain, "plain"))
	})
}

func (r *rank) init(ctx context.Context) (*scr.Handle, error) {
	return scr.Init(ctx, scr.Options{Comm: r.c})
}

func (r *rank) fileName() string { return "bench/rank_" + strconv.Itoa(r.c.Rank()) }

func (r *rank) checkpoint(ctx context.Context, h *scr.Handle) error {
	if err := h.StartOutput(ctx, "", scr.Checkpoint); err != nil {
		return err
	}
	p, err := h.Route(r.fileName())
	if err != nil {
		return err
	}
	werr := r.write(p)
	if err := h.Complete(ctx, werr == nil); err != nil {
		return err
	}
	return werr
}

func (r *rank) ckptRun(ctx context.Context) error {
	var h *scr.Handle
	if err := r.timed(ctx, SecInit, 0, func() (err error) { h, err = r.init(ctx); return err }); err != nil {
		return err
	}
	for i := 1; i <= r.o.times; i++ {
		if err := r.plainWrite(ctx, SecPlain, i, true); err != nil {
			return err
		}
		if err := r.timed(ctx, SecCkpt, i, func() error { return r.checkpoint(ctx, h) }); err != nil {
			return err
		}
	}
	return h.Finalize(ctx)
}

func (r *rank) prepareRun(ctx context.Context) error {
	h, err := r.init(ctx)
	if err != nil {
		return err
	}
	if err := r.checkpoint(ctx, h); err != nil {
		return err
	}
	return h.Finalize(ctx)
}

func (r *rank) rebuildRun(ctx context.Context) error {
	lost := r.c.Host(r.c.Rank()) == r.o.lose
	if lost {
		// The node's cache and control directories of this job vanish,
		// as when a spare replaces a dead node.
		l := cache.NewLayout(os.LookupEnv)
		if err := errors.Join(os.RemoveAll(l.CacheDir), os.RemoveAll(l.CntlDir)); err != nil {
			return err
		}
	}
	if err := r.plainWrite(ctx, SecNode, 1, lost); err != nil {
		return err
	}
	var h *scr.Handle
	if err := r.timed(ctx, SecRebuild, 1, func() (err error) { h, err = r.init(ctx); return err }); err != nil {
		return err
	}
	name, ok, err := h.HaveRestart(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("no checkpoint to restart from after the rebuild")
	}
	if _, err := h.StartRestart(ctx); err != nil {
		return err
	}
	p, err := h.Route(r.fileName())
	if err == nil {
		err = r.verify(p)
	}
	if cerr := h.CompleteRestart(ctx, err == nil); cerr != nil {
		return fmt.Errorf("restart from %s does not verify: %w", name, errors.Join(err, cerr))
	}
	return h.Finalize(ctx)
}

// resetPeakRSS restarts the process's peak resident set (VmHWM) from its
// current size (Linux: /proc/self/clear_refs, "5").
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process's peak resident set in kB (VmHWM), 0 if unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

type rusage struct{ cpu, minflt, nvcsw int64 }

// usage is what this process used so far: user and system time in ns,
// minor page faults, voluntary context switches.
func usage() rusage {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return rusage{}
	}
	return rusage{ru.Utime.Nano() + ru.Stime.Nano(), ru.Minflt, ru.Nvcsw}
}

// ownedByMe says whether a file belongs to this process's user.
func ownedByMe(st os.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	return ok && int(s.Uid) == os.Getuid()
}

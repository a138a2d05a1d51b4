package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
)

// Options are test_api's settings (SCR's examples/test_api.c).
type Options struct {
	Size         int64         // bytes of pattern data per rank (plus rank and header)
	Times        int           // timed writes after the priming write
	Seconds      time.Duration // sleep between writes
	Path         string        // subdirectory under the prefix
	Flush        int           // every Nth write is also OUTPUT (flushed)
	Output       int           // every Nth write is pure OUTPUT
	Current      string        // SCR Current(name) after Init
	NoSCR        bool          // plain POSIX I/O to the prefix
	NoSCRRestart bool          // do not restart through SCR
	NoFsync      bool
	Reduce       int                         // iterations of the compute kernel after each write
	Kernel       int                         // 0 CPU, 1 memcpy 1 GiB, 2 allreduce, 3 allreduce with times
	ConfigAPI    bool                        // set SCR's test configuration through Options.Config
	NoConfFile   bool                        // as if SCR_CONF_FILE were unset (--conf-file=no)
	SharedFile   bool                        // one file for all ranks, each its part at its offset
	GlobalStore  string                      // add STORE=<dir> GROUP=WORLD
	Env          func(string) (string, bool) // nil: os.LookupEnv
}

// configAPI is what SCR's test_api sets with SCR_Config for --config-api.
var configAPI = []string{
	"STORE=/dev/shm GROUP=NODE COUNT=1",
	"SCR_COPY_TYPE=FILE",
	"CKPT=0 INTERVAL=1 GROUP=NODE STORE=/dev/shm TYPE=XOR SET_SIZE=16",
	"SCR_DEBUG=1",
}

// layout is where rank r's data lies in its checkpoint file: its own file
// (offset 0), or with --shared-file its part of rank_shared.ckpt: the
// parts of ranks 0..r-1 before it (rank i's part is size+i+7 bytes), the
// whole file as long as every part.
type layout struct {
	name   string // file name inside the dataset directory
	offset int64  // where rank r's header starts
	total  int64  // the file's size
}

func fileLayout(o Options, r, ranks int) layout {
	if !o.SharedFile {
		return layout{name: "rank_" + strconv.Itoa(r) + ".ckpt", total: headerLen + o.Size + int64(r)}
	}
	part := func(n int64) int64 { return n*(headerLen+o.Size) + n*(n-1)/2 } // parts of ranks 0..n-1
	return layout{name: "rank_shared.ckpt", offset: part(int64(r)), total: part(int64(ranks))}
}

// ErrRestartCheck: a checkpoint was offered but no rank could verify one.
var ErrRestartCheck = errors.New("restart check failed")

// ErrUsage: bad command line.
var ErrUsage = errors.New("usage error")

const headerLen = 7

// fileData is rank r's checkpoint content for a timestep: a 7-byte header
// (six digits and NUL) and size+r bytes whose value is (r+i) mod 256.
func fileData(r int, size int64, step int) []byte {
	b := make([]byte, headerLen+size+int64(r))
	copy(b, fmt.Sprintf("%06d", step%1000000))
	for i := range b[headerLen:] {
		b[headerLen+i] = byte(r + i)
	}
	return b
}

// check verifies rank r's part of a checkpoint file (at l.offset, the file
// being l.total bytes) and returns its timestep.
func check(path string, r int, size int64, l layout) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("%d: Could not open file %s: %w", r, path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("%d: Could not open file %s: %w", r, path, err)
	}
	if st.Size() != l.total {
		return 0, fmt.Errorf("%d: Filesize of %s not correct. Expected %d, got %d", r, path, l.total, st.Size())
	}
	b := make([]byte, headerLen+size+int64(r))
	if _, err := f.ReadAt(b, l.offset); err != nil {
		return 0, fmt.Errorf("%d: Could not read checkpoint from %s: %w", r, path, err)
	}
	step, err := strconv.Atoi(string(bytes.TrimRight(b[:headerLen], "\x00")))
	if err != nil {
		return 0, fmt.Errorf("%d: Could not read checkpoint from %s: bad header %q", r, path, b[:headerLen])
	}
	for i, v := range b[headerLen:] {
		if v != byte(r+i) {
			return 0, fmt.Errorf("%d: Invalid value in buffer of %s at byte %d: got %d, want %d", r, path, headerLen+i, v, byte(r+i))
		}
	}
	return step, nil
}

// writeFile writes data at l.offset of path. Its own file is created
// (truncated); a shared file is created and sized by rank 0 (create) before
// the others open it, as SCR's test_api does.
func writeFile(path string, data []byte, fsync bool, l layout, create bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	flags := os.O_WRONLY
	if create {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	if create && l.total > int64(len(data)) {
		err = f.Truncate(l.total)
	}
	if err == nil {
		_, err = f.WriteAt(data, l.offset)
	}
	if err == nil && fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Run is one rank of test_api over the communicator c. Rank 0 prints the
// progress lines to out; per-rank failures are returned.
func Run(ctx context.Context, c comm.Comm, o Options, out io.Writer) error {
	rank := c.Rank()
	say := func(format string, a ...any) {
		if rank == 0 {
			fmt.Fprintf(out, format+"\n", a...)
		}
	}
	env := o.Env
	if env == nil {
		env = os.LookupEnv
	}
	prefixDir, _ := env("SCR_PREFIX")
	if prefixDir == "" {
		prefixDir, _ = os.Getwd()
	}
	lay := fileLayout(o, rank, c.Size())
	rel := func(name string) string {
		return filepath.Join(o.Path, name, lay.name)
	}

	var h *scr.Handle
	if !o.NoSCR {
		start := time.Now()
		var err error
		var api []string
		if o.ConfigAPI {
			api = append(api, configAPI...)
		}
		if o.GlobalStore != "" {
			// A cache every rank shares must be a store with WORLD access.
			api = append(api, "STORE="+o.GlobalStore+" GROUP=WORLD")
		}
		initEnv := env
		if o.NoConfFile {
			initEnv = func(k string) (string, bool) {
				if k == "SCR_CONF_FILE" {
					return "", false
				}
				return env(k)
			}
		}
		h, err = scr.Init(ctx, scr.Options{Comm: c, Env: initEnv, Config: api})
		if err != nil {
			return fmt.Errorf("Failed initializing SCR: %w", err)
		}
		if err := minMaxAvg(ctx, c, "Init (secs)", time.Since(start).Seconds(), false, say); err != nil {
			return err
		}
		if o.Current != "" && !o.NoSCRRestart {
			if err := h.Current(ctx, o.Current); err != nil {
				return fmt.Errorf("%d: failed calling SCR_Current(%s): %w", rank, o.Current, err)
			}
		}
	}

	// Restart.
	step := 0
	switch {
	case h != nil && !o.NoSCRRestart:
		offered := false
		var last error
		for {
			name, ok, err := h.HaveRestart(ctx)
			if err != nil {
				return fmt.Errorf("%d: failed calling SCR_Have_restart: %w", rank, err)
			}
			if !ok {
				break
			}
			offered = true
			say("Restarting from checkpoint named %s", name)
			if _, err := h.StartRestart(ctx); err != nil {
				return fmt.Errorf("%d: failed calling SCR_Start_restart: %w", rank, err)
			}
			got, rerr := -1, error(nil)
			p, err := h.Route(rel(name))
			if err != nil {
				rerr = fmt.Errorf("%d: Could not read checkpoint %s: %w", rank, name, err)
			} else {
				got, rerr = check(p, rank, o.Size, lay)
			}
			if err := h.CompleteRestart(ctx, rerr == nil); err == nil {
				step = got
				last = nil
				break
			} else if rerr != nil {
				last = rerr
			} else {
				last = err
			}
		}
		if offered && last != nil {
			say("At least one rank (perhaps all) did not find its checkpoint")
			return fmt.Errorf("%w: %v", ErrRestartCheck, last)
		}
	case o.NoSCRRestart && o.Current != "":
		got, err := check(filepath.Join(prefixDir, rel(o.Current)), rank, o.Size, lay)
		v, aerr := c.Allreduce(ctx, comm.OpAnd, []int64{b2i(err == nil)})
		if aerr != nil {
			return aerr
		}
		if v[0] == 0 {
			say("At least one rank (perhaps all) did not find its checkpoint")
			if err == nil {
				err = errors.New("another rank failed")
			}
			return fmt.Errorf("%w: %v", ErrRestartCheck, err)
		}
		step = got
	}
	v, err := c.Allreduce(ctx, comm.OpMin, []int64{int64(step), -int64(step)})
	if err != nil {
		return err
	}
	if v[0] != -v[1] {
		return fmt.Errorf("Timesteps don't agree: %d..%d: %w", v[0], -v[1], ErrRestartCheck)
	}

	// Writes: one priming write, then Times timed ones.
	var ioSecs float64
	var ioBytes int64
	for i := 0; i <= o.Times; i++ {
		step++
		name := "ckpt." + strconv.Itoa(step)
		flags := scr.Checkpoint
		if o.Output > 0 && step%o.Output == 0 {
			name, flags = "output."+strconv.Itoa(step), scr.Output
		}
		if o.Flush > 0 && step%o.Flush == 0 {
			flags |= scr.Output
		}
		data := fileData(rank, o.Size, step)
		start := time.Now()
		if err := write(ctx, c, h, name, flags, rel(name), prefixDir, data, !o.NoFsync, lay); errors.Is(err, scr.ErrFlush) {
			// The checkpoint is complete in cache; only its copy to the
			// prefix failed (tried again at Finalize).
			say("Warning: %v", err)
		} else if err != nil {
			return fmt.Errorf("%d: %w", rank, err)
		}
		secs := time.Since(start).Seconds()
		total, err := c.Allreduce(ctx, comm.OpSum, []int64{int64(len(data))})
		if err != nil {
			return err
		}
		if i > 0 {
			ioSecs += secs
			ioBytes += int64(len(data))
		}
		maxSecs, err := maxFloat(ctx, c, secs)
		if err != nil {
			return err
		}
		say("Completed checkpoint %d: %.6f secs, %d bytes, %.0f bytes/sec", step, maxSecs, total[0], float64(total[0])/math.Max(maxSecs, 1e-9))
		if h != nil {
			exit, reason, err := h.ShouldExit(ctx)
			if err != nil {
				return fmt.Errorf("%d: failed calling SCR_Should_exit: %w", rank, err)
			}
			if exit {
				say("Halting after checkpoint %d: %s", step, reason)
				break
			}
		}
		if h != nil {
			// As SCR's docs advise after every checkpoint: stop when a
			// halt condition holds (scr_halt, time limit, checkpoints left).
			exit, reason, err := h.ShouldExit(ctx)
			if err != nil {
				return fmt.Errorf("%d: failed calling SCR_Should_exit: %w", rank, err)
			}
			if exit {
				say("Halting: %s", reason)
				break
			}
		}
		if o.Seconds > 0 && i < o.Times {
			say("Sleeping for %v...", o.Seconds)
			t := time.NewTimer(o.Seconds)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if o.Reduce > 0 {
			// SCR's test_api numbers the kernel with the next timestep.
			if err := kernel(ctx, c, o.Kernel, step+1, o.Reduce, say); err != nil {
				return err
			}
		}
	}
	if o.Times > 0 {
		bw := float64(ioBytes) / math.Max(ioSecs, 1e-9) / (1 << 20)
		if err := minMaxAvg(ctx, c, "FileIO (MB/s)", bw, true, say); err != nil {
			return err
		}
	}
	if h != nil {
		if err := h.Finalize(ctx); err != nil {
			return fmt.Errorf("%d: failed calling SCR_Finalize: %w", rank, err)
		}
	}
	return nil
}

func write(ctx context.Context, c comm.Comm, h *scr.Handle, name string, flags scr.Flags, rel, prefixDir string, data []byte, fsync bool, l layout) error {
	// put writes the data; a shared file is first created and sized by
	// rank 0, and the others open it once that is done.
	put := func(p string, werr error) error {
		shared := l.name == "rank_shared.ckpt"
		if shared && c.Rank() == 0 && werr == nil {
			werr = writeFile(p, nil, false, l, true)
		}
		if shared {
			v, err := c.Allreduce(ctx, comm.OpMin, []int64{b2i(werr == nil)})
			if err != nil {
				return err
			}
			if v[0] == 0 && werr == nil {
				werr = fmt.Errorf("the shared file %s could not be created or routed on another rank", p)
			}
		}
		if werr != nil {
			return werr
		}
		return writeFile(p, data, fsync, l, !shared)
	}
	if h == nil {
		return put(filepath.Join(prefixDir, rel), nil)
	}
	if err := h.StartOutput(ctx, name, flags); err != nil {
		return fmt.Errorf("failed calling SCR_Start_output: %w", err)
	}
	p, err := h.Route(rel)
	werr := put(p, err)
	if err := h.Complete(ctx, werr == nil); err != nil {
		return fmt.Errorf("failed calling SCR_Complete_output: %w", err)
	}
	return werr
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// floats travel through the int64 Allreduce as their IEEE bits: for
// non-negative values the bit order is the numeric order.
func maxFloat(ctx context.Context, c comm.Comm, x float64) (float64, error) {
	v, err := c.Allreduce(ctx, comm.OpMax, []int64{int64(math.Float64bits(math.Max(x, 0)))})
	if err != nil {
		return 0, err
	}
	return math.Float64frombits(uint64(v[0])), nil
}

func minMaxAvg(ctx context.Context, c comm.Comm, what string, x float64, agg bool, say func(string, ...any)) error {
	x = math.Max(x, 0)
	bits := int64(math.Float64bits(x))
	mn, err := c.Allreduce(ctx, comm.OpMin, []int64{bits})
	if err != nil {
		return err
	}
	mx, err := c.Allreduce(ctx, comm.OpMax, []int64{bits})
	if err != nil {
		return err
	}
	// Sum in micro-units to stay in integers.
	sum, err := c.Allreduce(ctx, comm.OpSum, []int64{int64(x * 1e6)})
	if err != nil {
		return err
	}
	avg := float64(sum[0]) / 1e6 / float64(c.Size())
	line := fmt.Sprintf("%s: Min %.6f Max %.6f Avg %.6f", what, math.Float64frombits(uint64(mn[0])), math.Float64frombits(uint64(mx[0])), avg)
	if agg {
		line += fmt.Sprintf(" Agg %.6f", avg*float64(c.Size()))
	}
	say("%s", line)
	return nil
}

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
	Env          func(string) (string, bool) // nil: os.LookupEnv
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

// check verifies a checkpoint file of rank r and returns its timestep.
func check(path string, r int, size int64) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%d: Could not open file %s: %w", r, path, err)
	}
	if want := headerLen + size + int64(r); int64(len(b)) != want {
		return 0, fmt.Errorf("%d: Filesize of %s not correct. Expected %d, got %d", r, path, want, len(b))
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

func writeFile(path string, data []byte, fsync bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
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
	rel := func(name string) string {
		return filepath.Join(o.Path, name, "rank_"+strconv.Itoa(rank)+".ckpt")
	}

	var h *scr.Handle
	if !o.NoSCR {
		start := time.Now()
		var err error
		h, err = scr.Init(ctx, scr.Options{Comm: c, Env: env})
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
				got, rerr = check(p, rank, o.Size)
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
		got, err := check(filepath.Join(prefixDir, rel(o.Current)), rank, o.Size)
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
		if err := write(ctx, h, name, flags, rel(name), prefixDir, data, !o.NoFsync); errors.Is(err, scr.ErrFlush) {
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

func write(ctx context.Context, h *scr.Handle, name string, flags scr.Flags, rel, prefixDir string, data []byte, fsync bool) error {
	if h == nil {
		return writeFile(filepath.Join(prefixDir, rel), data, fsync)
	}
	if err := h.StartOutput(ctx, name, flags); err != nil {
		return fmt.Errorf("failed calling SCR_Start_output: %w", err)
	}
	p, err := h.Route(rel)
	werr := err
	if err == nil {
		werr = writeFile(p, data, fsync)
	}
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

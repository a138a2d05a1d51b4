package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
)

// InProcessOptions of one benchmark run with the ranks as goroutines of
// this process over comm.NewLocal (scr_bench --inprocess).
type InProcessOptions struct {
	Dir   string // scratch directory in tmpfs; one subdirectory per node
	Nodes int    // simulated nodes, one rank each
	Size  int64  // bytes per rank
	Reps  int    // repetitions; the median is reported
	Fsync bool   // fsync every written file (plain and SCR alike)

}

// InProcessResult holds median times and the ratios to the plain write.
type InProcessResult struct {
	Nodes        int     `json:"nodes"`
	BytesPerRank int64   `json:"bytes_per_rank"`
	Reps         int     `json:"reps"`
	PlainSecs    float64 `json:"plain_write_secs"`  // every rank writes its bytes
	SingleSecs   float64 `json:"single_ckpt_secs"`  // StartOutput..Complete, SINGLE
	XORSecs      float64 `json:"xor_ckpt_secs"`     // StartOutput..Complete, XOR
	NodeSecs     float64 `json:"plain_node_secs"`   // one rank writes one node's bytes
	RebuildSecs  float64 `json:"rebuild_init_secs"` // Init that rebuilds one lost node
	SingleRatio  float64 `json:"single_ratio"`      // target <= 1.2
	XORRatio     float64 `json:"xor_ratio"`         // target <= 3
	RebuildRatio float64 `json:"rebuild_ratio"`     // target <= 4

	// Steady state: the timed write replaces one written just before
	// (plain: O_TRUNC of the old file; SCR: eviction of the old dataset
	// with SCR_CACHE_SIZE=1). Reported, no target.
	PlainSteadySecs   float64 `json:"plain_overwrite_secs"`
	SingleSteadySecs  float64 `json:"single_replace_secs"`
	XORSteadySecs     float64 `json:"xor_replace_secs"`
	SingleSteadyRatio float64 `json:"single_replace_ratio"`
	XORSteadyRatio    float64 `json:"xor_replace_ratio"`
}

func pattern(size int64, r int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + r)
	}
	return b
}

func writeFile(path string, data []byte, fsync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
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

// bench is one simulated job.
type bench struct {
	o     InProcessOptions
	hosts []string
	data  [][]byte
}

func (b *bench) nodeDir(host string) string { return filepath.Join(b.o.Dir, host) }

func (b *bench) env(host string, scheme string) func(string) (string, bool) {
	m := map[string]string{
		"SCR_PREFIX": filepath.Join(b.o.Dir, "prefix"), "SCR_CACHE_BASE": b.nodeDir(host),
		"SCR_CNTL_BASE": b.nodeDir(host), "SCR_JOB_ID": "bench", "SCR_USER_NAME": "bench",
		"SCR_COPY_TYPE": scheme, "SCR_FLUSH": "0", "SCR_CACHE_SIZE": "1",
	}
	if v := os.Getenv("SCR_MPI_BUF_SIZE"); v != "" {
		m["SCR_MPI_BUF_SIZE"] = v // piece size of the encode, for tuning runs
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// ranks runs fn on every rank concurrently over a fresh comm.NewLocal and
// returns the wall time from the common start to the last rank's end.
func (b *bench) ranks(ctx context.Context, fn func(ctx context.Context, c comm.Comm) error) error {
	comms := comm.NewLocal(b.hosts)
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for r := range comms {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			defer comms[r].Close()
			errs[r] = fn(ctx, comms[r])
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			return fmt.Errorf("rank %d: %w", r, err)
		}
	}
	return nil
}

// epoch is the origin of the ranks' time stamps (monotonic: one process,
// one clock).
var epoch = time.Now()

// timed measures a section that every rank starts after a barrier: from
// the first rank's start to the last rank's end, from time stamps each rank
// takes itself. (Timing to the end of a closing barrier on one rank would
// also count that rank waiting for a CPU while ranks that already left the
// barrier do their next, untimed work: 4 ranks share 2 cores.)
func timed(ctx context.Context, c comm.Comm, section func() error) (float64, error) {
	if err := c.Barrier(ctx); err != nil {
		return 0, err
	}
	start := time.Since(epoch)
	if err := section(); err != nil {
		return 0, err
	}
	end := time.Since(epoch)
	first, err := c.Allreduce(ctx, comm.OpMin, []int64{int64(start)})
	if err != nil {
		return 0, err
	}
	last, err := c.Allreduce(ctx, comm.OpMax, []int64{int64(end)})
	if err != nil {
		return 0, err
	}
	return time.Duration(last[0] - first[0]).Seconds(), nil
}

// plain times every rank writing its bytes; steady overwrites a file
// written just before (as an application replacing its last checkpoint).
func (b *bench) plain(ctx context.Context, steady bool) (float64, error) {
	var secs float64
	err := b.ranks(ctx, func(ctx context.Context, c comm.Comm) error {
		dir := filepath.Join(b.nodeDir(b.hosts[c.Rank()]), "plain")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		p := filepath.Join(dir, "rank_"+strconv.Itoa(c.Rank()))
		defer os.Remove(p)
		if steady {
			if err := writeFile(p, b.data[c.Rank()], b.o.Fsync); err != nil {
				return err
			}
		}
		s, err := timed(ctx, c, func() error { return writeFile(p, b.data[c.Rank()], b.o.Fsync) })
		if c.Rank() == 0 {
			secs = s
		}
		return err
	})
	return secs, err
}

// ckpt times one checkpoint per rank (StartOutput .. Complete); steady
// writes one first, so the timed one evicts it (SCR_CACHE_SIZE=1); keep
// leaves the job's cache in place (for the rebuild).
func (b *bench) ckpt(ctx context.Context, scheme string, keep, steady bool) (float64, error) {
	var secs float64
	err := b.ranks(ctx, func(ctx context.Context, c comm.Comm) error {
		host := b.hosts[c.Rank()]
		h, err := scr.Init(ctx, scr.Options{Comm: c, Node: host, Env: b.env(host, scheme)})
		if err != nil {
			return err
		}
		one := func() error {
			if err := h.StartOutput(ctx, "", scr.Checkpoint); err != nil {
				return err
			}
			p, err := h.Route("bench/rank_" + strconv.Itoa(c.Rank()))
			if err != nil {
				return err
			}
			werr := writeFile(p, b.data[c.Rank()], b.o.Fsync)
			if err := h.Complete(ctx, werr == nil); err != nil {
				return err
			}
			return werr
		}
		if steady {
			if err := one(); err != nil {
				return err
			}
		}
		s, err := timed(ctx, c, one)
		if c.Rank() == 0 {
			secs = s
		}
		if err != nil {
			return err
		}
		return h.Finalize(ctx)
	})
	if !keep {
		b.clean()
	}
	return secs, err
}

func (b *bench) clean() {
	for _, host := range b.hosts {
		os.RemoveAll(b.nodeDir(host))
	}
	os.RemoveAll(filepath.Join(b.o.Dir, "prefix"))
}

// rebuild checkpoints with XOR, wipes the last node, and times the Init
// that rebuilds it (ranks verify their data afterwards).
func (b *bench) rebuild(ctx context.Context) (float64, error) {
	if _, err := b.ckpt(ctx, "XOR", true, false); err != nil {
		return 0, err
	}
	os.RemoveAll(b.nodeDir(b.hosts[len(b.hosts)-1]))
	var secs float64
	err := b.ranks(ctx, func(ctx context.Context, c comm.Comm) error {
		host := b.hosts[c.Rank()]
		var h *scr.Handle
		s, err := timed(ctx, c, func() error {
			var err error
			h, err = scr.Init(ctx, scr.Options{Comm: c, Node: host, Env: b.env(host, "XOR")})
			return err
		})
		if err != nil {
			return err
		}
		if c.Rank() == 0 {
			secs = s
		}
		name, ok, err := h.HaveRestart(ctx)
		if err != nil || !ok {
			return fmt.Errorf("no restart after rebuild (%s): %v", name, err)
		}
		if _, err := h.StartRestart(ctx); err != nil {
			return err
		}
		p, err := h.Route("bench/rank_" + strconv.Itoa(c.Rank()))
		valid := err == nil
		if valid {
			got, rerr := os.ReadFile(p)
			valid = rerr == nil && string(got) == string(b.data[c.Rank()])
		}
		if err := h.CompleteRestart(ctx, valid); err != nil {
			return fmt.Errorf("rebuilt data does not verify: %w", err)
		}
		return h.Finalize(ctx)
	})
	b.clean()
	return secs, err
}

// nodeWrite times one rank writing one node's bytes.
func (b *bench) nodeWrite() (float64, error) {
	dir := filepath.Join(b.nodeDir("single"), "plain")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	defer os.RemoveAll(b.nodeDir("single"))
	p := filepath.Join(dir, "rank")
	start := time.Now()
	err := writeFile(p, b.data[0], b.o.Fsync)
	return time.Since(start).Seconds(), err
}

// RunInProcess measures every figure Reps times and reports medians and
// ratios.
func RunInProcess(ctx context.Context, o InProcessOptions) (InProcessResult, error) {
	if o.Nodes < 2 {
		return InProcessResult{}, fmt.Errorf("--nodes %d: XOR needs at least 2 nodes", o.Nodes)
	}
	if o.Reps < 1 {
		o.Reps = 1
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return InProcessResult{}, err
	}
	b := &bench{o: o}
	for i := 0; i < o.Nodes; i++ {
		b.hosts = append(b.hosts, "node"+strconv.Itoa(i+1))
		b.data = append(b.data, pattern(o.Size, i))
	}
	defer b.clean()
	var plain, single, xor, node, rebuild, plainS, singleS, xorS []float64
	for rep := 0; rep < o.Reps; rep++ {
		// Interleave the measurements so drift hits all of them alike.
		steps := []struct {
			what string
			dst  *[]float64
			fn   func() (float64, error)
		}{
			{"plain write", &plain, func() (float64, error) { return b.plain(ctx, false) }},
			{"SINGLE checkpoint", &single, func() (float64, error) { return b.ckpt(ctx, "SINGLE", false, false) }},
			{"XOR checkpoint", &xor, func() (float64, error) { return b.ckpt(ctx, "XOR", false, false) }},
			{"plain node write", &node, b.nodeWrite},
			{"rebuild", &rebuild, func() (float64, error) { return b.rebuild(ctx) }},
			{"plain overwrite", &plainS, func() (float64, error) { return b.plain(ctx, true) }},
			{"SINGLE checkpoint replacing one", &singleS, func() (float64, error) { return b.ckpt(ctx, "SINGLE", false, true) }},
			{"XOR checkpoint replacing one", &xorS, func() (float64, error) { return b.ckpt(ctx, "XOR", false, true) }},
		}
		for _, st := range steps {
			s, err := st.fn()
			if err != nil {
				return InProcessResult{}, fmt.Errorf("%s: %w", st.what, err)
			}
			*st.dst = append(*st.dst, s)
		}
	}
	r := InProcessResult{Nodes: o.Nodes, BytesPerRank: o.Size, Reps: o.Reps,
		PlainSecs: median(plain), SingleSecs: median(single), XORSecs: median(xor),
		NodeSecs: median(node), RebuildSecs: median(rebuild)}
	r.SingleRatio = r.SingleSecs / r.PlainSecs
	r.XORRatio = r.XORSecs / r.PlainSecs
	r.RebuildRatio = r.RebuildSecs / r.NodeSecs
	r.PlainSteadySecs, r.SingleSteadySecs, r.XORSteadySecs = median(plainS), median(singleS), median(xorS)
	r.SingleSteadyRatio = r.SingleSteadySecs / r.PlainSteadySecs
	r.XORSteadyRatio = r.XORSteadySecs / r.PlainSteadySecs
	return r, nil
}

package main

import (
	"context"
	"time"

	"github.com/scr-go/scr/comm"
)

// kernel runs SCR's test_api compute kernels between writes (--reduce N
// iterations of --kernel K), to see how much a background flush slows the
// application down. Rank 0 prints SCR's lines.
func kernel(ctx context.Context, c comm.Comm, k, step, iters int, say func(string, ...any)) error {
	switch k {
	case 0: // a CPU loop
		start := time.Now()
		in, out := float64(c.Rank()), 0.0
		for i := 0; i < iters; i++ {
			out += in * float64(i)
		}
		sink = out
		secs := time.Since(start).Seconds()
		say("CPU cost %d:  %d iters, %f secs, %f secs/iter", step, iters, secs, secs/float64(iters))
	case 1: // memcpy of 1 GiB
		const size = 1 << 30
		start := time.Now()
		src, dst := make([]byte, size), make([]byte, size)
		for i := 0; i < iters; i++ {
			copy(dst, src)
		}
		secs := time.Since(start).Seconds()
		// SCR's line, with its arguments in SCR's order.
		say("memcpy cost:  %d iters, %d bytes, %d iters, %f secs, %f secs/iter, %f bytes/sec",
			step, size, iters, secs, secs/float64(iters), float64(size)*float64(iters)/secs)
	case 2, 3: // allreduce, with each iteration's time for 3
		times := make([]float64, 0, iters)
		start := time.Now()
		for i := 0; i < iters; i++ {
			t := time.Now()
			if _, err := c.Allreduce(ctx, comm.OpSum, []int64{int64(c.Rank())}); err != nil {
				return err
			}
			times = append(times, time.Since(t).Seconds())
		}
		secs := time.Since(start).Seconds()
		if k == 2 {
			say("Allreduce cost %d:  %d iters, %f secs, %f secs/iter", step, iters, secs, secs/float64(iters))
			break
		}
		say("Allreduce iteration times start (secs):")
		for _, t := range times {
			say("%0.10f", t)
		}
		say("Allreduce iteration times end")
	}
	return nil
}

// sink keeps the CPU loop from being optimised away.
var sink float64

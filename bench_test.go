package scr

import (
	"context"
	"os"
	"strconv"
	"testing"
)

// Benchmarks of a checkpoint on 4 simulated nodes (one rank each) in real
// tmpfs, per scheme, and of the Init that rebuilds one wiped node. Targets
// (scr_bench prints the ratios): SINGLE <= 1.2x and XOR <= 3x a plain write
// of the same bytes; rebuild <= 4x a plain write of one node's bytes.

const benchSize = 64 << 20

func benchJob(b *testing.B, scheme string) *job {
	base, err := os.MkdirTemp("/dev/shm", "scrbench")
	if err != nil {
		b.Skip("no /dev/shm:", err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	j := &job{base: base, prefix: base + "/prefix", env: map[string]string{
		"SCR_JOB_ID": "b", "SCR_USER_NAME": "b", "SCR_COPY_TYPE": scheme, "SCR_FLUSH": "0", "SCR_PREFIX": base + "/prefix",
	}}
	return j
}

func benchCheckpoint(b *testing.B, scheme string) {
	j := benchJob(b, scheme)
	data := make([][]byte, len(four))
	for r := range data {
		data[r] = content(r, 1, benchSize)
	}
	b.SetBytes(int64(len(four)) * benchSize)
	b.ResetTimer()
	errs := j.runB(four, func(ctx context.Context, h *Handle) error {
		for i := 0; i < b.N; i++ {
			if err := h.StartOutput(ctx, "", Checkpoint); err != nil {
				return err
			}
			p, err := h.Route("c" + strconv.Itoa(i) + "/r" + strconv.Itoa(h.Rank()))
			if err != nil {
				return err
			}
			if err := os.WriteFile(p, data[h.Rank()], 0o600); err != nil {
				return err
			}
			if err := h.Complete(ctx, true); err != nil {
				return err
			}
		}
		return h.Finalize(ctx)
	})
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckpointSINGLE(b *testing.B) { benchCheckpoint(b, "SINGLE") }
func BenchmarkCheckpointXOR(b *testing.B)    { benchCheckpoint(b, "XOR") }

func BenchmarkPlainWrite(b *testing.B) {
	j := benchJob(b, "SINGLE")
	data := content(0, 1, benchSize)
	os.MkdirAll(j.base+"/plain", 0o700)
	b.SetBytes(benchSize)
	for i := 0; i < b.N; i++ {
		if err := os.WriteFile(j.base+"/plain/f", data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRebuildOneNodeXOR(b *testing.B) {
	j := benchJob(b, "XOR")
	b.SetBytes(benchSize)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		errs := j.runB(four, func(ctx context.Context, h *Handle) error {
			if err := checkpoint(ctx, h, i+1, benchSize, 0); err != nil {
				return err
			}
			return h.Finalize(ctx)
		})
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		os.RemoveAll(j.nodeBase("n4"))
		b.StartTimer()
		errs = j.runB(four, func(ctx context.Context, h *Handle) error { return h.Finalize(ctx) })
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

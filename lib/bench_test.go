package lib_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/bench"
)

// TestBenchMPI runs `scr_bench --mpi` with each MPI against an
// installation: the C rank program (examples/scr_bench_rank.c) is
// compiled against it and launched as 4 ranks on 4 simulated nodes. Every
// section must be reported, the rebuild must have happened (the library's
// rebuilt event) and verified (the ranks check every byte after the
// restart; scr_bench fails otherwise). Timings are not checked.
func TestBenchMPI(t *testing.T) {
	for i, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			need(t, f)
			prefix := installed(t, f)
			// This tree's scr_bench, in the installation: without
			// --scr-prefix it finds the installation it belongs to (the
			// first flavor checks that; the others name it).
			exe := filepath.Join(prefix, "bin", "scr_bench")
			build := exec.Command("go", "build", "-o", exe, "./cmd/scr_bench")
			build.Dir = root
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build scr_bench: %v\n%s", err, out)
			}
			dir, err := os.MkdirTemp("/dev/shm", "scrbenchmpi")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			args := []string{"--mpi", f.Name, "--runs", "1", "--times", "2", "--size", "4MB",
				"--schemes", "SINGLE,XOR,RS,REBUILD", "--dir", dir, "--json", "-v"}
			if i > 0 {
				args = append(args, "--scr-prefix", prefix)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			start := time.Now()
			out, errs, code := run(t, ctx, work, nil, append([]string{exe}, args...)...)
			if code != 0 && code != 4 { // 4: a ratio missed its target (timing, not a failure)
				t.Fatalf("scr_bench %v: exit %d\n%s%s", args, code, out, errs)
			}
			var r bench.Result
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("--json output: %v\n%s", err, out)
			}
			if r.MPI != f.Name || r.Nodes != 4 || len(r.Schemes) != 4 {
				t.Fatalf("result: %+v\n%s", r, errs)
			}
			for _, s := range r.Schemes {
				want := 2
				if s.Scheme == bench.Rebuild {
					want = 1
				}
				if s.Count != want || len(s.Sections) != want || len(s.PeakRSSKB) != 4 || slices.Contains(s.PeakRSSKB, 0) {
					t.Errorf("%s: want %d sections and 4 ranks' peak RSS: %+v", s.Scheme, want, s)
				}
				for _, sec := range s.Sections {
					if sec.Secs <= 0 || sec.Plain <= 0 || sec.CPU <= 0 {
						t.Errorf("%s: section %+v", s.Scheme, sec)
					}
				}
				var phases []string
				for _, p := range s.Worst1.Phases {
					phases = append(phases, p.Name)
				}
				if s.Scheme == bench.Rebuild && !slices.Contains(phases, "restore (rebuilt event)") {
					t.Errorf("REBUILD: no rebuilt event in the timeline: %v", phases)
				}
				if s.Scheme != bench.Rebuild && len(phases) != 5 {
					t.Errorf("%s: phases of the worst checkpoint: %v", s.Scheme, phases)
				}
			}
			for _, n := range r.Notes {
				t.Logf("note: %s", n)
			}
			t.Logf("scr_bench --mpi %s: %v (4 ranks x 4 MB, 2 checkpoints per scheme)", f.Name, time.Since(start).Round(100*time.Millisecond))
		})
	}
}

package lib_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
)

// TestSpeedMPI measures the C/MPI path with real processes: the C
// test_api as 4 ranks on 4 simulated nodes (each its own cache in
// /dev/shm), against the same program writing the same bytes plainly
// (--noscr, fsync, to /dev/shm), in the same run. It reports, per scheme,
// the worst and the median checkpoint (the first of each run included) as
// a ratio to the plain write, and the rebuild of one lost node. Targets
// (issue 9): SINGLE <= 1.2x, XOR <= 3x, rebuild <= 4x. It reports and does
// not assert (timings on a shared machine are noisy): SCR_BENCH=1 runs it.
func TestSpeedMPI(t *testing.T) {
	if os.Getenv("SCR_BENCH") != "1" {
		t.Skip("benchmark: set SCR_BENCH=1 (and SCR_E2E=1) to measure the C/MPI path")
	}
	size := os.Getenv("SCR_BENCH_SIZE")
	if size == "" {
		size = "64MB"
	}
	times := 4
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			need(t, f)
			prefixDir := installed(t, f)
			dir := filepath.Join(work, f.Name, "speed")
			os.MkdirAll(dir, 0o755)
			exe := filepath.Join(dir, "test_api")
			must(t, dir, nil, append([]string{f.CC, "-O2", "-o", exe, filepath.Join(examplesDir(prefixDir), "test_api.c")}, pkgConfig(t, prefixDir, "scr")...)...)
			shm, err := os.MkdirTemp("/dev/shm", "scrbench")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(shm)
			nodes := []string{"n1", "n2", "n3", "n4"}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
			defer cancel()
			launch := func(env []string, args ...string) string {
				cmd := f.simNodes(shm, nodes, append([]string{exe}, args...)...)
				pfx := filepath.Join(shm, "prefix")
				os.MkdirAll(pfx, 0o755)
				out, errs, code := run(t, ctx, pfx, append(append([]string{"SCR_PREFIX=" + pfx, "SCR_FLUSH=0", "SCR_JOB_ID=bench"}, f.Env...), env...), cmd...)
				if code != 0 {
					t.Fatalf("%v: exit %d\n%s%s", env, code, out, errs)
				}
				return out
			}
			secs := func(out string) []float64 {
				var v []float64
				for _, m := range regexp.MustCompile(`Completed checkpoint \d+:\s+([0-9.]+) secs`).FindAllStringSubmatch(out, -1) {
					x, _ := strconv.ParseFloat(m[1], 64)
					v = append(v, x)
				}
				return v
			}
			stats := func(v []float64) (worst, median float64) {
				s := slices.Clone(v)
				slices.Sort(s)
				return s[len(s)-1], s[len(s)/2]
			}
			clear := func() { os.RemoveAll(shm); os.MkdirAll(shm, 0o755) }

			clear()
			plain := secs(launch(nil, "--noscr", "--size", size, "--times", strconv.Itoa(times)))
			_, plainMed := stats(plain)
			var lines []string
			for _, scheme := range []struct{ name, typ, extra string }{
				{"SINGLE", "SINGLE", ""}, {"XOR", "XOR", ""}, {"RS (2 failures/set)", "RS", "SCR_SET_FAILURES=2"},
			} {
				clear()
				env := []string{"SCR_COPY_TYPE=" + scheme.typ, "SCR_SET_SIZE=4"}
				if scheme.extra != "" {
					env = append(env, scheme.extra)
				}
				v := secs(launch(env, "--size", size, "--times", strconv.Itoa(times)))
				worst, med := stats(v)
				lines = append(lines, fmt.Sprintf("%-20s worst %.3f s = %.2fx, median %.3f s = %.2fx (checkpoints %v)", scheme.name, worst, worst/plainMed, med, med/plainMed, v))
				if scheme.typ == "XOR" {
					// Rebuild: n4's cache is gone; a run restarts from XOR.
					os.RemoveAll(filepath.Join(shm, "n4"))
					launch(env, "--size", size, "--times", "0")
					evs, err := prefix.ReadTimeline(filepath.Join(shm, "prefix"))
					if err != nil {
						t.Fatal(err)
					}
					rb := math.NaN()
					for _, e := range evs {
						if e.Event == "rebuilt" {
							rb, _ = e.Fields["seconds"].(float64)
						}
					}
					lines = append(lines, fmt.Sprintf("%-20s %.3f s = %.2fx", "rebuild of 1 node", rb, rb/plainMed))
				}
			}
			worst, _ := stats(plain)
			t.Logf("%s, 4 ranks x %s on 4 simulated nodes, /dev/shm; plain parallel write + fsync: median %.3f s, worst %.3f s (%v)\n%s",
				f.Name, size, plainMed, worst, plain, strings.Join(lines, "\n"))
		})
	}
}

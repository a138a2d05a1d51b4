package lib_test

// End-to-end tests of the C, Fortran and Python interface. They build and
// install scr-go with each MPI of Debian (make install MPICC=...), build
// SCR applications against the installation the way users do (pkg-config,
// CMake, mpif90 -lscrf -lscr, the Python module) and run them: on this
// machine under mpiexec, and on the virtual cluster under srun --mpi=pmi2
// (MPICH) and mpirun over ssh (Open MPI). They run with SCR_E2E=1, as
// make test sets.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/bench"
)

// flavor is one MPI implementation: how scr_bench launches it
// (bench.MPI: compiler, launcher, environment) and what else the tests
// need of it.
type flavor struct {
	bench.MPI        // name, C compiler, launcher and its arguments and environment on this machine
	cxx, fc          string
	pythonWithMPI4Py bool   // Debian's python3-mpi4py is built on Open MPI
	srunMPI          string // srun --mpi= plugin that starts it
}

var flavors = []flavor{
	mpiFlavor("mpich", flavor{cxx: "mpicxx.mpich", fc: "mpif90.mpich", srunMPI: "pmi2"}),
	mpiFlavor("openmpi", flavor{cxx: "mpicxx.openmpi", fc: "mpif90.openmpi", pythonWithMPI4Py: true, srunMPI: "pmix"}),
}

// mpiFlavor completes f with what bench knows of the MPI of that name.
func mpiFlavor(name string, f flavor) flavor {
	m, err := bench.LookupMPI(name)
	if err != nil {
		panic(err)
	}
	f.MPI = m
	return f
}

var (
	work    string // this test binary's scratch directory
	root, _ = filepath.Abs("..")
)

func TestMain(m *testing.M) {
	var err error
	if work, err = os.MkdirTemp("", "capi"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(work)
	os.Exit(code)
}

// need skips without SCR_E2E=1 and fails when the flavor's tools are
// missing (make deps installs them; CI must not skip silently).
func need(t *testing.T, f flavor) {
	t.Helper()
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("C API test: builds libscr with each MPI and runs MPI programs; set SCR_E2E=1 (make test does)")
	}
	for _, p := range []string{f.CC, f.cxx, f.fc, f.Launcher, "pkg-config", "make"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s not found: run `make deps` (it installs MPICH, Open MPI, gfortran, pkg-config)", p)
		}
	}
}

func bin() string {
	if d := os.Getenv("SCR_BIN"); d != "" {
		return d
	}
	return filepath.Join(root, "bin")
}

var installs sync.Map // flavor name -> *install

type install struct {
	once   sync.Once
	prefix string
	err    error
}

// installed builds and installs scr-go against f's MPI, once per test
// binary, and returns the installation prefix.
func installed(t *testing.T, f flavor) string {
	t.Helper()
	v, _ := installs.LoadOrStore(f.Name, &install{})
	in := v.(*install)
	in.once.Do(func() {
		in.prefix = filepath.Join(work, f.Name, "prefix")
		start := time.Now()
		cmd := exec.Command("make", "-s", "install", "PREFIX="+in.prefix, "MPICC="+f.CC,
			"LIBBUILD="+filepath.Join(work, f.Name, "build"), "BIN="+bin())
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			in.err = fmt.Errorf("make install with %s: %v\n%s", f.CC, err, out)
			return
		}
		t.Logf("make install with %s: %v", f.CC, time.Since(start).Round(time.Second))
	})
	if in.err != nil {
		t.Fatal(in.err)
	}
	return in.prefix
}

// run runs argv in dir with extra environment and returns stdout, stderr
// and the exit status (-1: it did not start).
func run(t *testing.T, ctx context.Context, dir string, env []string, argv ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), errb.String(), code
}

func must(t *testing.T, dir string, env []string, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, errs, code := run(t, ctx, dir, env, argv...); code != 0 {
		t.Fatalf("%s: exit %d\n%s%s", strings.Join(argv, " "), code, out, errs)
	}
}

// twoNodes is the launch of argv as 2 ranks on this machine, as nodes a
// and b with their own cache directories under nodes.
func (f flavor) twoNodes(nodes string, argv ...string) []string {
	return f.simNodes(nodes, []string{"a", "b"}, argv...)
}

// simNodes is the launch of argv as one rank per name on this machine
// (MPMD), each a simulated node of that name with its cache and control
// directories in base/name.
func (f flavor) simNodes(base string, names []string, argv ...string) []string {
	return f.SimNodes(names, func(n string) string { return filepath.Join(base, n) }, argv)
}

func pkgConfig(t *testing.T, prefix string, pkgs ...string) []string {
	t.Helper()
	cmd := exec.Command("pkg-config", append([]string{"--cflags", "--libs"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "PKG_CONFIG_PATH="+filepath.Join(prefix, "lib", "pkgconfig"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pkg-config %v: %v", pkgs, err)
	}
	return strings.Fields(string(out))
}

// The MPI communicator's conformance suite (internal/mpicomm) as a real
// MPI job of 4 ranks, then the silent loss of a rank while the others wait
// in an MPI collective: the heartbeat ring must end them (exit 75).
func TestMPIComm(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			need(t, f)
			exe := filepath.Join(work, f.Name, "mpicomm.test")
			cmd := exec.Command("go", "test", "-c", "-tags", "scrmpi", "-o", exe, "./internal/mpicomm")
			cmd.Dir, cmd.Env = root, append(os.Environ(), "CC="+f.CC)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build the MPI test: %v\n%s", err, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			launch := append(append([]string{f.Launcher}, f.Args...), "-n", "4", exe, "-test.v")
			env := append([]string{"SCRGO_MPI_TEST=1", "SCRGO_MPI_SIZE=4", "SCRGO_MPI_LEVEL=1"}, f.Env...)
			out, errs, code := run(t, ctx, work, env, launch...)
			if code != 0 || strings.Count(out, "PASS\n") != 4 {
				t.Fatalf("conformance over %s: exit %d\n%s%s", f.Name, code, out, errs)
			}
			t.Logf("conformance over %s: %d tests passed on each of 4 ranks", f.Name, strings.Count(out, "--- PASS")/4)
			if strings.Contains(errs, "was not matched") {
				t.Errorf("messages left unreceived at MPI_Finalize (Close must drain them):\n%s", errs)
			}

			launch = append(append([]string{f.Launcher}, f.Args...), "-n", "3", exe)
			env = append([]string{"SCRGO_MPI_TEST=1", "SCRGO_MPI_MODE=loss", "SCRGO_MPI_LEVEL=1", "SCR_COMM_TIMEOUT=2"}, f.Env...)
			_, errs, code = run(t, ctx, work, env, launch...)
			end := time.Now()
			m := regexp.MustCompile(`rank 1 freezes at (\d+)`).FindStringSubmatch(errs)
			// The launcher's code is not the ranks' own: Hydra reports the
			// frozen rank's SIGKILL (9) when it ends it after the others.
			// Each survivor logs its own exit, but once the first exits
			// with an error the launcher may kill the other before it
			// logs: every exit logged must be 75, and there must be one.
			exits := regexp.MustCompile(`rank ([02]) exits (\d+)`).FindAllStringSubmatch(errs, -1)
			bad := len(exits) == 0
			for _, e := range exits {
				bad = bad || e[2] != "75"
			}
			if code == 0 || m == nil || !strings.Contains(errs, "scr: lost rank 1") || bad {
				t.Fatalf("a frozen rank under %s: launcher exit %d; want the survivors (ranks 0 and 2) to exit 75, at least one logging it, with a lost-rank line\n%s", f.Name, code, errs)
			}
			ms, _ := strconv.ParseInt(m[1], 10, 64)
			took := end.Sub(time.UnixMilli(ms))
			t.Logf("%s: ranks blocked in MPI_Ibarrier ended %v after their peer froze (SCR_COMM_TIMEOUT=2)", f.Name, took.Round(10*time.Millisecond))
			if took > 30*time.Second {
				t.Errorf("the survivors took %v to end", took)
			}
		})
	}
}

// SCR's documented behaviour of the C API, checked by a C program, and
// the one-line errors on stderr.
func TestSemantics(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			need(t, f)
			prefix := installed(t, f)
			dir := filepath.Join(work, f.Name, "semantics")
			pfx := filepath.Join(dir, "prefix")
			os.MkdirAll(pfx, 0o755)
			exe := filepath.Join(dir, "semantics")
			must(t, dir, nil, append([]string{f.CC, "-o", exe, filepath.Join(root, "lib", "testdata", "semantics.c")}, pkgConfig(t, prefix, "scr")...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			env := append([]string{"SCR_PREFIX=" + pfx, "SCR_JOB_ID=1", "SCR_FLUSH=0", "SCR_COPY_TYPE=XOR"}, f.Env...)
			out, errs, code := run(t, ctx, pfx, env, f.twoNodes(filepath.Join(dir, "nodes"), exe)...)
			if code != 0 || !strings.Contains(out, "semantics ok") {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			for _, want := range []string{`SCR_Start_output: SCR_Init has not been called`, `SCR_Config("SCR_FLUSH=1"): parameters are set before SCR_Init`,
				`SCR_Complete_output: scr: dataset ck.1 discarded: invalid on ranks [1]`, `SCR_Have_restart: SCR_Init has not been called`} {
				if n := strings.Count(errs, want); n != 2 {
					t.Errorf("stderr has %d lines %q, want one per rank:\n%s", n, want, errs)
				}
			}
			if !regexp.MustCompile(`(?m)^SCR_Drop: .*no-such-dataset`).MatchString(errs) {
				t.Errorf("no error line for SCR_Drop of an unknown dataset:\n%s", errs)
			}
			for _, l := range strings.Split(strings.TrimSpace(errs), "\n") {
				if strings.HasPrefix(l, "SCR_") && !regexp.MustCompile(`^SCR_\w+(\(".*"\))?: `).MatchString(l) {
					t.Errorf("error line does not name the call first: %q", l)
				}
			}
		})
	}
}

// SCR_ENABLE=0: every call passes through and the application writes its
// files itself. SCR_HALT_EXIT=1: the library ends the job with status 0
// once the halt condition holds, after a checkpoint and at the next Init.
func TestDisabledAndHaltExit(t *testing.T) {
	for _, f := range flavors {
		t.Run(f.Name, func(t *testing.T) {
			need(t, f)
			prefix := installed(t, f)
			dir := filepath.Join(work, f.Name, "halt")
			os.MkdirAll(dir, 0o755)
			exe := filepath.Join(dir, "test_api")
			must(t, dir, nil, append([]string{f.CC, "-o", exe, filepath.Join(prefix, "share", "scr", "examples", "test_api.c")}, pkgConfig(t, prefix, "scr")...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			off := filepath.Join(dir, "disabled")
			os.MkdirAll(off, 0o755)
			env := append([]string{"SCR_PREFIX=" + off, "SCR_ENABLE=0"}, f.Env...)
			out, errs, code := run(t, ctx, off, env, f.twoNodes(filepath.Join(dir, "nodes"), exe, "--size", "4k", "--times", "1")...)
			if code != 0 || strings.Count(out, "Completed checkpoint") != 2 || strings.Contains(errs, "SCR_") {
				t.Fatalf("SCR_ENABLE=0: exit %d\n%s%s", code, out, errs)
			}
			if _, err := os.Stat(filepath.Join(off, "ckpt.2", "rank_1.ckpt")); err != nil {
				t.Errorf("SCR_ENABLE=0: the application's file is not where it wrote it: %v", err)
			}
			if _, err := os.Stat(filepath.Join(off, ".scr")); !os.IsNotExist(err) {
				t.Errorf("SCR_ENABLE=0 left SCR metadata in the prefix: %v", err)
			}

			on := filepath.Join(dir, "halt")
			os.MkdirAll(on, 0o755)
			env = append([]string{"SCR_PREFIX=" + on, "SCR_JOB_ID=7", "SCR_HALT_EXIT=1", "SCR_FLUSH=0"}, f.Env...)
			must(t, on, env, filepath.Join(bin(), "scr_halt"), "--checkpoints", "1")
			out, errs, code = run(t, ctx, on, env, f.twoNodes(filepath.Join(dir, "nodes"), exe, "--size", "4k", "--times", "3")...)
			if code != 0 || !strings.Contains(out, "Init:") || strings.Contains(out, "Completed checkpoint") || !strings.Contains(errs, "SCR_Complete_output: job exiting") {
				t.Fatalf("SCR_HALT_EXIT=1 after one checkpoint: exit %d\n%s%s", code, out, errs)
			}
			out, errs, code = run(t, ctx, on, env, f.twoNodes(filepath.Join(dir, "nodes"), exe, "--size", "4k", "--times", "3")...)
			if code != 0 || strings.Contains(out, "Init:") || !strings.Contains(errs, "SCR_Init: job exiting") {
				t.Fatalf("SCR_HALT_EXIT=1 at Init: exit %d\n%s%s", code, out, errs)
			}
		})
	}
}

// find_package(SCR) works from an installation: the examples' CMake project
// builds test_api against scr::scr and scr::scr-static and the C++ example,
// and the static test_api runs.
func TestCMakePackage(t *testing.T) {
	f := flavors[0]
	need(t, f)
	if _, err := exec.LookPath("cmake"); err != nil {
		t.Fatal("cmake not found: run `make deps`")
	}
	prefix := installed(t, f)
	dir := filepath.Join(work, f.Name, "cmake")
	must(t, work, nil, "cmake", "-S", examplesDir(prefix), "-B", dir, "-DCMAKE_PREFIX_PATH="+prefix,
		"-DMPI_C_COMPILER="+f.CC, "-DMPI_CXX_COMPILER="+f.cxx)
	must(t, work, nil, "cmake", "--build", dir)
	pfx := filepath.Join(dir, "run")
	os.MkdirAll(pfx, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := append([]string{"SCR_PREFIX=" + pfx, "SCR_JOB_ID=cm", "SCR_FLUSH=0"}, f.Env...)
	out, errs, code := run(t, ctx, pfx, env, f.twoNodes(filepath.Join(dir, "nodes"), filepath.Join(dir, "test_api_static"), "--size", "64k", "--times", "1")...)
	if code != 0 || strings.Count(out, "Completed checkpoint") != 2 {
		t.Fatalf("test_api built by CMake against libscr.a: exit %d\n%s%s", code, out, errs)
	}
}

package bench

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// MPI is an MPI implementation that runs the C rank program
// (examples/scr_bench_rank.c over libscr) as one rank per simulated node
// of this machine: an MPMD launch whose parts each give their rank the
// node's name and storage, as lib's end-to-end tests launch SCR
// applications.
type MPI struct {
	Name     string   // mpich, openmpi
	CC       string   // its C compiler wrapper (libscr must be built with it)
	Launcher string   // its mpiexec
	Args     []string // the launcher's first arguments
	Env      []string // the launcher's environment ("K=V")
	// Lib is the soname prefix of its library ("libmpich.so."), by which
	// an installation's libscr.so tells which MPI it was built with.
	Lib string
	// perRank is the MPMD part that starts one rank with env.
	perRank func(env []string) []string
}

// MPIs are the MPI implementations of Debian (make deps installs both).
var MPIs = []MPI{
	{Name: "mpich", CC: "mpicc.mpich", Launcher: "mpiexec.mpich", Lib: "libmpich.so.",
		perRank: func(env []string) []string {
			part := []string{"-n", "1"}
			for _, kv := range env {
				k, v, _ := strings.Cut(kv, "=")
				part = append(part, "-env", k, v)
			}
			return part
		}},
	// --oversubscribe: more ranks than cores; the variables allow root
	// (CI runs as root) and turn off the single-copy mechanism (CMA),
	// which containers often forbid.
	{Name: "openmpi", CC: "mpicc.openmpi", Launcher: "mpirun.openmpi", Args: []string{"--oversubscribe"}, Lib: "libmpi.so.",
		Env: []string{"OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMPI_MCA_btl_vader_single_copy_mechanism=none"},
		perRank: func(env []string) []string {
			part := []string{"-np", "1"}
			for _, kv := range env {
				part = append(part, "-x", kv)
			}
			return part
		}},
}

// LookupMPI returns the MPI of that name.
func LookupMPI(name string) (MPI, error) {
	var names []string
	for _, m := range MPIs {
		if m.Name == name {
			return m, nil
		}
		names = append(names, m.Name)
	}
	return MPI{}, fmt.Errorf("no MPI %q: want one of %s", name, strings.Join(names, ", "))
}

// MPMD is the launch of argv as one rank per entry of envs, rank i with
// the environment variables envs[i] ("K=V") besides the launcher's own.
func (m MPI) MPMD(envs [][]string, argv []string) []string {
	cmd := append([]string{m.Launcher}, m.Args...)
	for i, env := range envs {
		if i > 0 {
			cmd = append(cmd, ":")
		}
		cmd = append(append(cmd, m.perRank(env)...), argv...)
	}
	return cmd
}

// SimNodes is the launch of argv as one rank per node of nodes, each a
// simulated node with SCR_NODE_NAME set to its name and its cache and
// control base (SCR_CACHE_BASE, SCR_CNTL_BASE) at storage(name).
func (m MPI) SimNodes(nodes []string, storage func(node string) string, argv []string) []string {
	envs := make([][]string, len(nodes))
	for i, n := range nodes {
		envs[i] = []string{"SCR_NODE_NAME=" + n, "SCR_CACHE_BASE=" + storage(n), "SCR_CNTL_BASE=" + storage(n)}
	}
	return m.MPMD(envs, argv)
}

// RankSource is the C rank program's file, in the source tree and (under
// share/scr/examples) in an installation.
const RankSource = "scr_bench_rank.c"

// scrBuild is where the C rank program is compiled from.
type scrBuild struct {
	src, include, lib string // its source, scr.h's directory, libscr.so's directory
}

// installation is the scr-go installation at prefix (make install).
func installation(prefix string) (scrBuild, error) {
	b := scrBuild{src: filepath.Join(prefix, "share", "scr", "examples", RankSource),
		include: filepath.Join(prefix, "include"), lib: filepath.Join(prefix, "lib")}
	for _, p := range []string{b.src, filepath.Join(b.include, "scr.h"), filepath.Join(b.lib, "libscr.so")} {
		if _, err := os.Stat(p); err != nil {
			return b, fmt.Errorf("%s is not an scr-go installation with the C library: %w", prefix, err)
		}
	}
	return b, nil
}

// sourceTree says whether dir is scr-go's source tree.
func sourceTree(dir string) bool {
	for _, p := range []string{"go.mod", "lib/libscr/main.go", "lib/include/scr.h", "examples/" + RankSource} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	return true
}

// RankProgram compiles the C rank program for m into dir and returns its
// path. scrPrefix is an scr-go installation built with m's compiler (make
// install PREFIX=DIR MPICC=CC); "" means the installation this executable
// belongs to (DIR/bin/scr_bench), else the source tree it was built in
// (bin/scr_bench of a checkout), whose libscr is then built with m's
// compiler into dir (go build, ~20 s).
func (m MPI) RankProgram(ctx context.Context, scrPrefix, dir string, log io.Writer) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var b scrBuild
	var err error
	if scrPrefix != "" {
		if b, err = installation(scrPrefix); err != nil {
			return "", err
		}
	} else {
		exe, err := os.Executable()
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe)
		}
		if err != nil {
			return "", fmt.Errorf("where is this executable? %w (pass --scr-prefix)", err)
		}
		home := filepath.Dir(filepath.Dir(exe))
		if b, err = installation(home); err != nil {
			if !sourceTree(home) {
				return "", fmt.Errorf("%s belongs to no scr-go installation with the C library and to no source tree: "+
					"install one with `make install PREFIX=DIR MPICC=%s` and pass --scr-prefix DIR", exe, m.CC)
			}
			if b, err = m.buildLib(ctx, home, dir, log); err != nil {
				return "", err
			}
		}
	}
	if err := m.checkLib(filepath.Join(b.lib, "libscr.so")); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "scr_bench_rank")
	argv := []string{m.CC, "-O2", "-o", out, b.src, "-I" + b.include, "-L" + b.lib, "-Wl,-rpath," + b.lib, "-lscr"}
	if err := command(ctx, "", nil, argv...); err != nil {
		return "", fmt.Errorf("compile the C rank program: %w", err)
	}
	return out, nil
}

// buildLib builds libscr.so of the source tree with m's compiler into dir.
func (m MPI) buildLib(ctx context.Context, tree, dir string, log io.Writer) (scrBuild, error) {
	b := scrBuild{src: filepath.Join(tree, "examples", RankSource), include: filepath.Join(tree, "lib", "include"), lib: filepath.Join(dir, "lib")}
	fmt.Fprintf(log, "building libscr of %s with %s into %s (pass --scr-prefix to use an installation)\n", tree, m.CC, b.lib)
	argv := []string{"go", "build", "-buildvcs=false", "-tags", "scrmpi", "-buildmode=c-shared",
		"-ldflags=-extldflags=-Wl,-soname,libscr.so", "-o", filepath.Join(b.lib, "libscr.so"), "./lib/libscr"}
	if err := command(ctx, tree, []string{"CC=" + m.CC}, argv...); err != nil {
		return b, fmt.Errorf("build libscr with %s from the source tree %s: %w (or pass --scr-prefix of an installation)", m.CC, tree, err)
	}
	return b, nil
}

// checkLib makes sure libscr was built with m: a library built with
// another MPI links, and then fails at run time.
func (m MPI) checkLib(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	for _, l := range libs {
		if strings.HasPrefix(l, m.Lib) {
			return nil
		}
	}
	return fmt.Errorf("%s was not built with %s (it links %s, not %s*): install scr-go for it with "+
		"`make install PREFIX=DIR MPICC=%s` and pass --scr-prefix DIR", path, m.Name, strings.Join(libs, " "), m.Lib, m.CC)
}

// command runs argv in dir with extra environment; its error carries the
// command's output.
func command(ctx context.Context, dir string, env []string, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%s: %w", argv[0], err)
		}
		return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out.String())
	}
	return nil
}

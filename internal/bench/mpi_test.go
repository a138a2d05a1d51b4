package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSimNodes(t *testing.T) {
	storage := func(n string) string { return "/r/" + n }
	for _, c := range []struct {
		mpi  string
		want string
	}{
		{"mpich", "mpiexec.mpich -n 1 -env SCR_NODE_NAME a -env SCR_CACHE_BASE /r/a -env SCR_CNTL_BASE /r/a prog --x 1" +
			" : -n 1 -env SCR_NODE_NAME b -env SCR_CACHE_BASE /r/b -env SCR_CNTL_BASE /r/b prog --x 1"},
		{"openmpi", "mpirun.openmpi --oversubscribe -np 1 -x SCR_NODE_NAME=a -x SCR_CACHE_BASE=/r/a -x SCR_CNTL_BASE=/r/a prog --x 1" +
			" : -np 1 -x SCR_NODE_NAME=b -x SCR_CACHE_BASE=/r/b -x SCR_CNTL_BASE=/r/b prog --x 1"},
	} {
		m, err := LookupMPI(c.mpi)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(m.SimNodes([]string{"a", "b"}, storage, []string{"prog", "--x", "1"}), " "); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.mpi, got, c.want)
		}
	}
	if _, err := LookupMPI("lam"); err == nil {
		t.Error("LookupMPI(lam): no error")
	}
}

// A libscr built with another MPI is refused before anything is compiled.
func TestCheckLib(t *testing.T) {
	m, _ := LookupMPI("mpich")
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	sh, _ = filepath.EvalSymlinks(sh)
	if err := m.checkLib(sh); err == nil || !strings.Contains(err.Error(), "not built with mpich") {
		t.Fatalf("checkLib(%s) = %v", sh, err)
	}
	if _, err := installation(t.TempDir()); err == nil {
		t.Fatal("an empty directory taken for an installation")
	}
}

// fakeLauncher is a launcher script that writes the reports of n ranks
// (when reports is set) and then runs what follows.
func fakeLauncher(out string, n int, reports bool, then string) []string {
	var s strings.Builder
	if reports {
		for r := range n {
			s.WriteString("echo '{\"rank\":" + strconv.Itoa(r) + "}' > " + filepath.Join(out, "rank."+strconv.Itoa(r)+".json") + "\n")
		}
	}
	s.WriteString(then)
	return []string{"sh", "-c", s.String()}
}

// A launcher that runs on after every report is written (MPICH's hang in
// MPI_Finalize) is killed with what it started in a session of its own,
// and the launch counts, with a note.
func TestLaunchHangAfterReports(t *testing.T) {
	out := t.TempDir()
	pidFile := filepath.Join(out, "rank.pid")
	// The "rank" hangs in a session of its own, as MPI launchers start
	// ranks, and is running before the reports are written, as a rank
	// writes its own; the launcher waits for it.
	script := "setsid sh -c 'echo $$ > " + pidFile + ".new && mv " + pidFile + ".new " + pidFile + "; exec tail -f /dev/null' &\n" +
		"while [ ! -s " + pidFile + " ]; do sleep 0.01; done\n"
	reports := fakeLauncher(out, 3, true, "wait\n")
	l := launchRun{argv: []string{"sh", "-c", script + reports[2]}, env: os.Environ(), out: out, n: 3, timeout: time.Minute, grace: 200 * time.Millisecond}
	start := time.Now()
	_, note, err := l.run(context.Background())
	if err != nil || !strings.Contains(note, "every rank had written its report") {
		t.Fatalf("run: note %q, err %v", note, err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("took %v", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// A SIGKILL takes effect asynchronously: allow the killed rank a
	// moment to go (a loaded machine may take a while).
	for deadline := time.Now().Add(10 * time.Second); alive(pid); {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the hung rank %d was left running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

func TestLaunchEnds(t *testing.T) {
	out := t.TempDir()
	l := launchRun{argv: fakeLauncher(out, 2, true, "echo done\n"), env: os.Environ(), out: out, n: 2, timeout: time.Minute, grace: time.Minute}
	got, note, err := l.run(context.Background())
	if err != nil || note != "" || string(got) != "done\n" {
		t.Fatalf("run: output %q, note %q, err %v", got, note, err)
	}
	// Without every report, a launcher that does not end is killed at
	// the time limit, and the launch fails.
	l = launchRun{argv: fakeLauncher(out+"/none", 2, false, "exec tail -f /dev/null\n"), env: os.Environ(), out: out + "/none", n: 2,
		timeout: 300 * time.Millisecond, grace: time.Millisecond}
	if _, _, err := l.run(context.Background()); !errors.Is(err, errNoEnd) {
		t.Fatalf("run of a launcher that hangs: %v", err)
	}
	// A failing launcher fails the launch.
	l = launchRun{argv: []string{"sh", "-c", "exit 3"}, env: os.Environ(), out: out, n: 2, timeout: time.Minute, grace: time.Minute}
	var ee *exec.ExitError
	if _, _, err := l.run(context.Background()); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("run of a failing launcher: %v", err)
	}
}

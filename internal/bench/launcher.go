package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// errNoEnd is a launch that did not end within its time limit.
var errNoEnd = errors.New("the launch did not end")

// launchRun is one run of a launcher whose n ranks each write
// out/rank.<r>.json when done.
type launchRun struct {
	argv, env []string
	out       string
	n         int
	timeout   time.Duration // the whole launch (0: none)
	grace     time.Duration // how long the launcher may run on once every report is written
}

// run starts the launcher in a process group of its own and waits for it
// to end. When every rank has written its report and the launcher still
// runs grace later (MPICH 4.0.2 can hang in MPI_Finalize with the Go
// runtime in the process, doc/capi.md), it kills the launcher and every
// process under it (MPI launchers start their ranks in process groups and
// sessions of their own) and reports that in note; the reports stand. At
// timeout, or when ctx ends, it kills them all and fails. It returns the
// launcher's output.
func (l launchRun) run(ctx context.Context) (output []byte, note string, err error) {
	if l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	// The watch stops with wctx, when run returns.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	reported := watchReports(wctx, l.out, l.n)

	cmd := exec.Command(l.argv[0], l.argv[1:]...)
	cmd.Env = l.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A rank left behind may hold the output pipe open.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }() // ends when the launcher does (killed at the latest)
	var lingering <-chan time.Time
	for {
		select {
		case err := <-ended:
			return out.Bytes(), note, err
		case <-reported:
			reported = nil
			t := time.NewTimer(l.grace)
			defer t.Stop()
			lingering = t.C
		case <-lingering:
			lingering = nil
			killTree(cmd.Process.Pid)
			<-ended
			note = fmt.Sprintf("%s was still running %v after every rank had written its report "+
				"(a hang in MPI_Finalize?); killed it and kept the reports", filepath.Base(l.argv[0]), l.grace)
			return out.Bytes(), note, nil
		case <-ctx.Done():
			killTree(cmd.Process.Pid)
			<-ended
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w within %v: killed it", errNoEnd, l.timeout)
			}
			return out.Bytes(), "", err
		}
	}
}

// reportsDone says whether out holds the reports of ranks 0..n-1.
func reportsDone(out string, n int) bool {
	for r := range n {
		if _, err := os.Stat(filepath.Join(out, "rank."+strconv.Itoa(r)+".json")); err != nil {
			return false
		}
	}
	return true
}

// killTree SIGKILLs the process group of pid and every process under pid.
func killTree(pid int) {
	for _, p := range descendants(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
}

// descendants lists the processes under pid (children first found first),
// from /proc; a process that ends meanwhile is left out.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentOf(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

// parentOf reads the parent of pid from /proc/<pid>/stat (after the
// command name, which may hold blanks and parentheses).
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

package comm_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/locallaunch"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/testio"
)

// TestMain doubles as the rank program of the process tests (the os/exec
// helper-process pattern): with SCR_COMM_HELPER set, it bootstraps with
// comm.FromEnv and the default fatal policy, reports ready, and runs
// collectives until a peer is lost.
func TestMain(m *testing.M) {
	if os.Getenv("SCR_COMM_HELPER") != "" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

func helper() int {
	ctx := context.Background()
	c, err := comm.FromEnv(ctx, comm.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		return 3
	}
	dir := os.Getenv("SCR_COMM_HELPER_DIR")
	switch os.Getenv("SCR_COMM_HELPER") {
	case "bench":
		return benchHelper(ctx, c, dir)
	case "closerace":
		return closeRaceHelper(ctx, c)
	}
	if err := c.Barrier(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		return 4
	}
	os.WriteFile(filepath.Join(dir, "ready."+strconv.Itoa(c.Rank())), nil, 0o644)
	for {
		if err := c.Barrier(ctx); err != nil {
			// The fatal policy exits before we get here in most cases.
			time.Sleep(time.Hour)
		}
		if _, err := c.Allreduce(ctx, comm.OpSum, []int64{1}); err != nil {
			time.Sleep(time.Hour)
		}
		time.Sleep(20 * time.Millisecond) // the job's "compute"
	}
}

// lossScenario launches n helper ranks, waits until all are up, hurts the
// victim with sig and checks every other rank ends with ExitPeerLost. It
// returns the slowest survivor's exit latency.
func lossScenario(t *testing.T, n, perNode int, victims []int, sig syscall.Signal, timeout time.Duration) time.Duration {
	isVictim := func(r int) bool { return slices.Contains(victims, r) }
	dir, pfx := t.TempDir(), t.TempDir()
	env := append(os.Environ(),
		"SCR_COMM_HELPER=loop", "SCR_COMM_HELPER_DIR="+dir, "SCR_PREFIX="+pfx,
		fmt.Sprintf("SCR_COMM_TIMEOUT=%g", timeout.Seconds()), "SCR_RUN_ID=1")
	var (
		mu       sync.Mutex
		pids     = make([]int, n)
		survived = 0
		allDone  = make(chan struct{})
	)
	stderr := &testio.LockedBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	resc := make(chan *locallaunch.Result, 1)
	go func() {
		res, err := locallaunch.Run(ctx, locallaunch.Options{
			N: n, PerNode: perNode, CacheRoot: t.TempDir(), Argv: []string{os.Args[0]}, Env: env,
			Stdout: stderr, Stderr: stderr, KeepGoing: true,
			Started: func(r, pid int) { mu.Lock(); pids[r] = pid; mu.Unlock() },
			Exited: func(r int, _ locallaunch.RankResult) {
				mu.Lock()
				defer mu.Unlock()
				if !isVictim(r) {
					if survived++; survived == n-len(victims) {
						close(allDone)
					}
				}
			},
		})
		if err != nil {
			t.Errorf("launch: %v", err)
		}
		resc <- res
	}()
	// Wait until every rank is up.
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) == n {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d ranks came up; output:\n%s", len(ents), n, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	mu.Lock()
	var vpids []int
	for _, v := range victims {
		vpids = append(vpids, pids[v])
	}
	mu.Unlock()
	t0 := time.Now()
	for _, pid := range vpids {
		syscall.Kill(pid, sig)
	}
	select {
	case <-allDone:
	case <-ctx.Done():
		t.Fatalf("survivors did not all exit; output:\n%s", stderr)
	}
	for _, pid := range vpids {
		syscall.Kill(pid, syscall.SIGKILL) // a stopped victim stays until killed
	}
	res := <-resc
	if res == nil {
		t.FailNow()
	}
	var slowest time.Duration
	for r, rr := range res.Ranks {
		if isVictim(r) {
			continue
		}
		if rr.Code != comm.ExitPeerLost {
			t.Errorf("rank %d on %s exited with %d, want %d", r, rr.Node, rr.Code, comm.ExitPeerLost)
		}
		slowest = max(slowest, rr.End.Sub(t0))
	}
	out := stderr.String()
	// Every survivor prints one line; a victim killed a moment after the
	// others may have printed one too.
	if got := strings.Count(out, "scr: lost rank "); got < n-len(victims) || got > n {
		t.Errorf("%d 'scr: lost rank' lines, want %d to %d:\n%s", got, n-len(victims), n, out)
	}
	evs, err := prefix.ReadTimeline(pfx)
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, ev := range evs {
		if ev.Event != "peer_lost" || ev.Source != "comm" || ev.Run != 1 {
			t.Errorf("unexpected timeline event %+v", ev)
		}
		if lr, _ := ev.Fields["lost_rank"].(float64); isVictim(int(lr)) {
			seen = true
		}
	}
	if !seen {
		t.Errorf("no peer_lost event for ranks %v in the timeline: %+v", victims, evs)
	}
	t.Logf("%d ranks, %v of ranks %v: slowest survivor exited %v later (timeout %v); %d timeline events",
		n, sig, victims, slowest.Round(time.Millisecond), timeout, len(evs))
	return slowest
}

func TestProcessKill9(t *testing.T) {
	lossScenario(t, 6, 2, []int{3}, syscall.SIGKILL, 3*time.Second)
}

func TestProcessSilentLoss(t *testing.T) {
	// SIGSTOP: the process keeps its sockets open, sends nothing, never
	// closes: what a vanished node looks like. A short timeout keeps the
	// test quick; the E2E variant uses the default.
	lossScenario(t, 6, 2, []int{2}, syscall.SIGSTOP, time.Second)
}

func TestProcessLossE2E(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("64 processes and the default 3 s bound: set SCR_E2E=1")
	}
	const bound = 3 * time.Second
	node5 := []int{32, 33, 34, 35, 36, 37, 38, 39} // every rank of one node
	for _, tc := range []struct {
		victims []int
		sig     syscall.Signal
	}{
		{[]int{37}, syscall.SIGKILL},
		{[]int{37}, syscall.SIGSTOP},
		{node5, syscall.SIGKILL}, // node crash with RSTs
		{node5, syscall.SIGSTOP}, // node vanished silently
	} {
		if d := lossScenario(t, 64, 8, tc.victims, tc.sig, bound); d > bound+500*time.Millisecond {
			t.Errorf("%v of %v: survivors took %v, bound %v", tc.sig, tc.victims, d, bound)
		}
	}
}

// benchHelper times barriers and allreduces between processes; rank 0
// writes "barrier_ns allreduce_ns" per call to dir/result.
func benchHelper(ctx context.Context, c comm.Comm, dir string) int {
	defer c.Close()
	const warm, iters = 50, 300
	run := func(f func() error) (time.Duration, error) {
		for range warm {
			if err := f(); err != nil {
				return 0, err
			}
		}
		start := time.Now()
		for range iters {
			if err := f(); err != nil {
				return 0, err
			}
		}
		return time.Since(start) / iters, nil
	}
	b, err := run(func() error { return c.Barrier(ctx) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a, err := run(func() error { _, err := c.Allreduce(ctx, comm.OpSum, []int64{1, 2, 3, 4}); return err })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if c.Rank() == 0 {
		os.WriteFile(filepath.Join(dir, "result"), fmt.Appendf(nil, "%d %d", b.Nanoseconds(), a.Nanoseconds()), 0o644)
	}
	return 0
}

// TestProcessCollectiveLatency measures barrier and allreduce latency with
// every rank a process (scr_launch's PMI and TCP on loopback).
func TestProcessCollectiveLatency(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("up to 64 processes: set SCR_E2E=1")
	}
	for _, n := range []int{2, 4, 8, 16, 32, 64} {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		res, err := locallaunch.Run(ctx, locallaunch.Options{N: n, PerNode: 4, CacheRoot: t.TempDir(),
			Argv: []string{os.Args[0]}, Env: append(os.Environ(), "SCR_COMM_HELPER=bench", "SCR_COMM_HELPER_DIR="+dir)})
		cancel()
		if err != nil || res.ExitCode() != 0 {
			t.Fatalf("%d ranks: %v exit %v", n, err, res)
		}
		b, err := os.ReadFile(filepath.Join(dir, "result"))
		if err != nil {
			t.Fatal(err)
		}
		var bn, an int64
		fmt.Sscan(string(b), &bn, &an)
		t.Logf("%3d processes: barrier %v, allreduce(4 x int64) %v", n, time.Duration(bn), time.Duration(an))
	}
}

// closeRaceHelper runs one collective and closes at once, as a job's last
// step does: a clean close must fail nobody.
func closeRaceHelper(ctx context.Context, c comm.Comm) int {
	got, err := c.Allreduce(ctx, comm.OpSum, []int64{int64(c.Rank()), 1})
	if err == nil && (got[0] != int64(c.Size()*(c.Size()-1)/2) || got[1] != int64(c.Size())) {
		err = fmt.Errorf("allreduce = %v", got)
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper rank %d: %v\n", c.Rank(), err)
		return 5
	}
	return 0
}

// TestProcessCloseRightAfterCollective: 5 processes bootstrapped over a
// rendezvous directory (no PMI), each doing one Allreduce and Close, many
// times. Any rank failing (a peer's close taken for a failure, or exit 75
// for a clean close taken as a loss) fails the test.
func TestProcessCloseRightAfterCollective(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("launches 5 processes 40 times: set SCR_E2E=1")
	}
	const p, iters = 5, 40
	for it := range iters {
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmds := make([]*exec.Cmd, p)
		outs := make([]*testio.LockedBuffer, p)
		for r := range p {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), "SCR_COMM_HELPER=closerace",
				"OMPI_COMM_WORLD_RANK="+strconv.Itoa(r), "OMPI_COMM_WORLD_SIZE="+strconv.Itoa(p),
				"SCR_RENDEZVOUS_DIR="+dir, "SCR_COMM_ADDR=127.0.0.1", fmt.Sprintf("SCR_NODE_NAME=node%d", r))
			outs[r] = &testio.LockedBuffer{}
			cmd.Stdout, cmd.Stderr = outs[r], outs[r]
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds[r] = cmd
		}
		for r, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("iteration %d: rank %d: %v; output:\n%s", it, r, err, outs[r])
			}
		}
		cancel()
		if t.Failed() {
			return
		}
	}
}

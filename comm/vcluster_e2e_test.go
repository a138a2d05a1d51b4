package comm_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/vcluster"
)

// copyFile copies the test binary where every node of the cluster sees it.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSrunPMI2PowerOff runs the comm helper under real Slurm (srun
// --mpi=pmi2 serves PMI-1 to our client), 2 ranks on each of 3 nodes with
// the node's host name as identity and its /etc/hosts address for TCP, then
// pulls node3's plug (link cut first: no FIN, no RST) and measures how long
// the 4 survivors take to report the loss and exit.
func TestSrunPMI2PowerOff(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, CPUs: 4})
	shared := c.SharedDir()
	bin := filepath.Join(shared, "comm.test")
	copyFile(t, os.Args[0], bin)
	ready, pfx := filepath.Join(shared, "ready"), filepath.Join(shared, "prefix")
	os.MkdirAll(ready, 0o777)
	os.MkdirAll(pfx, 0o777)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := c.CommandDir(ctx, "node1", shared, []string{"srun", "-N3", "-n6", "--ntasks-per-node=2", "--mpi=pmi2",
		"env", "SCR_COMM_HELPER=loop", "SCR_COMM_HELPER_DIR=" + ready, "SCR_PREFIX=" + pfx, "SCR_RUN_ID=1", bin}, nil)
	if cmd.Err != nil {
		t.Fatal(cmd.Err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var (
		mu    sync.Mutex
		lines []string
		times []time.Time
	)
	lostLines := make(chan struct{}, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			times = append(times, time.Now())
			mu.Unlock()
			if strings.Contains(sc.Text(), "scr: lost rank ") {
				lostLines <- struct{}{}
			}
		}
	}()
	for {
		ents, _ := os.ReadDir(ready)
		if len(ents) == 6 {
			break
		}
		select {
		case <-ctx.Done():
			mu.Lock()
			t.Fatalf("only %d of 6 ranks came up under srun; stderr:\n%s", len(ents), strings.Join(lines, "\n"))
		case <-time.After(50 * time.Millisecond):
		}
	}
	at, err := c.PowerOff(ctx, "node3")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		select {
		case <-lostLines:
		case <-ctx.Done():
			mu.Lock()
			t.Fatalf("survivors did not all report the loss; stderr:\n%s", strings.Join(lines, "\n"))
		}
	}
	mu.Lock()
	var slowest time.Duration
	for i, l := range lines {
		if strings.Contains(l, "scr: lost rank ") {
			slowest = max(slowest, times[i].Sub(at))
			if !strings.Contains(l, " on node3: ") {
				t.Errorf("loss line does not name node3: %q", l)
			}
		}
	}
	out := strings.Join(lines, "\n")
	mu.Unlock()
	evs, err := prefix.ReadTimeline(pfx)
	if err != nil {
		t.Fatal(err)
	}
	var ev *prefix.Event
	for i := range evs {
		if evs[i].Event == "peer_lost" {
			ev = &evs[i]
		}
	}
	if ev == nil || ev.Fields["lost_host"] != "node3" {
		t.Fatalf("no peer_lost event for node3 in the timeline: %+v\nstderr:\n%s", evs, out)
	}
	t.Logf("node3 powered off at %s; last survivor reported the loss %v later (bound 3s); event: %v at +%v\n%s",
		at.Format("15:04:05.000"), slowest.Round(time.Millisecond), ev.Fields, ev.Time.Sub(at).Round(time.Millisecond), out)
	if slowest > 3*time.Second+500*time.Millisecond {
		t.Errorf("survivors took %v, bound 3s", slowest)
	}
}

package vcluster_test

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// The Flux mode (skipped, with the reason, without flux-core): one broker
// per node with its own hostname and /dev/shm; power-off cuts the link and
// kills the broker (Flux then reports the node offline, after its 2 s
// tcp_user_timeout with fast timeouts); power-on brings a new broker that
// rejoins the instance; down leaves nothing behind.
func TestFluxPowerCycle(t *testing.T) {
	start := time.Now()
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, RM: vcluster.RMFlux, Timeouts: vcluster.TimeoutsFast})
	t.Logf("bring-up of a 3-broker Flux instance: %v", time.Since(start).Round(time.Millisecond))
	ctx := ctxT(t, 3*time.Minute)
	if !c.IsFlux() || c.RM() != vcluster.RMFlux {
		t.Fatalf("cluster RM %q", c.RM())
	}
	out := mustExec(t, ctx, c, "node1", "flux", "run", "-N3", "hostname")
	hosts := strings.Fields(out)
	sort.Strings(hosts)
	if strings.Join(hosts, ",") != "node1,node2,node3" {
		t.Fatalf("flux run -N3 hostname printed %q", out)
	}
	// Private /dev/shm per node.
	mustExec(t, ctx, c, "node1", "sh", "-c", "echo x > /dev/shm/vcflux-mark")
	if out := mustExec(t, ctx, c, "node2", "sh", "-c", "ls /dev/shm"); strings.Contains(out, "vcflux-mark") {
		t.Fatalf("node2 sees node1's /dev/shm: %q", out)
	}

	at, err := c.PowerOff(ctx, "node3")
	if err != nil {
		t.Fatal(err)
	}
	// The broker died with the node: its local socket answers no more.
	if _, err := c.FluxExec(ctx, "node1", c.FluxURI("node3"), "getattr", "rank"); err == nil {
		t.Errorf("node3's broker still answers after the power-off")
	}
	if _, err := c.Exec(ctx, "node1", []string{"ping", "-c1", "-W1", "node3"}, nil); err == nil {
		t.Errorf("node3 answers ping after the power-off")
	}
	for {
		off, err := c.FluxOffline(ctx)
		if err == nil && slices.Contains(off, "node3") {
			t.Logf("Flux reports node3 offline %.2f s after the power-off", time.Since(at).Seconds())
			break
		}
		if time.Since(at) > 60*time.Second {
			t.Fatalf("Flux does not report node3 offline 60 s after the power-off: %v %v", off, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := mustExec(t, ctx, c, "node1", "flux", "run", "-N2", "--requires=-host:node3", "hostname"); strings.Contains(out, "node3") {
		t.Errorf("a job excluding node3 ran there: %q", out)
	}

	start = time.Now()
	if err := c.PowerOn(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	t.Logf("power-on to the broker rejoined: %v", time.Since(start).Round(time.Millisecond))
	if out := mustExec(t, ctx, c, "node3", "sh", "-c", "ls /dev/shm; hostname"); strings.TrimSpace(out) != "node3" {
		t.Errorf("node3 after power-on: /dev/shm not empty or wrong hostname: %q", out)
	}
	out = mustExec(t, ctx, c, "node1", "flux", "run", "-N3", "hostname")
	if !strings.Contains(out, "node3") {
		t.Errorf("flux run -N3 after power-on printed %q", out)
	}

	dir := c.StateDir()
	if err := c.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "flux")); !os.IsNotExist(err) {
		t.Errorf("state directory left after down: %v", err)
	}
}

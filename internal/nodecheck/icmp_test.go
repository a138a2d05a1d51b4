package nodecheck

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func needICMP(t testing.TB) *icmpSocket {
	s, err := openICMP()
	if err != nil {
		t.Skipf("in-process ping unavailable here: %v", err)
	}
	return s
}

func TestICMPChecksum(t *testing.T) {
	// RFC 1071's example: the sum of these words is 0xddf2, so the checksum is ^0xddf2.
	if got := icmpChecksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Fatalf("checksum %#x", got)
	}
}

// Loopback answers: every 127.0.0.x, and localhost. A name that does not
// resolve fails at once with a reason.
func TestPingAllLoopback(t *testing.T) {
	s := needICMP(t)
	defer s.pc.Close()
	nodes := []string{"127.0.0.1", "127.0.0.2", "localhost", "127.0.0.3", "no-such-node.invalid"}
	var n atomic.Int64
	errs := pingAll(context.Background(), s, nodes, time.Second, 1, func(int) { n.Add(1) }, nil)
	for i, err := range errs[:4] {
		if err != nil {
			t.Errorf("%s: %v", nodes[i], err)
		}
	}
	if errs[4] == nil || !strings.Contains(errs[4].Error(), "cannot resolve no-such-node.invalid") {
		t.Errorf("unresolvable: %v", errs[4])
	}
	if n.Load() != 4 {
		t.Errorf("alive called %d times, want 4", n.Load())
	}
}

// TestICMPInNamespace runs the in-process ping inside a network namespace
// created for the test (SCR_E2E=1, root): loopback answers, and addresses
// behind a veth whose peer is down (packets vanish, like a powered-off
// node) do not.
// It prints the time for 1,000 targets (NODECHECK_ICMP_N) of which 10 are dead.
func TestICMPInNamespace(t *testing.T) {
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("network-namespace test: set SCR_E2E=1 (needs root, unshare and ip)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	total := 1000 // NODECHECK_ICMP_N overrides (the helper reads it too)
	if v, err := strconv.Atoi(os.Getenv("NODECHECK_ICMP_N")); err == nil && v > 10 {
		total = v
	}
	script := `set -e
ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 10.99.0.1/24 dev v0
ip link set v0 up
exec "$0" -test.run='^TestICMPHelper$'`
	cmd := exec.Command("unshare", "-n", "sh", "-c", script, os.Args[0])
	cmd.Env = append(os.Environ(), "NODECHECK_ICMP_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var r struct {
		Down        []string
		Seconds     float64
		Alive       int
		GoneSeconds float64
	}
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "{") {
			line = l
		}
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("in-process ping of %d targets, 10 silent: %.2f s, %d answered, down %v", total, r.Seconds, r.Alive, r.Down)
	if r.Alive != total-10 || len(r.Down) != 10 {
		t.Fatalf("answered %d, down %v\nhelper output:\n%s", r.Alive, r.Down, out)
	}
	for _, d := range r.Down {
		if !strings.HasPrefix(d, "10.99.0.") {
			t.Errorf("%s reported silent", d)
		}
	}
	t.Logf("pingAll returned %.2f s after starting on 10 silent nodes given up on at 0.1 s", r.GoneSeconds)
	if r.GoneSeconds > 0.9 {
		t.Errorf("pingAll waited %.2f s for nodes given up on at 0.1 s (its window is 1 s)", r.GoneSeconds)
	}
}

// TestICMPHelper is the part of TestICMPInNamespace that runs inside the
// namespace.
func TestICMPHelper(t *testing.T) {
	if os.Getenv("NODECHECK_ICMP_HELPER") != "1" {
		t.Skip("helper of TestICMPInNamespace")
	}
	total := 1000
	if v, err := strconv.Atoi(os.Getenv("NODECHECK_ICMP_N")); err == nil && v > 10 {
		total = v
	}
	var nodes []string
	for i := 0; i < total-10; i++ {
		nodes = append(nodes, fmt.Sprintf("127.0.%d.%d", i/250, 1+i%250))
	}
	for i := 0; i < 10; i++ {
		nodes = append(nodes, fmt.Sprintf("10.99.0.%d", 10+i))
	}
	s := needICMP(t)
	start := time.Now()
	rep := Probe(context.Background(), nodes, Options{Checks: []string{CheckPing}})
	d := time.Since(start)
	s.pc.Close()
	var r struct {
		Down        []string
		Seconds     float64
		Alive       int
		GoneSeconds float64
	}
	r.Seconds = d.Seconds()
	// Dead nodes given up on after 100 ms (as when the RM reports them):
	// pingAll must not wait out its windows for them.
	s2 := needICMP(t)
	start = time.Now()
	pingAll(context.Background(), s2, nodes[total-10:], time.Second, 1, func(int) {},
		func(int) bool { return time.Since(start) > 100*time.Millisecond })
	r.GoneSeconds = time.Since(start).Seconds()
	s2.pc.Close()
	for _, n := range nodes {
		if rep[n].Ping.Failed {
			r.Down = append(r.Down, n)
			if len(r.Down) == 1 {
				fmt.Fprintln(os.Stderr, "first failure:", rep[n].Ping.Detail)
			}
		} else if rep[n].Ping.Ran {
			r.Alive++
		}
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// The fallback: one ping(8) per node (NoICMP, or no ICMP socket).
func TestSystemPingLoopback(t *testing.T) {
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("no ping program")
	}
	res := Probe(context.Background(), []string{"127.0.0.1", "no-such-node.invalid"}, Options{Checks: []string{CheckPing}, NoICMP: true, PingRetries: -1})
	if p := res["127.0.0.1"].Ping; !p.Ran || p.Failed {
		t.Errorf("127.0.0.1: %+v", p)
	}
	if p := res["no-such-node.invalid"].Ping; !p.Failed || !strings.Contains(p.Detail, "no-such-node.invalid") {
		t.Errorf("unresolvable: %+v", p)
	}
}

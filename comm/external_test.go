package comm

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// allgatherWorld brings up len(hosts) TCP ranks in this process through
// FromAllgather, with a NewLocal world standing in for the runtime (MPI)
// whose allgather bootstraps them.
func allgatherWorld(t testing.TB, hosts []string, o Options) []Comm {
	t.Helper()
	rt := NewLocal(hosts)
	defer closeAll(rt)
	p := len(hosts)
	comms := make([]Comm, p)
	errs := make([]error, p)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for r := range p {
		wg.Go(func() {
			ro := o
			ro.Node, ro.Addr = hosts[r], "127.0.0.1"
			ro.Getenv = func(string) string { return "" }
			comms[r], errs[r] = FromAllgather(ctx, ro, r, p, rt[r].Allgather)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			closeAll(comms)
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return comms
}

func TestFromAllgather(t *testing.T) {
	suite(t, func(t *testing.T, hosts []string) []Comm {
		return allgatherWorld(t, hosts, Options{Timeout: 10 * time.Second, OnPeerLost: func(*PeerLostError) {}})
	})
}

// The ring built through FromAllgather notices a silent loss and runs the
// policy on the survivors: this is what the MPI backend relies on.
func TestFromAllgatherDetectsLoss(t *testing.T) {
	hosts := hostsN(4, 1)
	var mu sync.Mutex
	lost := map[int]bool{}
	got := make(chan struct{}, len(hosts))
	comms := allgatherWorld(t, hosts, Options{Timeout: 300 * time.Millisecond, OnPeerLost: func(e *PeerLostError) {
		mu.Lock()
		lost[e.Rank] = true
		mu.Unlock()
		got <- struct{}{}
	}})
	// Rank 2 falls silent (a stopped process: heartbeats stop, sockets
	// stay open).
	victim := comms[2].(*group).t.(*tcpTransport)
	close(victim.done)
	defer func() {
		victim.mu.Lock()
		victim.closing = true
		victim.mu.Unlock()
		victim.cfg.ln.Close()
		closeAll([]Comm{comms[0], comms[1], comms[3]})
	}()
	deadline := time.After(10 * time.Second)
	for range 3 {
		select {
		case <-got:
		case <-deadline:
			t.Fatal("the survivors did not all learn of the loss within 10s")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lost) != 1 || !lost[2] {
		t.Fatalf("lost ranks reported: %v, want only 2", lost)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := comms[0].Barrier(ctx); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("barrier after the loss: %v, want ErrPeerLost", err)
	}
}

func TestParsePeers(t *testing.T) {
	secret := strings.Repeat("ab", 32)
	good := [][]byte{[]byte("n0;127.0.0.1:1;" + secret), []byte("n1;127.0.0.1:2")}
	peers, s, err := parsePeers(good, 2)
	if err != nil || len(s) != 32 || peers[1] != [2]string{"n1", "127.0.0.1:2"} {
		t.Fatalf("parsePeers(good) = %v, %x, %v", peers, s, err)
	}
	for name, recs := range map[string][][]byte{
		"count":           {[]byte("n0;127.0.0.1:1;" + secret)},
		"no secret":       {[]byte("n0;127.0.0.1:1"), []byte("n1;127.0.0.1:2")},
		"secret on 1":     {[]byte("n0;127.0.0.1:1;" + secret), []byte("n1;127.0.0.1:2;" + secret)},
		"short secret":    {[]byte("n0;127.0.0.1:1;abcd"), []byte("n1;127.0.0.1:2")},
		"bad address":     {[]byte("n0;127.0.0.1:1;" + secret), []byte("n1;nowhere")},
		"empty node":      {[]byte("n0;127.0.0.1:1;" + secret), []byte(";127.0.0.1:2")},
		"too many fields": {[]byte("n0;127.0.0.1:1;" + secret + ";x"), []byte("n1;127.0.0.1:2")},
	} {
		if _, _, err := parsePeers(recs, 2); err == nil {
			t.Errorf("%s: parsePeers accepted %q", name, recs)
		}
	}
}

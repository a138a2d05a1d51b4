package comm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tcpWorld starts len(hosts) TCP ranks in this process on loopback.
func tcpWorld(t testing.TB, hosts []string, timeout time.Duration, onLost func(*PeerLostError, bool)) []Comm {
	t.Helper()
	p := len(hosts)
	lns := make([]net.Listener, p)
	addrs := make([]string, p)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	lookup := func(ctx context.Context, r int) (string, string, error) { return addrs[r], hosts[r], nil }
	comms := make([]Comm, p)
	errs := make([]error, p)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for r := range p {
		wg.Go(func() {
			g, _, err := startTCP(ctx, tcpConfig{rank: r, size: p, host: hosts[r], secret: secret, ln: lns[r],
				lookup: lookup, timeout: timeout, onLost: onLost})
			comms[r], errs[r] = g, err
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return comms
}

func TestTCP(t *testing.T) {
	suite(t, func(t *testing.T, hosts []string) []Comm { return tcpWorld(t, hosts, 10*time.Second, nil) }) // detection is tested apart; a loaded machine (-race) must not trip it here
}

// A connection that does not know the job's secret is refused.
// A connection that does not know the job's secret is refused by the
// listening rank itself: the dialer's half of the handshake, with a MAC
// over another secret, gets no answer (the listener's own MAC would let a
// client that skips its check in), for a rank's connection and for a
// start-up probe alike. The dialer side refuses a listener with another
// secret too. The world goes on working.
func TestTCPRefusesForeign(t *testing.T) {
	comms := tcpWorld(t, hostsN(2, 1), 3*time.Second, nil)
	defer closeAll(comms)
	tr := comms[0].(*group).t.(*tcpTransport)
	addr := tr.cfg.ln.Addr().String()
	for _, as := range []struct {
		name string
		rank uint32
	}{{"rank 1", 1}, {"probe", probeID}} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		hello := make([]byte, len(handshakeMagic)+16+4)
		if _, err := io.ReadFull(c, hello); err != nil {
			t.Fatalf("%s: no hello: %v", as.name, err)
		}
		nonceS := hello[len(handshakeMagic) : len(handshakeMagic)+16]
		me := binary.LittleEndian.AppendUint32(nil, as.rank)
		nonceC := make([]byte, 16)
		msg := append(append(append([]byte{}, me...), nonceC...), mac([]byte("not the job's secret"), []byte("c"), nonceS, me, u32(0))...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		answer := make([]byte, sha256.Size)
		if n, err := io.ReadFull(c, answer); err == nil || n > 0 {
			t.Fatalf("%s: the listener answered a client with the wrong secret (%d bytes, %v)", as.name, n, err)
		}
		c.Close()
	}
	foreign := &tcpTransport{hosts: make([]string, 2), cfg: tcpConfig{rank: 1, size: 2, secret: []byte("wrong"), timeout: time.Second,
		lookup: func(ctx context.Context, r int) (string, string, error) { return addr, "x", nil }}}
	if _, err := foreign.dial(context.Background(), 0); err == nil {
		t.Fatal("a dial with the wrong secret succeeded")
	}
	// The world still works.
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error { return c.Barrier(ctx) }))
}

// Closing a TCP rank while the peer has a connection to it gives ErrClosed,
// not a lost peer.
func TestTCPCloseIsNotLoss(t *testing.T) {
	var lost []*PeerLostError
	var mu sync.Mutex
	comms := tcpWorld(t, hostsN(3, 1), 300*time.Millisecond, func(e *PeerLostError, _ bool) {
		mu.Lock()
		lost = append(lost, e)
		mu.Unlock()
	})
	defer closeAll(comms)
	// Rank 1 closes at once, before its first heartbeat connected it to
	// its successor (the watcher of rank 1).
	comms[1].Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := comms[2].Recv(ctx, 1, 0)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("recv from closed rank: %v", err)
	}
	// Longer than the detection bound: nobody may call it a loss. (The
	// absence of an event cannot be waited for.)
	time.Sleep(600 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(lost) != 0 {
		t.Fatalf("clean close reported as loss: %v", lost[0])
	}
}

func TestTCPLargeMessage(t *testing.T) {
	comms := tcpWorld(t, hostsN(2, 1), 3*time.Second, nil)
	defer closeAll(comms)
	big := payload(0, 1, 0, 0, 5*chunkSize+123)
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		if c.Rank() == 0 {
			// Two communicators' large messages interleave on one connection.
			sub, err := c.Split(ctx, 0, 0)
			if err != nil {
				return err
			}
			var wg sync.WaitGroup
			var e1 error
			wg.Go(func() { e1 = sub.Send(ctx, 1, 7, big) })
			e2 := c.Send(ctx, 1, 7, big)
			wg.Wait()
			return errors.Join(e1, e2)
		}
		sub, err := c.Split(ctx, 0, 0)
		if err != nil {
			return err
		}
		for _, cc := range []Comm{c, sub} {
			b, err := cc.Recv(ctx, 0, 7)
			if err != nil {
				return err
			}
			if string(b) != string(big) {
				return fmt.Errorf("large message corrupted (%d bytes)", len(b))
			}
		}
		return nil
	}))
}

// Every goroutine of the transport ends with Close.
func TestTCPCloseEndsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	comms := tcpWorld(t, hostsN(8, 2), 3*time.Second, nil)
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		_, err := c.Allgather(ctx, []byte("x"))
		return err
	}))
	var wg sync.WaitGroup
	for _, c := range comms {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left after Close (had %d):\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close unblocks this rank's own waiting calls.
func TestTCPCloseUnblocksRecv(t *testing.T) {
	comms := tcpWorld(t, hostsN(2, 1), 3*time.Second, nil)
	defer closeAll(comms)
	errc := make(chan error, 1)
	go func() {
		_, err := comms[0].Recv(context.Background(), 1, 3)
		errc <- err
	}()
	comms[0].Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("recv after own close: %v, want ErrClosed", err)
	}
}

// A peer that authenticates and then never reads: writes to it block.
func stalledPeer(t *testing.T, secret []byte) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &tcpTransport{hosts: make([]string, 2), cfg: tcpConfig{rank: 1, size: 2, secret: secret, timeout: 3 * time.Second}}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := fake.accept(c); err != nil {
				c.Close()
				continue
			}
			c.(*net.TCPConn).SetReadBuffer(4096)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
}

// Send returns when its context ends even if the write is blocked on a
// peer that stopped reading, and the next Send on that connection does too.
func TestTCPSendHonoursContext(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	addr, stop := stalledPeer(t, secret)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := newTCP(tcpConfig{rank: 0, size: 2, host: "a", secret: secret, ln: ln, timeout: 500 * time.Millisecond,
		lookup: func(ctx context.Context, r int) (string, string, error) { return addr, "b", nil }})
	w := newWorld(tr)
	defer w.Close()
	big := make([]byte, 64<<20)
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := w.Send(ctx, 1, 0, big)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("send %d to a stalled peer: %v, want deadline exceeded", i, err)
		}
		t.Logf("send %d returned %v after its 200ms deadline", i, time.Since(start).Round(time.Millisecond))
	}
}

// An abort frame makes the receiver drop a partly received message; the
// next message of the stream arrives intact.
func TestTCPAbortDropsPartialMessage(t *testing.T) {
	comms := tcpWorld(t, hostsN(2, 1), 3*time.Second, nil)
	defer closeAll(comms)
	tr := comms[0].(*group).t.(*tcpTransport)
	fake := &tcpTransport{hosts: make([]string, 2), cfg: tcpConfig{rank: 1, size: 2, secret: tr.cfg.secret, timeout: 3 * time.Second,
		lookup: func(ctx context.Context, r int) (string, string, error) { return tr.cfg.ln.Addr().String(), "x", nil }}}
	c, err := fake.dial(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	oc := &outConn{c: c, wmu: newWlock()}
	h := header{typ: frameData, comm: 0, tag: 9, total: 10}
	if err := oc.writeFrame(h, []byte("first")); err != nil { // 5 of 10 bytes
		t.Fatal(err)
	}
	if err := oc.writeFrame(header{typ: frameAbort, comm: 0, tag: 9}, nil); err != nil {
		t.Fatal(err)
	}
	h.total, h.final = 6, true
	if err := oc.writeFrame(h, []byte("second")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := comms[0].Recv(ctx, 1, 9)
	if err != nil || string(b) != "second" {
		t.Fatalf("got %q %v, want \"second\"", b, err)
	}
	oc.writeFrame(header{typ: frameBye}, nil)
}

// A rank that sends and closes at once: its goodbye on the receiver's own
// connection to it must not overtake the data still in flight on the other.
func TestTCPDataBeforeGoodbye(t *testing.T) {
	for range 5 {
		comms := tcpWorld(t, hostsN(2, 1), 3*time.Second, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		// Rank 0 has its own connection to rank 1 (as a heartbeat would).
		if err := comms[0].Send(ctx, 1, 1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := comms[1].Recv(ctx, 0, 1); err != nil {
			t.Fatal(err)
		}
		const n = 2000
		go func() {
			for i := range n {
				comms[1].Send(ctx, 0, 2, payload(1, 0, 2, i, 1000))
			}
			comms[1].Close()
		}()
		for i := range n {
			b, err := comms[0].Recv(ctx, 1, 2)
			if err != nil {
				t.Fatalf("message %d of %d: %v", i, n, err)
			}
			if len(b) != 1000 {
				t.Fatalf("message %d: %d bytes", i, len(b))
			}
		}
		cancel()
		closeAll(comms)
	}
}

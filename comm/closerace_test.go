package comm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The close race: every rank runs one collective and closes at once. A rank
// that finished (and closed) must not make a peer still finishing the same
// collective fail, and nobody may be reported lost. Ranks are goroutines
// bootstrapped with FromEnv over a rendezvous directory, as in the report.
func TestTCPCloseRightAfterCollective(t *testing.T) {
	colls := []struct {
		name string
		run  func(ctx context.Context, c Comm) error
	}{
		{"allreduce", func(ctx context.Context, c Comm) error {
			got, err := c.Allreduce(ctx, OpSum, []int64{int64(c.Rank()), 1})
			if err == nil && (got[0] != int64(c.Size()*(c.Size()-1)/2) || got[1] != int64(c.Size())) {
				err = fmt.Errorf("allreduce = %v", got)
			}
			return err
		}},
		{"barrier", func(ctx context.Context, c Comm) error { return c.Barrier(ctx) }},
		{"bcast", func(ctx context.Context, c Comm) error {
			b, err := c.Bcast(ctx, c.Size()-1, []byte("root"))
			if err == nil && string(b) != "root" {
				err = fmt.Errorf("bcast = %q", b)
			}
			return err
		}},
		{"allgather", func(ctx context.Context, c Comm) error {
			all, err := c.Allgather(ctx, []byte{byte(c.Rank())})
			if err == nil && len(all) != c.Size() {
				err = fmt.Errorf("allgather: %d parts", len(all))
			}
			return err
		}},
	}
	for it := range 12 {
		coll := colls[it%len(colls)]
		p := 5 + it%3
		dir := t.TempDir()
		var mu sync.Mutex
		var lost []*PeerLostError
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs := make([]error, p)
		var wg sync.WaitGroup
		for r := range p {
			env := map[string]string{
				"OMPI_COMM_WORLD_RANK": strconv.Itoa(r), "OMPI_COMM_WORLD_SIZE": strconv.Itoa(p),
				"SCR_RENDEZVOUS_DIR": dir, "SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": fmt.Sprintf("n%d", r),
			}
			wg.Go(func() {
				c, err := FromEnv(ctx, Options{Getenv: mapEnv(env), OnPeerLost: func(e *PeerLostError) {
					mu.Lock()
					lost = append(lost, e)
					mu.Unlock()
				}})
				if err != nil {
					errs[r] = err
					return
				}
				err = coll.run(ctx, c)
				if cerr := c.Close(); err == nil {
					err = cerr
				}
				errs[r] = err
			})
		}
		wg.Wait()
		cancel()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("iteration %d (%s, %d ranks), rank %d: %v", it, coll.name, p, r, err)
			}
		}
		mu.Lock()
		if len(lost) > 0 {
			t.Fatalf("iteration %d (%s): clean close reported as loss: %v", it, coll.name, lost[0])
		}
		mu.Unlock()
	}
}

// fakeRank is a hand-driven rank 1 of a 2-rank world whose rank 0 is real:
// the test writes its frames, so it decides which connection a goodbye
// overtakes.
type fakeRank struct {
	tr   *tcpTransport // the real rank 0
	w    *group
	data net.Conn // fake -> rank 0: where its messages go
	back net.Conn // rank 0 -> fake, accepted by the fake
}

func newFakePair(t *testing.T) *fakeRank {
	t.Helper()
	secret := []byte("0123456789abcdef0123456789abcdef")
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fln.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := newTCP(tcpConfig{rank: 0, size: 2, host: "a", secret: secret, ln: ln, timeout: 3 * time.Second,
		lookup: func(ctx context.Context, r int) (string, string, error) { return fln.Addr().String(), "b", nil }})
	f := &fakeRank{tr: tr, w: newWorld(tr)}
	t.Cleanup(func() { f.w.Close() })
	fake := &tcpTransport{hosts: make([]string, 2), cfg: tcpConfig{rank: 1, size: 2, secret: secret, timeout: 3 * time.Second,
		lookup: func(ctx context.Context, r int) (string, string, error) { return ln.Addr().String(), "a", nil }}}
	if f.data, err = fake.dial(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.data.Close() })
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := fln.Accept()
		if err == nil {
			if _, err = fake.accept(c); err != nil {
				c.Close()
				c = nil
			}
		}
		acc <- c
	}()
	// Rank 0 dials the fake the first time it sends to it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.w.Send(ctx, 1, 5, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if f.back = <-acc; f.back == nil {
		t.Fatal("the fake rank did not accept rank 0's connection")
	}
	t.Cleanup(func() { f.back.Close() })
	return f
}

func frame(h header, payload []byte, commit ...byte) []byte {
	var hb [hdrSize]byte
	h.chunk = len(payload)
	h.put(hb[:])
	return append(append(hb[:], payload...), commit...)
}

// waitFor polls cond (a state the transport reaches by itself) until it
// holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A goodbye that overtakes the closer's data (it comes on the receiver's own
// connection to the closer) takes effect only once the data it counts has
// been delivered.
func TestTCPGoodbyeWaitsForCountedData(t *testing.T) {
	f := newFakePair(t)
	if _, err := f.back.Write(frame(header{typ: frameBye, total: 1}, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the goodbye to be read", func() bool { return f.tr.peers[1].want.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := f.w.Recv(ctx, 1, 7)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv with one counted message still in flight: %v, want to wait for it", err)
	}
	// Sends to a rank that said goodbye fail at once.
	if err := f.w.Send(context.Background(), 1, 5, []byte("late")); !errors.Is(err, ErrClosed) || errors.Is(err, ErrPeerLost) {
		t.Fatalf("send to a closed rank: %v, want ErrClosed", err)
	}
	if _, err := f.data.Write(frame(header{typ: frameData, final: true, tag: 7, total: 4}, []byte("last"), commitDeliver)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := f.w.Recv(ctx, 1, 7)
	if err != nil || string(b) != "last" {
		t.Fatalf("recv of the counted message: %q %v", b, err)
	}
	if _, err := f.w.Recv(ctx, 1, 7); !errors.Is(err, ErrClosed) || errors.Is(err, ErrPeerLost) {
		t.Fatalf("recv after every counted message: %v, want ErrClosed", err)
	}
	// The data connection ending without its own goodbye is no loss now.
	f.data.Close()
	if err := f.tr.box.failed(); err != nil {
		t.Fatalf("a clean close broke the world: %v", err)
	}
}

// A peer that ends the connection it sends on before every message its
// goodbye counted arrived is lost, with the count in the reason.
func TestTCPGoodbyeWithMissingDataIsLoss(t *testing.T) {
	f := newFakePair(t)
	if _, err := f.back.Write(frame(header{typ: frameBye, total: 2}, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the goodbye to be read", func() bool { return f.tr.peers[1].want.Load() == 2 })
	f.data.Write(frame(header{typ: frameData, final: true, tag: 7, total: 1}, []byte("x"), commitDeliver))
	f.data.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := f.w.Recv(ctx, 1, 7); err != nil || string(b) != "x" {
		t.Fatalf("the delivered message: %q %v", b, err)
	}
	_, err := f.w.Recv(ctx, 1, 7)
	var pl *PeerLostError
	if !errors.As(err, &pl) || pl.Rank != 1 {
		t.Fatalf("recv after a goodbye with a message missing: %v, want a lost rank 1", err)
	}
	t.Log(err)
}

// A rank that closes without ever having sent to a peer still ends that
// peer's receives from it: its goodbye on the peer's connection counts 0.
func TestTCPRecvFromClosedRankThatNeverDialed(t *testing.T) {
	comms := tcpWorld(t, hostsN(4, 1), 10*time.Second, nil)
	defer closeAll(comms)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := comms[1].Send(ctx, 3, 0, []byte("x")); err != nil { // 1 dials 3
		t.Fatal(err)
	}
	if _, err := comms[3].Recv(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	t3 := comms[3].(*group).t.(*tcpTransport)
	t3.mu.Lock()
	dialed := t3.out[1] != nil
	t3.mu.Unlock()
	if dialed {
		t.Skip("rank 3 has a connection to rank 1: the start-up's connections changed, pick another pair")
	}
	comms[3].Close()
	if _, err := comms[1].Recv(ctx, 3, 0); !errors.Is(err, ErrClosed) || errors.Is(err, ErrPeerLost) {
		t.Fatalf("recv from a closed rank that never sent here: %v, want ErrClosed", err)
	}
}

// A Send whose context ends before the commit byte of its last chunk went
// out is not delivered (the frame ends with a 0 commit byte); one whose
// commit byte went out is, and reports success.
func TestTCPCancelledSendNotDelivered(t *testing.T) {
	payload := make([]byte, 100)
	h := header{typ: frameData, final: true, tag: 3, total: len(payload)}
	for _, cut := range []int{10, hdrSize + 50, hdrSize + len(payload)} {
		a, b := net.Pipe()
		tr := &tcpTransport{}
		oc := &outConn{c: a, wmu: newWlock()}
		ctx, cancel := context.WithCancel(context.Background())
		res := make(chan error, 1)
		go func() { res <- tr.writeFrameCtx(ctx, oc, h, payload) }()
		head := make([]byte, cut)
		if _, err := io.ReadFull(b, head); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-res; !errors.Is(err, errSendAborted) {
			t.Fatalf("cut at %d: %v, want an aborted send", cut, err)
		}
		rest, err := io.ReadAll(io.LimitReader(b, int64(hdrSize+len(payload)+1-cut)))
		if err != nil || cut+len(rest) != hdrSize+len(payload)+1 {
			t.Fatalf("cut at %d: the frame was not finished: %d more bytes, %v", cut, len(rest), err)
		}
		if rest[len(rest)-1] != commitDrop || oc.sent.Load() != 0 {
			t.Fatalf("cut at %d: commit byte %d, %d counted, want a dropped message", cut, rest[len(rest)-1], oc.sent.Load())
		}
		tr.wg.Wait()
		a.Close()
		b.Close()
	}
	// The whole frame written: sent and counted.
	a, b := net.Pipe()
	defer a.Close()
	oc := &outConn{c: a, wmu: newWlock()}
	go io.Copy(io.Discard, b)
	if err := (&tcpTransport{}).writeFrameCtx(context.Background(), oc, h, payload); err != nil || oc.sent.Load() != 1 {
		t.Fatalf("full frame: %v, %d counted", err, oc.sent.Load())
	}
}

// The receiver drops a message whose commit byte is 0 and delivers the
// next one of the stream.
func TestTCPCommitDropIsNotDelivered(t *testing.T) {
	f := newFakePair(t)
	h := header{typ: frameData, final: true, tag: 8, total: 7}
	f.data.Write(frame(h, []byte("dropped"), commitDrop))
	h.total = 4
	f.data.Write(frame(h, []byte("kept"), commitDeliver))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if b, err := f.w.Recv(ctx, 1, 8); err != nil || string(b) != "kept" {
		t.Fatalf("got %q %v, want \"kept\"", b, err)
	}
}

// The ring of heartbeats closes over ranks that closed: no rank still
// running is taken for lost because its neighbours closed (even closing at
// the same moment), and a silent loss after that is still noticed.
func TestTCPRingClosesOverClosedRanks(t *testing.T) {
	const timeout = 600 * time.Millisecond
	var mu sync.Mutex
	var lost []*PeerLostError
	comms := tcpWorld(t, hostsN(6, 1), timeout, func(e *PeerLostError, _ bool) {
		mu.Lock()
		lost = append(lost, e)
		mu.Unlock()
	})
	tr := func(r int) *tcpTransport { return comms[r].(*group).t.(*tcpTransport) }
	// Ranks 1, 2 and 3 close at once; 0, 4 and 5 keep running.
	var wg sync.WaitGroup
	for _, r := range []int{1, 2, 3} {
		wg.Go(func() { comms[r].Close() })
	}
	wg.Wait()
	waitFor(t, "rank 4 to watch rank 0", func() bool { return tr(4).pred.Load() == 0 })
	// Several detection bounds: nobody may call the closes a loss. (The
	// absence of an event cannot be waited for.)
	time.Sleep(4 * timeout)
	mu.Lock()
	if len(lost) != 0 {
		t.Fatalf("clean closes reported as a loss: %v", lost[0])
	}
	mu.Unlock()
	t.Logf("%v: no loss after the closes", time.Now().Format("15:04:05.000"))
	// Rank 0 falls silent (its heartbeats stop, its sockets stay open: a
	// stopped process): rank 4, now its watcher, reports it.
	close(tr(0).done)
	waitFor(t, "the loss of rank 0", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lost) > 0
	})
	mu.Lock()
	if lost[0].Rank != 0 {
		t.Errorf("lost %v, want rank 0", lost[0])
	}
	t.Log(lost[0])
	mu.Unlock()
	t.Logf("%v: loss noticed", time.Now().Format("15:04:05.000"))
	// Rank 0's transport is half stopped: release it by hand.
	t0 := tr(0)
	t0.mu.Lock()
	t0.closing = true
	t0.mu.Unlock()
	t0.cfg.ln.Close()
	closeAll([]Comm{comms[4], comms[5]})
	t.Logf("%v: closed", time.Now().Format("15:04:05.000"))
}

package comm

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The TCP transport. Each rank listens on one port. A rank dials a peer the
// first time it sends to it and sends only on connections it dialed; it
// receives on connections it accepted. Every connection starts with a
// mutual HMAC-SHA256 challenge over the job's secret, so connections from
// other jobs or stray processes are refused.
//
// Frames: a 32-byte header (type, sys, flags, chunk length, communicator
// id, tag, message length) and the chunk. Messages longer than chunkSize go
// as several chunks so heartbeats and messages of other communicators
// interleave with a large transfer. The last chunk of a message is followed
// by one commit byte: 1 delivers the message, 0 drops it (a Send whose
// context ended before the commit byte went out).
//
// Close: a rank's goodbye carries the number of messages it committed to
// that peer. The peer takes the rank for gone (its receives from it return
// ErrClosed) only once it has delivered that many, whichever of the two
// connections the goodbye arrived on; see doc/comm.md.

const (
	chunkSize = 1 << 20
	hdrSize   = 32
	readBuf   = 4 << 10 // read buffer of a connection (see readLoop)

	frameData      = 1
	frameHeartbeat = 2
	frameBye       = 3 // the sender closed its communicator; total = messages it committed to this peer
	frameLost      = 4 // a peer was lost: payload = encodeParts(rank, host, reason)
	frameAbort     = 5 // drop the partly received message of this stream

	handshakeMagic = "SCRCOMM1"

	flagFinal = 1 // header flag: the message's last chunk, a commit byte follows

	commitDrop    = 0
	commitDeliver = 1
)

type tcpConfig struct {
	rank, size int
	host       string // my node name
	secret     []byte
	ln         net.Listener
	// lookup returns the address and node of world rank r; it may wait
	// for r to publish it (bounded by ctx).
	lookup  func(ctx context.Context, r int) (addr, host string, err error)
	timeout time.Duration // failure detection bound
	// onLost runs once, in its own goroutine, after the loss of a peer was
	// recorded and the notice forwarded; detected says whether this rank
	// noticed it itself (rather than being told).
	onLost func(e *PeerLostError, detected bool)
}

type tcpTransport struct {
	cfg  tcpConfig
	box  *mailbox
	done chan struct{} // closed by close()

	mu      sync.Mutex
	out     map[int]*outConn
	in      map[net.Conn]*inConn // accepted connections
	hosts   []string             // by world rank; filled as learnt
	closing bool
	// byesOut is closed once close() said goodbye on every connection it
	// dialed, so the message counts to every peer are final.
	byesOut chan struct{}

	peers []peerState // by world rank

	predSeen  atomic.Int64 // unix nanos of the last frame from my ring predecessor
	pred      atomic.Int64 // the predecessor watched: the nearest one that has not closed
	predArmed atomic.Bool  // the watcher counts only once the world is up
	lostOnce  sync.Once
	wg        sync.WaitGroup // accept loop, readers, heartbeat, watcher

	afterClose func() // releases the bootstrap (PMI finalize)
}

type outConn struct {
	ready chan struct{} // closed once c or err is set
	c     net.Conn
	err   error
	wmu   wlock // one frame at a time
	bye   atomic.Bool
	// readerDone is closed when the reader of this connection ended.
	readerDone chan struct{}
	// dialerGaveUp: the dial failed because its caller's context ended,
	// which says nothing about the peer.
	dialerGaveUp bool
	// sent counts the messages committed on c (their commit byte written);
	// changed only under wmu, so the goodbye written under wmu carries the
	// exact count.
	sent atomic.Int64
}

// inConn is an accepted connection: the peer sends its data on it.
type inConn struct {
	wmu  wlock
	peer int // world rank once authenticated, else -1; under t.mu
}

// peerState is what this rank knows about a peer's close. The peer is gone
// (receives from it fail with ErrClosed) once it said goodbye and every
// message it committed to this rank was delivered: recvd >= want.
type peerState struct {
	recvd atomic.Int64 // messages delivered from the peer
	want  atomic.Int64 // the count its goodbye announced; -1 until then
	gone  atomic.Bool
	// away: a dial was refused (nobody listens: the rank closed, or its
	// process ended, which its connections report). The ring skips it.
	away atomic.Bool
}

func newTCP(cfg tcpConfig) *tcpTransport {
	t := &tcpTransport{
		cfg:     cfg,
		box:     newMailbox(),
		done:    make(chan struct{}),
		out:     map[int]*outConn{},
		in:      map[net.Conn]*inConn{},
		hosts:   make([]string, cfg.size),
		byesOut: make(chan struct{}),
		peers:   make([]peerState, cfg.size),
	}
	for i := range t.peers {
		t.peers[i].want.Store(-1)
	}
	t.hosts[cfg.rank] = cfg.host
	t.predSeen.Store(time.Now().UnixNano())
	t.pred.Store(int64((cfg.rank - 1 + cfg.size) % cfg.size))
	t.wg.Add(1)
	go t.acceptLoop()
	if cfg.size > 1 {
		t.wg.Add(2)
		go t.heartbeat()
		go t.watch()
	}
	return t
}

// armWatch starts failure detection of the ring predecessor; called when
// every rank is known to be up (after the bootstrap's first collective).
func (t *tcpTransport) armWatch() {
	t.predSeen.Store(time.Now().UnixNano())
	t.predArmed.Store(true)
}

func (t *tcpTransport) isClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

func (t *tcpTransport) rank() int { return t.cfg.rank }
func (t *tcpTransport) size() int { return t.cfg.size }

func (t *tcpTransport) host(r int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.hosts[r]; h != "" {
		return h
	}
	return fmt.Sprintf("rank%d", r)
}

func (t *tcpTransport) setHost(r int, h string) {
	if h == "" {
		return
	}
	t.mu.Lock()
	if t.hosts[r] == "" {
		t.hosts[r] = h
	}
	t.mu.Unlock()
}

// ---- connection set-up ----

func mac(secret []byte, parts ...[]byte) []byte {
	h := hmac.New(sha256.New, secret)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

func u32(v int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

func (t *tcpTransport) tune(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.SetNoDelay(true)
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: t.cfg.timeout / 3, Interval: t.cfg.timeout / 3, Count: 3})
	if raw, err := tc.SyscallConn(); err == nil {
		ms := int(t.cfg.timeout / time.Millisecond)
		raw.Control(func(fd uintptr) {
			// Unacknowledged data for longer than the bound fails the
			// connection even if the peer's node vanished without a RST.
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12 /* TCP_USER_TIMEOUT */, ms)
		})
	}
}

// dial connects to world rank r and authenticates both ends.
func (t *tcpTransport) dial(ctx context.Context, r int) (net.Conn, error) {
	addr, host, err := t.cfg.lookup(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("find the address of rank %d: %w", r, err)
	}
	t.setHost(r, host)
	d := net.Dialer{Timeout: t.cfg.timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.tune(c)
	c.SetDeadline(time.Now().Add(t.cfg.timeout))
	fail := func(err error) (net.Conn, error) {
		c.Close()
		return nil, err
	}
	// Server hello: magic, its nonce, its rank.
	hello := make([]byte, len(handshakeMagic)+16+4)
	if _, err := io.ReadFull(c, hello); err != nil {
		return fail(fmt.Errorf("handshake with rank %d at %s: %w", r, addr, err))
	}
	if string(hello[:len(handshakeMagic)]) != handshakeMagic {
		return fail(fmt.Errorf("handshake with rank %d at %s: not an scr-go communicator", r, addr))
	}
	nonceS := hello[len(handshakeMagic) : len(handshakeMagic)+16]
	if got := int(binary.LittleEndian.Uint32(hello[len(handshakeMagic)+16:])); got != r {
		return fail(fmt.Errorf("handshake: %s is rank %d, expected rank %d (stale address?)", addr, got, r))
	}
	nonceC := make([]byte, 16)
	rand.Read(nonceC)
	me, peer := u32(t.cfg.rank), u32(r)
	msg := append(append(append([]byte{}, me...), nonceC...), mac(t.cfg.secret, []byte("c"), nonceS, me, peer)...)
	if _, err := c.Write(msg); err != nil {
		return fail(fmt.Errorf("handshake with rank %d at %s: %w", r, addr, err))
	}
	sm := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, sm); err != nil {
		return fail(fmt.Errorf("handshake with rank %d at %s refused (another job's secret?): %w", r, addr, err))
	}
	if !hmac.Equal(sm, mac(t.cfg.secret, []byte("s"), nonceC, me, peer)) {
		return fail(fmt.Errorf("handshake with rank %d at %s: the peer does not know the job's secret", r, addr))
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// probeID is the rank a probe connection announces (see probeRank0).
const probeID = 0xFFFFFFFF

var errProbe = errors.New("probe answered")

// probeRank0 checks that rank 0 listens at addr and knows secret: the
// dialer's half of the handshake with the rank probeID, which the listener
// answers and then hangs up (no reader, no loss). Used at start-up to tell
// a secret of an earlier launch from the current one.
func probeRank0(ctx context.Context, addr string, secret []byte, timeout time.Duration) error {
	p := &tcpTransport{hosts: make([]string, 1), cfg: tcpConfig{rank: probeID, secret: secret, timeout: timeout,
		lookup: func(context.Context, int) (string, string, error) { return addr, "", nil }}}
	c, err := p.dial(ctx, 0)
	if err != nil {
		return err
	}
	return c.Close()
}

// accept authenticates an incoming connection and returns the peer's rank.
func (t *tcpTransport) accept(c net.Conn) (int, error) {
	t.tune(c)
	c.SetDeadline(time.Now().Add(t.cfg.timeout))
	nonceS := make([]byte, 16)
	rand.Read(nonceS)
	hello := append(append([]byte(handshakeMagic), nonceS...), u32(t.cfg.rank)...)
	if _, err := c.Write(hello); err != nil {
		return -1, err
	}
	in := make([]byte, 4+16+sha256.Size)
	if _, err := io.ReadFull(c, in); err != nil {
		return -1, err
	}
	peer := int(binary.LittleEndian.Uint32(in))
	nonceC := in[4:20]
	if binary.LittleEndian.Uint32(in) == probeID {
		// A rank checking its secret at start-up: answer, then hang up.
		if !hmac.Equal(in[20:], mac(t.cfg.secret, []byte("c"), nonceS, in[:4], u32(t.cfg.rank))) {
			return -1, fmt.Errorf("refused a probe from %s: bad authentication", c.RemoteAddr())
		}
		c.Write(mac(t.cfg.secret, []byte("s"), nonceC, in[:4], u32(t.cfg.rank)))
		return -1, errProbe
	}
	if peer < 0 || peer >= t.cfg.size || !hmac.Equal(in[20:], mac(t.cfg.secret, []byte("c"), nonceS, u32(peer), u32(t.cfg.rank))) {
		return -1, fmt.Errorf("refused a connection from %s: bad authentication", c.RemoteAddr())
	}
	if _, err := c.Write(mac(t.cfg.secret, []byte("s"), nonceC, u32(peer), u32(t.cfg.rank))); err != nil {
		return -1, err
	}
	c.SetDeadline(time.Time{})
	return peer, nil
}

func (t *tcpTransport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.cfg.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		t.mu.Lock()
		if t.closing {
			t.mu.Unlock()
			c.Close()
			continue
		}
		ic := &inConn{wmu: newWlock(), peer: -1}
		t.in[c] = ic
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			defer func() {
				t.mu.Lock()
				delete(t.in, c)
				t.mu.Unlock()
				c.Close()
			}()
			peer, err := t.accept(c)
			if err != nil {
				return // refused: stray, foreign or dead on arrival
			}
			t.mu.Lock()
			ic.peer = peer
			closing := t.closing
			t.mu.Unlock()
			if closing {
				// close() did not see this connection authenticated: say
				// goodbye here, once the counts are final.
				<-t.byesOut
				t.sayBye(c, ic.wmu, t.sentTo(peer))
			}
			t.readLoop(c, peer, true)
		}()
	}
}

// conn returns the connection for sending to world rank r, dialing it the
// first time.
func (t *tcpTransport) conn(ctx context.Context, r int) (*outConn, error) {
retry:
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return nil, fmt.Errorf("rank %d: %w", t.cfg.rank, ErrClosed)
	}
	oc := t.out[r]
	if oc == nil {
		oc = &outConn{ready: make(chan struct{}), readerDone: make(chan struct{}), wmu: newWlock()}
		t.out[r] = oc
		t.mu.Unlock()
		c, err := t.dial(ctx, r)
		t.mu.Lock()
		if err == nil && t.closing {
			c.Close()
			err = ErrClosed
		}
		oc.c, oc.err = c, err
		oc.dialerGaveUp = err != nil && ctx.Err() != nil
		if errors.Is(err, syscall.ECONNREFUSED) {
			t.peers[r].away.Store(true)
		}
		if err != nil {
			delete(t.out, r) // a later call may try again
		} else {
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer close(oc.readerDone)
				t.readLoop(c, r, false)
			}()
		}
		close(oc.ready)
		t.mu.Unlock()
	} else {
		t.mu.Unlock()
	}
	select {
	case <-oc.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.box.failCh:
		return nil, t.box.failed()
	}
	if oc.err != nil {
		if oc.dialerGaveUp && ctx.Err() == nil {
			goto retry // the caller that dialed stopped waiting; we have not
		}
		return nil, fmt.Errorf("connect to rank %d on %s: %w", r, t.host(r), oc.err)
	}
	return oc, nil
}

// ---- frames ----

type header struct {
	typ   byte
	sys   bool
	final bool // data: the message's last chunk, followed by the commit byte
	chunk int
	comm  uint64
	tag   int64
	total int
}

func (h header) put(b []byte) {
	b[0] = h.typ
	b[1] = 0
	if h.sys {
		b[1] = 1
	}
	b[2], b[3] = 0, 0
	if h.final {
		b[2] = flagFinal
	}
	binary.LittleEndian.PutUint32(b[4:], uint32(h.chunk))
	binary.LittleEndian.PutUint64(b[8:], h.comm)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.tag))
	binary.LittleEndian.PutUint64(b[24:], uint64(h.total))
}

func getHeader(b []byte) header {
	return header{
		typ:   b[0],
		sys:   b[1] == 1,
		final: b[2]&flagFinal != 0,
		chunk: int(binary.LittleEndian.Uint32(b[4:])),
		comm:  binary.LittleEndian.Uint64(b[8:]),
		tag:   int64(binary.LittleEndian.Uint64(b[16:])),
		total: int(binary.LittleEndian.Uint64(b[24:])),
	}
}

// wlock serialises the frames written on one connection; LockCtx gives up
// when its context ends.
type wlock chan struct{}

func newWlock() wlock   { return make(wlock, 1) }
func (l wlock) Lock()   { l <- struct{}{} }
func (l wlock) Unlock() { <-l }
func (l wlock) LockCtx(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var commitByte = []byte{commitDeliver}

// writeFrame writes one frame (header, payload and, for a final chunk, the
// commit byte) under the write lock.
func (oc *outConn) writeFrame(h header, payload []byte) error {
	var hb [hdrSize]byte
	h.chunk = len(payload)
	h.put(hb[:])
	bufs := net.Buffers{hb[:], payload}
	if h.final {
		bufs = append(bufs, commitByte)
	}
	oc.wmu.Lock()
	_, err := bufs.WriteTo(oc.c)
	if err == nil && h.final {
		oc.sent.Add(1)
	}
	oc.wmu.Unlock()
	return err
}

// errSendAborted marks a frame cut short by its context: the transport
// finishes the frame in the background and tells the receiver to drop the
// message.
var errSendAborted = errors.New("send aborted")

// writeFrameCtx writes one frame; if ctx ends while the write is blocked,
// it returns ctx's error at once, and a goroutine of the transport (holding
// the write lock, so the stream stays framed) writes the rest of the frame
// from a copy and then drops the message: a 0 commit byte for a final
// chunk, else an abort frame. A final frame whose commit byte went out is
// a sent message (nil error).
func (t *tcpTransport) writeFrameCtx(ctx context.Context, oc *outConn, h header, payload []byte) error {
	if err := oc.wmu.LockCtx(ctx); err != nil {
		return err
	}
	var hb [hdrSize]byte
	h.chunk = len(payload)
	h.put(hb[:])
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		oc.c.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	bufs := net.Buffers{hb[:], payload}
	if h.final {
		bufs = append(bufs, commitByte)
	}
	n, err := bufs.WriteTo(oc.c)
	if !stop() {
		<-fired
		oc.c.SetWriteDeadline(time.Time{})
	}
	if err == nil {
		if h.final {
			oc.sent.Add(1)
		}
		oc.wmu.Unlock()
		return nil
	}
	if ctx.Err() == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		oc.wmu.Unlock()
		return err
	}
	// The commit byte, when there is one, was not written (else n would be
	// the whole frame): the rest of the frame ends with a 0 instead.
	var rest []byte
	if n < hdrSize {
		rest = append(append([]byte{}, hb[n:]...), payload...)
	} else {
		rest = append([]byte{}, payload[int(n)-hdrSize:]...)
	}
	if h.final {
		rest = append(rest, commitDrop)
	}
	t.wg.Add(1)
	go func() { // ends when the frame is out or the connection fails
		defer t.wg.Done()
		defer oc.wmu.Unlock()
		if _, err := oc.c.Write(rest); err != nil || h.final {
			return
		}
		abort := header{typ: frameAbort, sys: h.sys, comm: h.comm, tag: h.tag}
		var ab [hdrSize]byte
		abort.put(ab[:])
		oc.c.Write(ab[:])
	}()
	return fmt.Errorf("%w: %w", errSendAborted, ctx.Err())
}

// abortAsync tells the receiver to drop a message of which some chunks
// went out before the sender's context ended.
func (t *tcpTransport) abortAsync(oc *outConn, h header) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		abort := header{typ: frameAbort, sys: h.sys, comm: h.comm, tag: h.tag}
		oc.writeFrame(abort, nil)
	}()
}

func (t *tcpTransport) send(ctx context.Context, dst int, k key, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := t.box.failed(); err != nil {
		return err
	}
	if dst == t.cfg.rank {
		t.box.put(dst, k, append([]byte(nil), data...))
		return nil
	}
	oc, err := t.conn(ctx, dst)
	if err != nil {
		if errors.Is(err, ErrClosed) || ctx.Err() != nil || t.box.failed() != nil {
			if f := t.box.failed(); f != nil {
				return f
			}
			return err
		}
		if t.peers[dst].want.Load() >= 0 {
			return t.closedErr("send to", dst)
		}
		t.lost(dst, fmt.Sprintf("cannot connect: %v", err), true)
		return t.box.failed()
	}
	if oc.bye.Load() {
		return t.closedErr("send to", dst)
	}
	// When ctx ends in the middle of a message, the receiver is told to
	// drop what it got of it (see writeFrameCtx).
	h := header{typ: frameData, sys: k.sys, comm: k.comm, tag: k.tag, total: len(data)}
	for off := 0; ; {
		n := min(chunkSize, len(data)-off)
		h.final = off+n == len(data)
		if err := t.writeFrameCtx(ctx, oc, h, data[off:off+n]); err != nil {
			if errors.Is(err, errSendAborted) {
				return ctx.Err()
			}
			if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				if off > 0 {
					t.abortAsync(oc, h)
				}
				return ctx.Err()
			}
			return t.writeFailed(dst, oc, err)
		}
		off += n
		if off >= len(data) {
			return nil
		}
		if err := t.box.failed(); err != nil {
			return err
		}
	}
}

func (t *tcpTransport) writeFailed(dst int, oc *outConn, err error) error {
	if f := t.box.failed(); f != nil {
		return f
	}
	if t.isClosing() {
		return fmt.Errorf("rank %d: %w", t.cfg.rank, ErrClosed)
	}
	// The peer may have said goodbye just before its side went away: the
	// reader of this connection sees the bye before the end of the stream.
	select {
	case <-oc.readerDone:
	case <-time.After(t.cfg.timeout):
	}
	if oc.bye.Load() || t.peers[dst].want.Load() >= 0 {
		return t.closedErr("send to", dst)
	}
	t.lost(dst, fmt.Sprintf("send failed: %v", err), true)
	return t.box.failed()
}

func (t *tcpTransport) closedErr(what string, peer int) error {
	return fmt.Errorf("%s rank %d on %s: rank %d closed its communicator: %w", what, peer, t.host(peer), peer, ErrClosed)
}

// sentTo is the number of messages this rank committed to peer; final
// once close() said goodbye on the connection it sends them on.
func (t *tcpTransport) sentTo(peer int) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if oc := t.out[peer]; oc != nil {
		select {
		case <-oc.ready:
			if oc.c != nil {
				return oc.sent.Load()
			}
		default:
		}
	}
	return 0
}

// delivered counts a message of peer put into the mailbox.
func (t *tcpTransport) delivered(peer int) {
	t.peers[peer].recvd.Add(1)
	t.checkGone(peer)
}

// peerBye records peer's goodbye announcing n committed messages.
func (t *tcpTransport) peerBye(peer int, n int64) {
	t.peers[peer].want.CompareAndSwap(-1, n)
	t.checkGone(peer)
}

// checkGone takes peer for gone once its goodbye came and every message it
// announced was delivered. Both the reader counting a delivery and the one
// reading a goodbye call it after their own update, so the last of the two
// sees both.
func (t *tcpTransport) checkGone(peer int) {
	ps := &t.peers[peer]
	w := ps.want.Load()
	if w < 0 || ps.recvd.Load() < w || !ps.gone.CompareAndSwap(false, true) {
		return
	}
	t.mu.Lock()
	if oc := t.out[peer]; oc != nil {
		oc.bye.Store(true)
	}
	t.mu.Unlock()
	t.box.peerGone(peer, fmt.Errorf("rank %d on %s closed its communicator: %w", peer, t.host(peer), ErrClosed))
}

func (t *tcpTransport) recv(ctx context.Context, src int, k key) ([]byte, error) {
	return t.box.take(ctx, src, k)
}

// readLoop reads frames from peer until the connection ends. incoming says
// whether the peer dialed us (data arrives there) or we dialed it (only bye
// and lost notices arrive).
func (t *tcpTransport) readLoop(c net.Conn, peer int, incoming bool) {
	var hb [hdrSize]byte
	type partial struct {
		buf []byte
		off int
	}
	parts := map[key]*partial{}
	// Buffered: small frames cost one read for many; a large chunk goes
	// past the buffer, straight into its message (only what the buffer
	// already holds of it is copied: at most readBuf bytes).
	br := bufio.NewReaderSize(c, readBuf)
	for {
		_, err := io.ReadFull(br, hb[:])
		if err == nil {
			h := getHeader(hb[:])
			if incoming && int64(peer) == t.pred.Load() {
				t.predSeen.Store(time.Now().UnixNano())
			}
			switch h.typ {
			case frameData:
				k := key{comm: h.comm, sys: h.sys, tag: h.tag}
				p := parts[k]
				if p == nil {
					p = &partial{buf: Buffer(h.total)}
				}
				if h.chunk > len(p.buf)-p.off {
					err = fmt.Errorf("frame overruns its message (%d+%d > %d)", p.off, h.chunk, len(p.buf))
					break
				}
				if _, err = io.ReadFull(br, p.buf[p.off:p.off+h.chunk]); err != nil {
					break
				}
				p.off += h.chunk
				if !h.final {
					parts[k] = p
					break
				}
				delete(parts, k)
				var commit byte
				if commit, err = br.ReadByte(); err != nil {
					break
				}
				if p.off != len(p.buf) {
					err = fmt.Errorf("last chunk ends the message at %d of %d bytes", p.off, len(p.buf))
					break
				}
				if commit == commitDeliver {
					t.box.put(peer, k, p.buf)
					t.delivered(peer)
				}
			case frameHeartbeat:
			case frameAbort:
				delete(parts, key{comm: h.comm, sys: h.sys, tag: h.tag})
			case frameBye:
				// The peer stops reading: sends to it fail from now on.
				// Receives from it fail only once the messages the goodbye
				// counts were delivered: a goodbye on our own connection to
				// it can overtake data in flight on the one it sends on.
				// Close our side at once: the peer drains until we do.
				if !incoming {
					t.mu.Lock()
					if oc := t.out[peer]; oc != nil {
						oc.bye.Store(true)
					}
					t.mu.Unlock()
				}
				t.peerBye(peer, int64(h.total))
				c.Close()
				return
			case frameLost:
				b := make([]byte, h.chunk)
				if _, err = io.ReadFull(br, b); err != nil {
					break
				}
				if ps, perr := decodeParts(b); perr == nil && len(ps) == 3 && len(ps[0]) == 4 {
					r := int(binary.LittleEndian.Uint32(ps[0]))
					if r >= 0 && r < t.cfg.size {
						t.setHost(r, string(ps[1]))
						t.lost(r, string(ps[2]), false)
					}
				}
			default:
				err = fmt.Errorf("unknown frame type %d", h.typ)
			}
		}
		if err != nil {
			if t.isClosing() || t.box.failed() != nil || t.peers[peer].gone.Load() {
				return // the peer's clean close was complete: nothing was lost
			}
			if w := t.peers[peer].want.Load(); w >= 0 {
				t.lost(peer, fmt.Sprintf("connection ended after its goodbye with %d of its %d messages undelivered: %v",
					w-t.peers[peer].recvd.Load(), w, err), true)
				return
			}
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				t.lost(peer, "connection closed without goodbye (process died)", true)
			} else {
				t.lost(peer, fmt.Sprintf("connection failed: %v", err), true)
			}
			return
		}
	}
}

// ---- failure detection ----

func (t *tcpTransport) heartbeatEvery() time.Duration { return t.cfg.timeout / 5 }

// nearest returns the first rank after this one in direction dir (+1: the
// successors, -1: the predecessors) for which skip is false; this rank if
// there is none. O(1) until ranks close; then it skips the closed ones.
func (t *tcpTransport) nearest(dir int, skip func(*peerState) bool) int {
	p := t.cfg.size
	for i := 1; i < p; i++ {
		r := ((t.cfg.rank+dir*i)%p + p) % p
		if !skip(&t.peers[r]) {
			return r
		}
	}
	return t.cfg.rank
}

// notListening: the peer's goodbye came (it reads nothing any more) or
// nobody listens at its address.
func notListening(ps *peerState) bool { return ps.want.Load() >= 0 || ps.away.Load() }

// isGone: the peer's goodbye came and everything it sent was delivered, or
// nobody listens at its address.
func isGone(ps *peerState) bool { return ps.gone.Load() || ps.away.Load() }

// heartbeat sends a frame to the ring successor every timeout/5 until
// close. The ring closes over ranks that said goodbye: the heartbeat goes
// to the nearest successor that did not, whose watcher moves to this rank
// when the closed one is gone (see watch). Stop: t.done.
func (t *tcpTransport) heartbeat() {
	defer t.wg.Done()
	tick := time.NewTicker(t.heartbeatEvery())
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-t.box.failCh:
			return
		case <-tick.C:
		}
		succ := t.nearest(1, notListening)
		if succ == t.cfg.rank {
			continue // every other rank closed
		}
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.timeout)
		oc, err := t.conn(ctx, succ)
		cancel()
		if err != nil {
			continue // send reports it; the successor's own watcher covers it
		}
		if oc.bye.Load() {
			continue // the next tick goes to the next successor
		}
		if err := oc.writeFrame(header{typ: frameHeartbeat}, nil); err != nil && !oc.bye.Load() {
			t.writeFailed(succ, oc, err)
		}
	}
}

// watch declares the ring predecessor lost when nothing came from it for
// the timeout less two check periods (one for the check, one for telling
// the others and exiting), so every rank ends within the bound.
// When the predecessor closed (and everything it sent arrived), the watch
// moves to the nearest predecessor that did not, with a fresh silence
// window: that rank heartbeats here from its next tick on, since it heard
// the closer's goodbye (close says goodbye to both ring neighbours).
// Stop: t.done.
func (t *tcpTransport) watch() {
	defer t.wg.Done()
	period := t.cfg.timeout / 20
	silence := t.cfg.timeout - 2*period // + one period of checking + propagation stays within the bound
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-t.box.failCh:
			return
		case <-tick.C:
		}
		pred := int(t.pred.Load())
		if isGone(&t.peers[pred]) {
			next := t.nearest(-1, isGone)
			t.predSeen.Store(time.Now().UnixNano())
			t.pred.Store(int64(next))
			if next != t.cfg.rank && t.predArmed.Load() {
				// It may have closed without this rank hearing of it
				// (closes racing each other): connecting tells. A closed
				// rank refuses (away: the watch moves on) or says
				// goodbye at once; a live one accepts.
				t.wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), t.cfg.timeout)
					defer cancel()
					t.conn(ctx, next)
				})
			}
			continue
		}
		if !t.predArmed.Load() || pred == t.cfg.rank {
			continue
		}
		quiet := time.Since(time.Unix(0, t.predSeen.Load()))
		if quiet > silence {
			t.lost(pred, fmt.Sprintf("no heartbeat for %.1fs", quiet.Seconds()), true)
			return
		}
	}
}

// lost records the loss of world rank r (first call wins), breaks every
// blocking call, forwards the notice so every rank learns it within
// O(log P) hops, and runs the policy.
func (t *tcpTransport) lost(r int, reason string, detected bool) {
	if t.isClosing() {
		return
	}
	t.lostOnce.Do(func() {
		e := &PeerLostError{Rank: r, Host: t.host(r), Reason: reason}
		if detected {
			e.Reason = fmt.Sprintf("%s (noticed by rank %d on %s)", reason, t.cfg.rank, t.cfg.host)
		}
		t.box.setFail(e)
		// Not in t.wg: the policy may Close the communicator. The
		// forwarding ends within the timeout (a dead target only stalls
		// its own write); the policy runs once the forwards are out or
		// after a short grace, so forwards to more dead ranks of a
		// vanished node cannot push this rank past the bound.
		fwd := make(chan struct{})
		go func() {
			defer close(fwd)
			t.forwardLost(e)
		}()
		go func() {
			grace := time.NewTimer(min(t.cfg.timeout/10, 300*time.Millisecond))
			defer grace.Stop()
			select {
			case <-fwd:
			case <-grace.C:
			}
			if t.cfg.onLost != nil {
				t.cfg.onLost(e, detected)
			}
		}()
	})
}

// forwardLost sends the notice to ranks me+1, me+2, me+4, ... (mod P),
// skipping the lost rank; each rank forwards it once, so it reaches every
// survivor in O(log P) hops even past further dead ranks. Bounded by the
// timeout.
func (t *tcpTransport) forwardLost(e *PeerLostError) {
	p := t.cfg.size
	payload := encodeParts([][]byte{u32(e.Rank), []byte(e.Host), []byte(e.Reason)})
	var hb [hdrSize]byte
	header{typ: frameLost, chunk: len(payload)}.put(hb[:])
	frame := append(hb[:], payload...)
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.timeout)
	defer cancel()
	var wg sync.WaitGroup
	write := func(c net.Conn, wmu sync.Locker) {
		done := make(chan struct{})
		go func() {
			wmu.Lock()
			c.Write(frame)
			wmu.Unlock()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	// Every peer connected to this rank hears it on that connection first,
	// before it could see this rank go away and take that for a new loss.
	sent := map[int]bool{}
	t.mu.Lock()
	for r, oc := range t.out {
		select {
		case <-oc.ready:
			if oc.c != nil && r != e.Rank {
				sent[r] = true
				wg.Go(func() { write(oc.c, oc.wmu) })
			}
		default:
		}
	}
	for c, ic := range t.in {
		wg.Go(func() { write(c, ic.wmu) })
	}
	t.mu.Unlock()
	for d := 1; d < p; d *= 2 {
		dst := (t.cfg.rank + d) % p
		if dst == e.Rank || sent[dst] {
			continue
		}
		wg.Go(func() {
			c, err := t.dial(ctx, dst)
			if err != nil {
				return
			}
			defer c.Close()
			write(c, new(sync.Mutex))
		})
	}
	wg.Wait()
}

// drainBound: after its goodbye a closing rank reads each connection until
// the peer hangs up, which it does once it has read everything up to the
// goodbye, or for the detection bound (a peer silent that long is lost
// anyway). Closing a socket with data unread would reset the connection
// and could discard the tail of what this rank sent, goodbye included.
//
// sayBye writes a goodbye announcing n committed messages on c and shuts
// down the sending side; the reader of c then drains until the peer hangs up
// or a short deadline.
func (t *tcpTransport) sayBye(c net.Conn, wmu wlock, n int64) {
	var hb [hdrSize]byte
	header{typ: frameBye, total: int(n)}.put(hb[:])
	c.SetWriteDeadline(time.Now().Add(t.cfg.timeout))
	wmu.Lock()
	c.Write(hb[:])
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	wmu.Unlock()
	c.SetReadDeadline(time.Now().Add(t.cfg.timeout)) // see drainBound
}

// close says goodbye on every connection, waits (briefly) for the peers
// to hang up so no goodbye is lost to a reset, and releases everything.
//
// A goodbye carries the number of messages this rank committed to that
// peer, so the peer takes this rank for gone only after delivering them,
// whichever connection the goodbye comes on. The goodbyes on the
// connections this rank dialed (where its data goes) are written first,
// under each connection's write lock: after them no message can be
// committed, and the counts are final for the goodbyes on the accepted
// connections.
func (t *tcpTransport) close() error {
	if t.cfg.size > 1 && t.box.failed() == nil && !t.isClosing() {
		// The ring neighbours must hear the goodbye even if no heartbeat
		// connected them yet: the successor watches this rank (and moves
		// on to the predecessor), the predecessor heartbeats to it (and
		// moves on to the successor).
		ctx, cancel := context.WithTimeout(context.Background(), t.cfg.timeout)
		var wg sync.WaitGroup
		for _, r := range []int{t.nearest(1, notListening), t.nearest(-1, notListening)} {
			if r != t.cfg.rank {
				wg.Go(func() { t.conn(ctx, r) })
			}
		}
		wg.Wait()
		cancel()
	}
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return nil
	}
	t.closing = true
	var outs []*outConn
	for _, oc := range t.out {
		select {
		case <-oc.ready:
			if oc.c != nil {
				outs = append(outs, oc)
			}
		default: // the dial sees closing and drops its connection
		}
	}
	type accepted struct {
		c    net.Conn
		wmu  wlock
		peer int
	}
	var ins []accepted
	var conns []net.Conn
	for c, ic := range t.in {
		// A connection still in its handshake says goodbye itself once
		// authenticated (see acceptLoop).
		if ic.peer >= 0 {
			ins = append(ins, accepted{c, ic.wmu, ic.peer})
		}
	}
	t.mu.Unlock()
	err := t.cfg.ln.Close()
	close(t.done)
	t.box.setFail(fmt.Errorf("rank %d: %w", t.cfg.rank, ErrClosed))
	var wg sync.WaitGroup
	for _, oc := range outs {
		conns = append(conns, oc.c)
		// sent is read under the write lock, after the last frame.
		wg.Go(func() { t.sayByeOut(oc) })
	}
	wg.Wait()
	close(t.byesOut)
	for _, in := range ins {
		conns = append(conns, in.c)
		wg.Go(func() { t.sayBye(in.c, in.wmu, t.sentTo(in.peer)) })
	}
	wg.Wait()
	t.wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	if t.afterClose != nil {
		t.afterClose()
	}
	return err
}

// sayByeOut is sayBye on a connection this rank dialed, with the count of
// messages committed on it read under its write lock.
func (t *tcpTransport) sayByeOut(oc *outConn) {
	var hb [hdrSize]byte
	oc.c.SetWriteDeadline(time.Now().Add(t.cfg.timeout))
	oc.wmu.Lock()
	header{typ: frameBye, total: int(oc.sent.Load())}.put(hb[:])
	oc.c.Write(hb[:])
	if tc, ok := oc.c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	oc.wmu.Unlock()
	oc.c.SetReadDeadline(time.Now().Add(t.cfg.timeout)) // see drainBound
}

// startTCP brings up the world communicator over TCP: it starts the
// transport, learns every rank's node with one Allgather (which also proves
// every rank is up) and then arms failure detection.
func startTCP(ctx context.Context, cfg tcpConfig) (*group, *tcpTransport, error) {
	t := newTCP(cfg)
	g := newWorld(t)
	hosts, err := g.Allgather(ctx, []byte(cfg.host))
	if err != nil {
		t.close()
		return nil, nil, fmt.Errorf("comm: start-up of rank %d of %d on %s: %w", cfg.rank, cfg.size, cfg.host, err)
	}
	for r, h := range hosts {
		t.setHost(r, string(h))
	}
	t.armWatch()
	return g, t, nil
}

package comm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scr-go/scr/internal/pmi"
	"github.com/scr-go/scr/internal/prefix"
)

// Options configure FromEnv. The zero value is ready to use: every field
// has a default read from the environment.
type Options struct {
	// Timeout bounds failure detection: a rank notices a lost peer (dead
	// process or silently vanished node) within it, and every other rank
	// learns it a few milliseconds later. Default SCR_COMM_TIMEOUT
	// (seconds, fractions allowed), else 3s: short enough for the job
	// script to regain control quickly, long enough (15 missed heartbeat
	// checks) not to trip on a busy node.
	Timeout time.Duration
	// BootstrapTimeout bounds start-up: the PMI exchange or rendezvous and
	// the first collective, which needs every rank. Default
	// SCR_COMM_BOOTSTRAP_TIMEOUT (seconds), else 60s (srun may start tasks
	// on thousands of nodes over several seconds).
	BootstrapTimeout time.Duration
	// OnPeerLost, if set, replaces the default fatal policy. It is called
	// once, in its own goroutine, after the loss was recorded (blocking
	// calls already return the error). The default policy appends a
	// peer_lost event to the timeline (if this rank noticed the loss
	// itself and a prefix is known), prints "scr: lost rank R on HOST:
	// REASON" to stderr and exits with ExitPeerLost.
	OnPeerLost func(*PeerLostError)
	// Node is this rank's node identity (doc/seams.md, section 2).
	// Default SCR_NODE_NAME, else os.Hostname().
	Node string
	// Addr is the IP address to listen on. Default SCR_COMM_ADDR, else the
	// address the host name resolves to (as /etc/hosts says in the
	// virtual cluster), else loopback for a job on one node.
	Addr string
	// Prefix is where the timeline lives. Default SCR_PREFIX.
	Prefix string
	// Getenv reads the environment. Default os.Getenv; tests and ranks
	// sharing a process pass their own.
	Getenv func(string) string
	// Stderr receives the default policy's one line. Default os.Stderr.
	Stderr io.Writer

	// Exit ends the process under the default policy. Default os.Exit;
	// the C API passes one that flushes the application's C stdio first.
	Exit func(code int)
}

func (o *Options) fill() error {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Exit == nil {
		o.Exit = os.Exit
	}
	secs := func(name string, def time.Duration) (time.Duration, error) {
		v := o.Getenv(name)
		if v == "" {
			return def, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return 0, fmt.Errorf("comm: %s=%q: want a positive number of seconds", name, v)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	var err error
	if o.Timeout == 0 {
		if o.Timeout, err = secs("SCR_COMM_TIMEOUT", 3*time.Second); err != nil {
			return err
		}
	}
	if o.Timeout < 100*time.Millisecond {
		return fmt.Errorf("comm: timeout %v is below the minimum of 100ms", o.Timeout)
	}
	if o.BootstrapTimeout == 0 {
		if o.BootstrapTimeout, err = secs("SCR_COMM_BOOTSTRAP_TIMEOUT", 60*time.Second); err != nil {
			return err
		}
	}
	if o.Node == "" {
		o.Node = o.Getenv("SCR_NODE_NAME")
	}
	if o.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("comm: no SCR_NODE_NAME and no host name: %w", err)
		}
		o.Node, _, _ = strings.Cut(h, ".")
	}
	if o.Addr == "" {
		o.Addr = o.Getenv("SCR_COMM_ADDR")
	}
	if o.Prefix == "" {
		o.Prefix = o.Getenv("SCR_PREFIX")
	}
	return nil
}

// bootstrap is how ranks find each other before TCP: publish my address,
// learn the job's secret, look up a peer's address.
type bootstrap interface {
	// exchange publishes "node;addr" for my rank and returns the job's
	// secret once every rank (PMI) or rank 0 (rendezvous) published.
	exchange(ctx context.Context, node, addr string) (secret []byte, err error)
	lookup(ctx context.Context, r int) (addr, node string, err error)
	close()
}

// FromEnv bootstraps the world communicator of a launched process
// (doc/seams.md, section 1): PMI-1 on PMI_FD/PMI_PORT, else a rendezvous
// directory when a launcher's rank variables say there are several ranks,
// else a singleton of size 1. Unless opts.OnPeerLost is set, a lost peer
// ends the process with ExitPeerLost (the default fatal policy).
func FromEnv(ctx context.Context, opts Options) (Comm, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.BootstrapTimeout)
	defer cancel()

	var (
		boot       bootstrap
		rank, size int
	)
	pc, err := pmi.Connect(ctx, opts.Getenv)
	switch {
	case err == nil:
		boot, rank, size = &pmiBoot{c: pc, cache: map[int][2]string{}}, pc.Rank, pc.Size
	case errors.Is(err, pmi.ErrNoPMI):
		lv, ok, err := launcherVars(opts.Getenv)
		if err != nil {
			return nil, err
		}
		if !ok || lv.size == 1 {
			return NewLocal([]string{opts.Node})[0], nil
		}
		dir, err := rendezvousDir(opts.Getenv, lv)
		if err != nil {
			return nil, err
		}
		boot, rank, size = &dirBoot{dir: dir, rank: lv.rank, timeout: opts.Timeout}, lv.rank, lv.size
	default:
		return nil, fmt.Errorf("comm: bootstrap through PMI: %w", err)
	}
	if size == 1 {
		boot.close()
		return NewLocal([]string{opts.Node})[0], nil
	}
	if rank < 0 || rank >= size {
		boot.close()
		return nil, fmt.Errorf("comm: rank %d out of range for size %d", rank, size)
	}

	ip, err := listenAddr(opts.Addr)
	if err != nil {
		boot.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		boot.close()
		return nil, fmt.Errorf("comm: rank %d on %s: listen on %s: %w (set SCR_COMM_ADDR to an address of this node)", rank, opts.Node, ip, err)
	}
	secret, err := boot.exchange(ctx, opts.Node, ln.Addr().String())
	if err != nil {
		ln.Close()
		boot.close()
		return nil, fmt.Errorf("comm: rank %d of %d on %s: %w", rank, size, opts.Node, err)
	}
	pol := &policy{opts: opts, rank: rank}
	cfg := tcpConfig{
		rank: rank, size: size, host: opts.Node, secret: secret, ln: ln,
		lookup: boot.lookup, timeout: opts.Timeout, onLost: pol.onLost,
	}
	g, t, err := startTCP(ctx, cfg)
	if err != nil {
		boot.close()
		return nil, err
	}
	t.afterClose = boot.close
	return g, nil
}

// listenAddr picks the IP to listen on: the option, else a non-loopback
// address the host name resolves to (Debian maps the host name to
// 127.0.1.1, which other nodes cannot reach), else the first non-loopback
// IPv4 address of an interface that is up, else loopback (fine when every
// rank runs on this node).
func listenAddr(addr string) (string, error) {
	if addr != "" {
		if net.ParseIP(addr) == nil {
			ips, err := net.LookupHost(addr)
			if err != nil || len(ips) == 0 {
				return "", fmt.Errorf("comm: SCR_COMM_ADDR=%q is neither an IP nor a resolvable name: %v", addr, err)
			}
			return ips[0], nil
		}
		return addr, nil
	}
	usable := func(s string) bool {
		ip := net.ParseIP(s)
		return ip != nil && ip.To4() != nil && !ip.IsLoopback() && !ip.IsUnspecified()
	}
	if h, err := os.Hostname(); err == nil {
		if ips, err := net.LookupHost(h); err == nil {
			for _, ip := range ips {
				if usable(ip) {
					return ip, nil
				}
			}
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifc := range ifs {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && usable(ipn.IP.String()) {
					return ipn.IP.String(), nil
				}
			}
		}
	}
	return "127.0.0.1", nil
}

// policy is the reaction to a lost peer: the caller's, or the default
// fatal one.
type policy struct {
	opts Options
	rank int
	once sync.Once
}

func (p *policy) onLost(e *PeerLostError, detected bool) {
	p.once.Do(func() {
		if p.opts.OnPeerLost != nil {
			p.opts.OnPeerLost(e)
			return
		}
		if detected && p.opts.Prefix != "" {
			// The prefix is a shared file system that may hang: the exit
			// does not wait for it longer than a third of the timeout.
			done := make(chan struct{})
			go func() {
				defer close(done)
				run, _ := strconv.Atoi(p.opts.Getenv("SCR_RUN_ID"))
				prefix.AppendTimeline(p.opts.Prefix, prefix.Event{
					Source: "comm", Event: "peer_lost", Run: run,
					Fields: map[string]any{
						"rank": p.rank, "host": p.opts.Node,
						"lost_rank": e.Rank, "lost_host": e.Host, "reason": e.Reason,
					},
				})
			}()
			wait := time.NewTimer(max(p.opts.Timeout/3, 100*time.Millisecond))
			select {
			case <-done:
			case <-wait.C:
			}
			wait.Stop()
		}
		fmt.Fprintf(p.opts.Stderr, "scr: %v\n", e)
		p.opts.Exit(ExitPeerLost)
	})
}

// ---- PMI bootstrap ----

type pmiBoot struct {
	c     *pmi.Client
	mu    sync.Mutex
	cache map[int][2]string
}

const pmiSecretKey = "scr-comm-secret"

func pmiAddrKey(r int) string { return "scr-comm-" + strconv.Itoa(r) }

func (b *pmiBoot) exchange(ctx context.Context, node, addr string) ([]byte, error) {
	if b.c.Rank == 0 {
		s := make([]byte, 32)
		rand.Read(s)
		if err := b.c.Put(ctx, pmiSecretKey, hex.EncodeToString(s)); err != nil {
			return nil, err
		}
	}
	if err := b.c.Put(ctx, pmiAddrKey(b.c.Rank), node+";"+addr); err != nil {
		return nil, err
	}
	if err := b.c.Barrier(ctx); err != nil {
		return nil, err
	}
	v, err := b.c.Get(ctx, pmiSecretKey)
	if err != nil {
		return nil, fmt.Errorf("read the job's secret: %w", err)
	}
	s, err := hex.DecodeString(v)
	if err != nil || len(s) < 16 {
		return nil, fmt.Errorf("bad job secret in the PMI KVS")
	}
	return s, nil
}

func (b *pmiBoot) lookup(ctx context.Context, r int) (string, string, error) {
	b.mu.Lock()
	v, ok := b.cache[r]
	b.mu.Unlock()
	if ok {
		return v[0], v[1], nil
	}
	// The get runs on its own bounded context: interrupting a PMI request
	// mid-way would leave the lock-step connection unusable for every
	// later lookup. The caller may stop waiting; the answer is cached.
	type result struct {
		addr, node string
		err        error
	}
	ch := make(chan result, 1)
	go func() {
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		s, err := b.c.Get(gctx, pmiAddrKey(r))
		if err != nil {
			ch <- result{err: err}
			return
		}
		node, addr, ok := strings.Cut(s, ";")
		if !ok {
			ch <- result{err: fmt.Errorf("bad address %q of rank %d in the PMI KVS", s, r)}
			return
		}
		b.mu.Lock()
		b.cache[r] = [2]string{addr, node}
		b.mu.Unlock()
		ch <- result{addr: addr, node: node}
	}()
	select {
	case res := <-ch:
		return res.addr, res.node, res.err
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

func (b *pmiBoot) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.c.Finalize(ctx)
}

package nodecheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/scr-go/scr/internal/remote"
)

// In-process ping: one ICMP socket for all nodes, instead of one ping(8)
// process per node. At 10,000 nodes that is 10,000 fewer processes on the
// launch node, and the whole ping phase takes two reply windows (first try
// and one retry) whatever the number of nodes or dead nodes. It needs an
// ICMP socket: an unprivileged "ping socket" (net.ipv4.ping_group_range)
// or a raw one (root / CAP_NET_RAW); without either, Check falls back to
// ping(8) per node.

// icmpSocket is an open ICMP echo socket.
type icmpSocket struct {
	pc  net.PacketConn
	raw bool   // raw socket: we see every ICMP packet, filter by id
	id  uint16 // echo identifier (raw sockets; the kernel sets it for ping sockets)
}

// Sending and receiving many echoes at once: replies come back in a burst,
// and a full receive queue drops them silently (seen: 400 of 1,000 lost on
// loopback with the default queue). So the queue is enlarged, a raw
// socket's kernel filter keeps everything but echo replies out of it, and
// requests go out in paced bursts.
const (
	icmpRcvBuf     = 8 << 20 // bytes
	icmpBurst      = 128     // requests per burst
	icmpBurstPause = 2 * time.Millisecond
)

// Linux raw-socket ICMP filter (linux/icmp.h): a bit set = type dropped.
const (
	solRaw     = 255
	icmpFilter = 1
)

// openICMP opens a ping socket, else a raw ICMP socket.
func openICMP() (*icmpSocket, error) {
	var s *icmpSocket
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_ICMP)
	if err == nil {
		f := os.NewFile(uintptr(fd), "icmp")
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err == nil {
			s = &icmpSocket{pc: pc}
		}
	}
	if s == nil {
		pc, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return nil, fmt.Errorf("%w: no ICMP socket (ping_group_range or CAP_NET_RAW): %v", ErrUnavailable, err)
		}
		s = &icmpSocket{pc: pc, raw: true, id: uint16(rand.Uint32())}
	}
	if sc, ok := s.pc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				// FORCE may exceed rmem_max (root); else the plain one, capped.
				if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, icmpRcvBuf) != nil {
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, icmpRcvBuf)
				}
				if s.raw {
					syscall.SetsockoptInt(int(fd), solRaw, icmpFilter, ^(1 << 0)) // only type 0, echo reply
				}
			})
		}
	}
	return s, nil
}

func (s *icmpSocket) send(ip net.IP, seq uint16) error {
	b := make([]byte, 16)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], s.id)
	binary.BigEndian.PutUint16(b[6:], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint16(b[2:], icmpChecksum(b))
	var dst net.Addr = &net.IPAddr{IP: ip}
	if !s.raw {
		dst = &net.UDPAddr{IP: ip}
	}
	_, err := s.pc.WriteTo(b, dst)
	return err
}

func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pingAll pings every node from one socket: resolve the names (bounded
// fan-out), send one echo request each, wait `wait` for replies, resend to
// the silent ones `retries` times. alive(i) is called (from one goroutine)
// as soon as node i answers. It returns one error per node (nil = answered)
// once every node answered or the last window closed, or ctx ended.
//
// gone(i), if not nil, says node i no longer needs an answer (the resource
// manager reported it down): it is not retried, and pingAll returns as soon
// as every node still waited for has answered.
func pingAll(ctx context.Context, s *icmpSocket, nodes []string, wait time.Duration, retries int, alive func(i int), gone func(i int) bool) []error {
	errs := make([]error, len(nodes))
	ips := make([]net.IP, len(nodes))
	rctx, cancel := context.WithTimeout(ctx, wait)
	remote.Each(rctx, len(nodes), DefaultPingFanout, func(ctx context.Context, i int) {
		addrs, err := net.DefaultResolver.LookupIP(ctx, "ip4", nodes[i])
		if err != nil || len(addrs) == 0 {
			errs[i] = fmt.Errorf("cannot resolve %s: %v", nodes[i], err)
			return
		}
		ips[i] = addrs[0].To4()
	})
	cancel()
	byIP := map[string][]int{}
	pending := 0
	for i, ip := range ips {
		if ip == nil {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("cannot resolve %s: %w", nodes[i], ctx.Err())
			}
			continue
		}
		byIP[ip.String()] = append(byIP[ip.String()], i)
		pending++
	}

	var mu sync.Mutex
	answered := make([]bool, len(nodes))
	allDone := make(chan struct{})
	var readerDone sync.WaitGroup
	readerDone.Add(1)
	go func() { // reader: ends when the socket's read deadline passes after we stop
		defer readerDone.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := s.pc.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n < 8 || buf[0] != 0 { // echo reply only
				continue
			}
			if s.raw && binary.BigEndian.Uint16(buf[4:]) != s.id {
				continue // another process's ping
			}
			var ip net.IP
			switch a := from.(type) {
			case *net.IPAddr:
				ip = a.IP
			case *net.UDPAddr:
				ip = a.IP
			}
			if ip == nil {
				continue
			}
			mu.Lock()
			for _, i := range byIP[ip.To4().String()] {
				if !answered[i] {
					answered[i] = true
					pending--
					alive(i)
				}
			}
			if pending == 0 {
				select {
				case <-allDone:
				default:
					close(allDone)
				}
			}
			mu.Unlock()
		}
	}()

	if gone == nil {
		gone = func(int) bool { return false }
	}
	// waiting returns the nodes still waited for.
	waiting := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var todo []int
		for i, ip := range ips {
			if ip != nil && !answered[i] && !gone(i) {
				todo = append(todo, i)
			}
		}
		return todo
	}
rounds:
	for round := 0; round <= retries; round++ {
		todo := waiting()
		if len(todo) == 0 {
			break
		}
		for k, i := range todo {
			if k > 0 && k%icmpBurst == 0 {
				time.Sleep(icmpBurstPause) // pacing: let the replies drain
			}
			if err := s.send(ips[i], uint16(i)); err != nil {
				mu.Lock()
				if !answered[i] && errs[i] == nil {
					errs[i] = fmt.Errorf("ping %s (%s): %v", nodes[i], ips[i], err)
				}
				mu.Unlock()
			}
		}
		t := time.NewTimer(wait)
		poll := time.NewTicker(20 * time.Millisecond) // for nodes given up on
	window:
		for {
			select {
			case <-allDone:
				break window
			case <-t.C:
				break window
			case <-ctx.Done():
				break window
			case <-poll.C:
				if len(waiting()) == 0 {
					break window
				}
			}
		}
		t.Stop()
		poll.Stop()
		if ctx.Err() != nil || len(waiting()) == 0 {
			break rounds
		}
	}
	s.pc.SetReadDeadline(time.Now()) // stop the reader
	readerDone.Wait()

	for i := range nodes {
		if answered[i] {
			errs[i] = nil
			continue
		}
		if errs[i] == nil && ips[i] != nil {
			if ctx.Err() != nil {
				errs[i] = fmt.Errorf("ping %s: %w", nodes[i], ctx.Err())
			} else {
				errs[i] = fmt.Errorf("no reply from %s (%s) to %d ICMP echo requests within %v each", nodes[i], ips[i], retries+1, wait)
			}
		}
	}
	return errs
}

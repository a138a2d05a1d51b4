package comm

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// benchCollective runs op b.N times on every rank of a TCP world of p
// goroutine ranks on loopback and reports the time per call.
func benchCollective(b *testing.B, p int, op func(ctx context.Context, c Comm) error) {
	comms := tcpWorld(b, hostsN(p, 1), 30*time.Second, nil)
	defer closeAll(comms)
	ctx := context.Background()
	// Warm up: open the connections the tree uses.
	for range 2 {
		var wg sync.WaitGroup
		for _, c := range comms {
			wg.Go(func() { op(ctx, c) })
		}
		wg.Wait()
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make([]error, p)
	for i, c := range comms {
		wg.Go(func() {
			for range b.N {
				if err := op(ctx, c); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			b.Fatalf("rank %d: %v", r, err)
		}
	}
}

var benchSizes = []int{2, 4, 8, 16, 32, 64, 128}

func BenchmarkBarrierTCP(b *testing.B) {
	for _, p := range benchSizes {
		b.Run(fmt.Sprint(p), func(b *testing.B) {
			benchCollective(b, p, func(ctx context.Context, c Comm) error { return c.Barrier(ctx) })
		})
	}
}

func BenchmarkAllreduceTCP(b *testing.B) {
	for _, p := range benchSizes {
		b.Run(fmt.Sprint(p), func(b *testing.B) {
			benchCollective(b, p, func(ctx context.Context, c Comm) error {
				_, err := c.Allreduce(ctx, OpSum, []int64{1, 2, 3, 4})
				return err
			})
		})
	}
}

func BenchmarkAllreduceLocal(b *testing.B) {
	for _, p := range benchSizes {
		b.Run(fmt.Sprint(p), func(b *testing.B) {
			comms := NewLocal(hostsN(p, 1))
			defer closeAll(comms)
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range comms {
				wg.Go(func() {
					for range b.N {
						c.Allreduce(context.Background(), OpSum, []int64{1, 2, 3, 4})
					}
				})
			}
			wg.Wait()
		})
	}
}

const bwMsg = 16 << 20

// BenchmarkSendRecvTCP is point-to-point bandwidth between two ranks: 16 MiB
// messages, one way, acknowledged at the end. Compare with
// BenchmarkRawLoopbackTCP (the same bytes over a bare socket).
func BenchmarkSendRecvTCP(b *testing.B) {
	comms := tcpWorld(b, hostsN(2, 1), 30*time.Second, nil)
	defer closeAll(comms)
	ctx := context.Background()
	data := make([]byte, bwMsg)
	comms[0].Send(ctx, 1, 0, data) // connect
	comms[1].Recv(ctx, 0, 0)
	b.SetBytes(bwMsg)
	b.ResetTimer()
	var wg sync.WaitGroup
	wg.Go(func() {
		for range b.N {
			if _, err := comms[1].Recv(ctx, 0, 0); err != nil {
				b.Error(err)
				return
			}
		}
		comms[1].Send(ctx, 0, 1, nil)
	})
	for range b.N {
		if err := comms[0].Send(ctx, 1, 0, data); err != nil {
			b.Fatal(err)
		}
	}
	comms[0].Recv(ctx, 1, 1)
	wg.Wait()
}

func BenchmarkRawLoopbackTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, bwMsg) // the receiver keeps every message, like a mailbox
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			buf = make([]byte, bwMsg)
		}
	}()
	c, err := net.Dial("tcp", "127.0.0.1"+ln.Addr().String()[len("127.0.0.1"):])
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, bwMsg)
	b.SetBytes(bwMsg)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	<-done
}

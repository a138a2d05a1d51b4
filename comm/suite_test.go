package comm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// factory makes a world of len(hosts) communicators; the same suite runs
// over every transport.
type factory func(t *testing.T, hosts []string) []Comm

func hostsN(p, perNode int) []string {
	h := make([]string, p)
	for i := range h {
		h[i] = fmt.Sprintf("node%d", i/perNode)
	}
	return h
}

// runRanks runs fn on every rank in its own goroutine and returns the
// errors by rank. The context bounds the test so a bug cannot hang it.
func runRanks(t *testing.T, comms []Comm, fn func(ctx context.Context, c Comm) error) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for i, c := range comms {
		wg.Go(func() { errs[i] = fn(ctx, c) })
	}
	wg.Wait()
	return errs
}

func mustAll(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

func closeAll(comms []Comm) {
	for _, c := range comms {
		if c != nil {
			c.Close()
		}
	}
}

var suiteSizes = []int{1, 2, 3, 5, 7, 8, 13, 16, 17}

func suite(t *testing.T, mk factory) {
	t.Run("SendRecvOrder", func(t *testing.T) { testSendRecvOrder(t, mk) })
	t.Run("Barrier", func(t *testing.T) { testBarrier(t, mk) })
	t.Run("Bcast", func(t *testing.T) { testBcast(t, mk) })
	t.Run("Gather", func(t *testing.T) { testGather(t, mk) })
	t.Run("Allgather", func(t *testing.T) { testAllgather(t, mk) })
	t.Run("Allreduce", func(t *testing.T) { testAllreduce(t, mk) })
	t.Run("AllreduceLengthMismatch", func(t *testing.T) { testAllreduceMismatch(t, mk) })
	t.Run("Split", func(t *testing.T) { testSplit(t, mk) })
	t.Run("SplitString", func(t *testing.T) { testSplitString(t, mk) })
	t.Run("Many", func(t *testing.T) { testMany(t, mk, 64) })
	t.Run("RecvContext", func(t *testing.T) { testRecvContext(t, mk) })
	t.Run("RecvFromClosed", func(t *testing.T) { testRecvFromClosed(t, mk) })
}

// payload is a deterministic message so the receiver can check it.
func payload(src, dst, tag, i, size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(src)<<32|uint64(dst), uint64(tag)<<32|uint64(i)))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

// Every rank sends to every other rank several messages on several tags,
// with random sizes, in a random interleaving; receivers take the tags in
// another random order. Per (pair, tag) the order must hold.
func testSendRecvOrder(t *testing.T, mk factory) {
	const p, tags, per = 6, 3, 8
	comms := mk(t, hostsN(p, 2))
	defer closeAll(comms)
	sizes := []int{0, 1, 100, 4096, 70000, 1 << 20}
	size := func(src, dst, tag, i int) int {
		return sizes[(src*7+dst*5+tag*3+i)%len(sizes)]
	}
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		me := c.Rank()
		rng := rand.New(rand.NewPCG(uint64(me), 1))
		type msg struct{ dst, tag int }
		var plan []msg
		for dst := range p {
			for tag := range tags {
				plan = append(plan, msg{dst, tag})
			}
		}
		next := map[msg]int{}
		var order []msg
		for _, m := range plan {
			for range per {
				order = append(order, m)
			}
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, m := range order {
			i := next[m]
			next[m]++
			if err := c.Send(ctx, m.dst, m.tag, payload(me, m.dst, m.tag, i, size(me, m.dst, m.tag, i))); err != nil {
				return err
			}
		}
		recvOrder := slices.Clone(plan)
		rng.Shuffle(len(recvOrder), func(i, j int) { recvOrder[i], recvOrder[j] = recvOrder[j], recvOrder[i] })
		for _, m := range recvOrder {
			src := m.dst
			for i := range per {
				b, err := c.Recv(ctx, src, m.tag)
				if err != nil {
					return err
				}
				if want := payload(src, me, m.tag, i, size(src, me, m.tag, i)); !bytes.Equal(b, want) {
					return fmt.Errorf("message %d from %d tag %d: got %d bytes, want %d (or content differs)", i, src, m.tag, len(b), len(want))
				}
			}
		}
		return c.Barrier(ctx)
	}))
}

func testBarrier(t *testing.T, mk factory) {
	for _, p := range suiteSizes {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			comms := mk(t, hostsN(p, 1))
			defer closeAll(comms)
			const rounds = 20
			var entered [rounds]atomic.Int64
			mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
				rng := rand.New(rand.NewPCG(uint64(c.Rank()), 2))
				for i := range rounds {
					if rng.IntN(3) == 0 {
						time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
					}
					entered[i].Add(1)
					if err := c.Barrier(ctx); err != nil {
						return err
					}
					if n := entered[i].Load(); n != int64(p) {
						return fmt.Errorf("round %d: left the barrier with %d of %d ranks entered", i, n, p)
					}
				}
				return nil
			}))
		})
	}
}

func testBcast(t *testing.T, mk factory) {
	for _, p := range suiteSizes {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			comms := mk(t, hostsN(p, 1))
			defer closeAll(comms)
			mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
				for root := range p {
					var in []byte
					want := payload(root, 0, 9, 0, 100*root+1)
					if c.Rank() == root {
						in = slices.Clone(want)
					} else {
						in = []byte("ignored")
					}
					got, err := c.Bcast(ctx, root, in)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, want) {
						return fmt.Errorf("root %d: got %d bytes, want %d", root, len(got), len(want))
					}
				}
				return nil
			}))
		})
	}
}

func testGather(t *testing.T, mk factory) {
	for _, p := range suiteSizes {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			comms := mk(t, hostsN(p, 1))
			defer closeAll(comms)
			mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
				for root := range p {
					got, err := c.Gather(ctx, root, payload(c.Rank(), root, 3, 0, c.Rank()*3))
					if err != nil {
						return err
					}
					if c.Rank() != root {
						if got != nil {
							return fmt.Errorf("root %d: non-root got %d parts", root, len(got))
						}
						continue
					}
					if len(got) != p {
						return fmt.Errorf("root %d: got %d parts", root, len(got))
					}
					for r := range p {
						if !bytes.Equal(got[r], payload(r, root, 3, 0, r*3)) {
							return fmt.Errorf("root %d: part %d wrong", root, r)
						}
					}
				}
				return nil
			}))
		})
	}
}

func testAllgather(t *testing.T, mk factory) {
	for _, p := range suiteSizes {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			comms := mk(t, hostsN(p, 1))
			defer closeAll(comms)
			mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
				for it := range 3 {
					got, err := c.Allgather(ctx, payload(c.Rank(), 0, it, 0, (c.Rank()+it)%5*10))
					if err != nil {
						return err
					}
					if len(got) != p {
						return fmt.Errorf("got %d parts", len(got))
					}
					for r := range p {
						if !bytes.Equal(got[r], payload(r, 0, it, 0, (r+it)%5*10)) {
							return fmt.Errorf("iteration %d: part %d wrong", it, r)
						}
					}
				}
				return nil
			}))
		})
	}
}

// naiveReduce is the reference the tree algorithm is checked against.
func naiveReduce(op Op, in [][]int64) []int64 {
	out := slices.Clone(in[0])
	for i := range out {
		for _, v := range in[1:] {
			a, b := out[i], v[i]
			switch op {
			case OpSum:
				out[i] = a + b
			case OpMin:
				out[i] = min(a, b)
			case OpMax:
				out[i] = max(a, b)
			case OpAnd:
				out[i] = b2i(a != 0 && b != 0)
			case OpOr:
				out[i] = b2i(a != 0 || b != 0)
			}
		}
		if len(in) == 1 && (op == OpAnd || op == OpOr) {
			out[i] = b2i(out[i] != 0)
		}
	}
	return out
}

func testAllreduce(t *testing.T, mk factory) {
	for _, p := range suiteSizes {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			comms := mk(t, hostsN(p, 1))
			defer closeAll(comms)
			inputs := make([][]int64, p)
			for r := range inputs {
				rng := rand.New(rand.NewPCG(uint64(r), 3))
				inputs[r] = make([]int64, 7)
				for i := range inputs[r] {
					inputs[r][i] = rng.Int64N(2000) - 1000
					if i < 2 {
						inputs[r][i] = rng.Int64N(2) // booleans, often false
					}
				}
				inputs[r][6] = 1 // never false: AND stays 1
			}
			mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
				for _, op := range []Op{OpSum, OpMin, OpMax, OpAnd, OpOr} {
					got, err := c.Allreduce(ctx, op, inputs[c.Rank()])
					if err != nil {
						return err
					}
					if want := naiveReduce(op, inputs); !slices.Equal(got, want) {
						return fmt.Errorf("%v: got %v, want %v", op, got, want)
					}
				}
				got, err := c.Allreduce(ctx, OpSum, nil)
				if err != nil || len(got) != 0 {
					return fmt.Errorf("empty allreduce: %v %v", got, err)
				}
				return nil
			}))
		})
	}
}

func testAllreduceMismatch(t *testing.T, mk factory) {
	comms := mk(t, hostsN(4, 1))
	defer closeAll(comms)
	errs := runRanks(t, comms, func(ctx context.Context, c Comm) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.Allreduce(ctx, OpSum, make([]int64, 1+c.Rank()%2))
		return err
	})
	n := 0
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no rank reported the length mismatch: %v", errs)
	}
}

func testSplit(t *testing.T, mk factory) {
	const p = 11
	comms := mk(t, hostsN(p, 1))
	defer closeAll(comms)
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		me := c.Rank()
		color := me % 3
		if me == 10 {
			color = -1 // joins no group
		}
		sub, err := c.Split(ctx, color, -me) // reversed order
		if err != nil {
			return err
		}
		worldLoop := func() error {
			for range 5 {
				got, err := c.Allreduce(ctx, OpSum, []int64{1})
				if err != nil {
					return err
				}
				if got[0] != p {
					return fmt.Errorf("world allreduce got %d", got[0])
				}
				if err := c.Send(ctx, (me+1)%p, 0, []byte{byte(me)}); err != nil {
					return err
				}
				if _, err := c.Recv(ctx, (me+p-1)%p, 0); err != nil {
					return err
				}
			}
			return nil
		}
		if me == 10 {
			if sub != nil {
				return fmt.Errorf("negative color got a communicator")
			}
			if err := worldLoop(); err != nil {
				return err
			}
			return c.Barrier(ctx)
		}
		var members []int
		for r := p - 1; r >= 0; r-- {
			if r%3 == color && r != 10 {
				members = append(members, r)
			}
		}
		if sub.Size() != len(members) || members[sub.Rank()] != me {
			return fmt.Errorf("sub rank %d size %d, want members %v", sub.Rank(), sub.Size(), members)
		}
		for r, old := range members {
			if sub.Host(r) != c.Host(old) {
				return fmt.Errorf("sub host %d = %s, want %s", r, sub.Host(r), c.Host(old))
			}
		}
		// The sub-communicator and its parent run collectives at the same
		// time without mixing messages.
		var wg sync.WaitGroup
		var subErr error
		wg.Go(func() {
			for i := range 5 {
				got, err := sub.Allreduce(ctx, OpSum, []int64{int64(me)})
				if err != nil {
					subErr = err
					return
				}
				var want int64
				for _, m := range members {
					want += int64(m)
				}
				if got[0] != want {
					subErr = fmt.Errorf("sub allreduce %d: got %d want %d", i, got[0], want)
					return
				}
				if err := sub.Send(ctx, (sub.Rank()+1)%sub.Size(), 0, []byte{byte(me)}); err != nil {
					subErr = err
					return
				}
				b, err := sub.Recv(ctx, (sub.Rank()+sub.Size()-1)%sub.Size(), 0)
				if err != nil {
					subErr = err
					return
				}
				if int(b[0]) != members[(sub.Rank()+sub.Size()-1)%sub.Size()] {
					subErr = fmt.Errorf("sub ring got %d", b[0])
					return
				}
			}
		})
		worldErr := worldLoop()
		wg.Wait()
		if worldErr != nil {
			return worldErr
		}
		if subErr != nil {
			return subErr
		}
		// Split of a split, ordered by key with ties by old rank.
		sub2, err := sub.Split(ctx, 0, 0)
		if err != nil {
			return err
		}
		if sub2.Rank() != sub.Rank() || sub2.Size() != sub.Size() {
			return fmt.Errorf("tie keys: rank %d size %d, want %d %d", sub2.Rank(), sub2.Size(), sub.Rank(), sub.Size())
		}
		if err := sub2.Barrier(ctx); err != nil {
			return err
		}
		return c.Barrier(ctx)
	}))
}

func testSplitString(t *testing.T, mk factory) {
	const p = 12
	comms := mk(t, hostsN(p, 4))
	defer closeAll(comms)
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		node, err := c.SplitString(ctx, c.Host(c.Rank()))
		if err != nil {
			return err
		}
		if node.Size() != 4 || node.Rank() != c.Rank()%4 {
			return fmt.Errorf("node comm rank %d size %d", node.Rank(), node.Size())
		}
		for r := range node.Size() {
			if node.Host(r) != c.Host(c.Rank()) {
				return fmt.Errorf("node comm host %d = %s", r, node.Host(r))
			}
		}
		// Leaders (node rank 0) form a communicator, the rest another.
		lead, err := c.SplitString(ctx, fmt.Sprint(node.Rank() == 0))
		if err != nil {
			return err
		}
		sum, err := lead.Allreduce(ctx, OpSum, []int64{int64(c.Rank())})
		if err != nil {
			return err
		}
		if node.Rank() == 0 && (lead.Size() != 3 || sum[0] != 0+4+8) {
			return fmt.Errorf("leaders: size %d sum %d", lead.Size(), sum[0])
		}
		return nil
	}))
}

func testMany(t *testing.T, mk factory, p int) {
	comms := mk(t, hostsN(p, 8))
	defer closeAll(comms)
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		if err := c.Barrier(ctx); err != nil {
			return err
		}
		got, err := c.Allreduce(ctx, OpMax, []int64{int64(c.Rank())})
		if err != nil {
			return err
		}
		if got[0] != int64(p-1) {
			return fmt.Errorf("max %d", got[0])
		}
		all, err := c.Allgather(ctx, []byte{byte(c.Rank())})
		if err != nil {
			return err
		}
		for r, b := range all {
			if b[0] != byte(r) {
				return fmt.Errorf("allgather part %d = %d", r, b[0])
			}
		}
		node, err := c.SplitString(ctx, c.Host(c.Rank()))
		if err != nil {
			return err
		}
		b, err := node.Bcast(ctx, 0, []byte(c.Host(c.Rank())))
		if err != nil {
			return err
		}
		if string(b) != c.Host(c.Rank()) {
			return fmt.Errorf("node bcast got %q", b)
		}
		return c.Barrier(ctx)
	}))
}

func testRecvContext(t *testing.T, mk factory) {
	comms := mk(t, hostsN(2, 1))
	defer closeAll(comms)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := comms[0].Recv(ctx, 1, 5)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("recv with no sender: %v, want deadline exceeded", err)
	}
	// The stream still works afterwards.
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		if c.Rank() == 1 {
			return c.Send(ctx, 0, 5, []byte("late"))
		}
		b, err := c.Recv(ctx, 1, 5)
		if err == nil && string(b) != "late" {
			err = fmt.Errorf("got %q", b)
		}
		return err
	}))
}

func testRecvFromClosed(t *testing.T, mk factory) {
	comms := mk(t, hostsN(2, 1))
	defer closeAll(comms)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := comms[1].Send(ctx, 0, 1, []byte("before close")); err != nil {
		t.Fatal(err)
	}
	if err := comms[1].Close(); err != nil {
		t.Fatal(err)
	}
	b, err := comms[0].Recv(ctx, 1, 1)
	if err != nil || string(b) != "before close" {
		t.Fatalf("queued message: %q %v", b, err)
	}
	_, err = comms[0].Recv(ctx, 1, 1)
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("recv from closed rank: %v, want ErrClosed", err)
	}
	if err := comms[1].Barrier(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("barrier on closed comm: %v, want ErrClosed", err)
	}
}

//go:build scrmpi

package mpicomm

// These tests run as the ranks of an MPI job (mpiexec -n P, P >= 2): every
// rank runs every test in the same order. run_test.go builds this file
// with each MPI and launches it; alone, without SCRGO_MPI_TEST, they skip.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scr-go/scr/comm"
)

func init() { runtime.LockOSThread() } // TestMain runs on the main thread

var (
	wld      *Comm
	provided int
)

func TestMain(m *testing.M) {
	if os.Getenv("SCRGO_MPI_TEST") == "" {
		os.Exit(m.Run())
	}
	level, _ := strconv.Atoi(os.Getenv("SCRGO_MPI_LEVEL"))
	var err error
	if provided, err = InitThread(level); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	eng := NewEngine()
	done := make(chan struct{})
	code := 0
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Loss mode: SCR_COMM_TIMEOUT and the default fatal policy; the
		// exit is logged first, because the launcher's own exit code
		// mixes in the frozen rank's SIGKILL (Hydra reports a signal
		// over any exit code).
		opts := Options{Comm: comm.Options{Exit: func(code int) {
			fmt.Fprintf(os.Stderr, "rank %d exits %d\n", wld.Rank(), code)
			os.Exit(code)
		}}}
		if os.Getenv("SCRGO_MPI_MODE") == "" {
			// Conformance: a loss would be a bug; report it, do not exit.
			// Detection is tested apart: a loaded machine must not trip
			// it here.
			opts.Comm = comm.Options{Timeout: 10 * time.Second,
				OnPeerLost: func(e *comm.PeerLostError) { fmt.Fprintln(os.Stderr, "unexpected loss:", e) }}
		}
		if wld, err = NewWorld(ctx, eng, opts); err != nil {
			fmt.Fprintln(os.Stderr, "NewWorld:", err)
			code = 2
			return
		}
		if mode := os.Getenv("SCRGO_MPI_MODE"); mode != "" {
			if mode == "stream" {
				code = streamHelper()
			} else {
				code = lossHelper(mode)
			}
			return
		}
		code = m.Run()
		if err := wld.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "close:", err)
			code = 1
		}
		if n := StagedBlocks(); n != 0 {
			fmt.Fprintf(os.Stderr, "%d message blocks were not given back\n", n)
			code = 1
		}
	}()
	eng.Serve(done)
	if n := ForeignCalls(); n != 0 {
		fmt.Fprintf(os.Stderr, "%d MPI calls from a thread other than the serving one\n", n)
		code = 1
	}
	if !IsThreadMain() {
		fmt.Fprintln(os.Stderr, "the engine did not serve on MPI's main thread")
		code = 1
	}
	Finalize()
	os.Exit(code)
}

// streamHelper measures the engine's throughput: rank 0 sends 256
// messages of 1 MiB to rank 1 (a redundancy encode's pieces), which
// receives them, three times; it prints MB/s (SCRGO_MPI_MODE=stream, 2
// ranks).
func streamHelper() int {
	ctx := context.Background()
	const n, size = 256, 1 << 20
	msg := make([]byte, size)
	if err := wld.Barrier(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for round := range 3 {
		start := time.Now()
		for i := range n {
			var err error
			switch wld.Rank() {
			case 0:
				err = wld.Send(ctx, 1, 1, msg)
			case 1:
				_, err = wld.Recv(ctx, 0, 1)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, i, err)
				return 1
			}
		}
		if err := wld.Barrier(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if wld.Rank() == 0 {
			secs := time.Since(start).Seconds()
			fmt.Printf("stream round %d: %d x %d bytes in %.3f s = %.0f MB/s\n", round, n, size, secs, float64(n*size)/secs/1e6)
		}
	}
	wld.Close()
	return 0
}

// lossHelper: rank 1 freezes (SIGSTOP: a node that vanished silently) while
// every rank waits in an MPI collective that can never complete. The
// others must end with comm.ExitPeerLost through the heartbeat ring.
func lossHelper(mode string) int {
	ctx := context.Background()
	if err := wld.Barrier(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if wld.Rank() == 1 {
		fmt.Fprintf(os.Stderr, "rank 1 freezes at %d\n", time.Now().UnixMilli())
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
	err := wld.Barrier(ctx) // hangs in MPI; the ring ends the process
	fmt.Fprintln(os.Stderr, "barrier returned:", err)
	return 1
}

func need(t *testing.T) context.Context {
	t.Helper()
	if wld == nil {
		t.Skip("not an MPI rank: run_test.go launches these under mpiexec")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func payload(src, dst, tag, i, size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(src)<<32|uint64(dst), uint64(tag)<<32|uint64(i)))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

func TestWorld(t *testing.T) {
	need(t)
	if s, _ := strconv.Atoi(os.Getenv("SCRGO_MPI_SIZE")); wld.Size() != s {
		t.Fatalf("size %d, launched %d", wld.Size(), s)
	}
	if provided < ThreadFunneled {
		t.Errorf("provided %s", LevelName(provided))
	}
	for r := range wld.Size() {
		if wld.Host(r) == "" {
			t.Errorf("no host for rank %d", r)
		}
	}
}

// Every pair exchanges messages of several sizes on two tags, from
// several goroutines; each stream arrives in order and intact.
func TestSendRecvOrder(t *testing.T) {
	ctx := need(t)
	p, me := wld.Size(), wld.Rank()
	sizes := []int{0, 1, 4095, 1 << 20}
	var wg sync.WaitGroup
	errs := make(chan error, 4*p)
	for _, tag := range []int{3, 7} {
		wg.Go(func() {
			for dst := range p {
				if dst == me {
					continue
				}
				for i, n := range sizes {
					if err := wld.Send(ctx, dst, tag, payload(me, dst, tag, i, n)); err != nil {
						errs <- err
						return
					}
				}
			}
		})
		wg.Go(func() {
			for src := range p {
				if src == me {
					continue
				}
				for i, n := range sizes {
					b, err := wld.Recv(ctx, src, tag)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(b, payload(src, me, tag, i, n)) {
						errs <- fmt.Errorf("message %d from %d tag %d: %d bytes, wrong content or order", i, src, tag, len(b))
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSendOwnedLarge(t *testing.T) {
	ctx := need(t)
	const n = 64 << 20
	switch wld.Rank() {
	case 0:
		if err := comm.SendOwned(ctx, wld, 1, 9, payload(0, 1, 9, 0, n)); err != nil {
			t.Fatal(err)
		}
	case 1:
		b, err := wld.Recv(ctx, 0, 9)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, payload(0, 1, 9, 0, n)) {
			t.Fatalf("64 MiB message corrupted (%d bytes)", len(b))
		}
	}
	if err := wld.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOwnedInPlace: pieces from comm's arena go to MPI without staging
// and arrive in arena buffers (no copy on either side), intact, around a
// ring and in both directions at once; every buffer comes back.
func TestOwnedInPlace(t *testing.T) {
	ctx := need(t)
	const piece, rounds = 1 << 20, 8
	me, n := wld.Rank(), wld.Size()
	right, left := (me+1)%n, (me-1+n)%n
	errc := make(chan error, 1)
	go func() {
		for i := range rounds {
			b := comm.Buffer(piece)
			if !comm.Unmanaged(b) {
				errc <- fmt.Errorf("a %d-byte buffer is not from the arena", piece)
				return
			}
			copy(b, payload(me, right, 12, i, piece))
			if err := comm.SendOwned(ctx, wld, right, 12, b); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := range rounds {
		b, err := wld.Recv(ctx, left, 12)
		if err != nil {
			t.Fatal(err)
		}
		if !comm.Unmanaged(b) {
			t.Fatalf("message %d was copied out of a staging block instead of received in place", i)
		}
		if !bytes.Equal(b, payload(left, me, 12, i, piece)) {
			t.Fatalf("message %d from rank %d corrupted", i, left)
		}
		comm.Release(b)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := wld.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBcast(t *testing.T) {
	ctx := need(t)
	for root := range wld.Size() {
		for _, n := range []int{0, 1, bcastInline - 8, bcastInline - 7, 100000} {
			var in []byte
			if wld.Rank() == root {
				in = payload(root, 0, n, 1, n)
			}
			got, err := wld.Bcast(ctx, root, in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload(root, 0, n, 1, n)) {
				t.Errorf("bcast of %d bytes from %d: got %d bytes, wrong", n, root, len(got))
			}
		}
	}
}

func TestGatherAllgather(t *testing.T) {
	ctx := need(t)
	me, p := wld.Rank(), wld.Size()
	mine := payload(me, 0, 5, 0, me*1000) // rank 0 sends nothing
	for root := range p {
		got, err := wld.Gather(ctx, root, mine)
		if err != nil {
			t.Fatal(err)
		}
		if me != root {
			if got != nil {
				t.Errorf("gather to %d: rank %d got data", root, me)
			}
			continue
		}
		for r := range p {
			if !bytes.Equal(got[r], payload(r, 0, 5, 0, r*1000)) {
				t.Errorf("gather to %d: part of rank %d wrong", root, r)
			}
		}
	}
	got, err := wld.Allgather(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	for r := range p {
		if !bytes.Equal(got[r], payload(r, 0, 5, 0, r*1000)) {
			t.Errorf("allgather: part of rank %d wrong", r)
		}
	}
}

func TestAllreduce(t *testing.T) {
	ctx := need(t)
	me, p := wld.Rank(), wld.Size()
	val := func(r, i int) int64 { return int64((r*7+i*13)%11 - 5) }
	for _, op := range []comm.Op{comm.OpSum, comm.OpMin, comm.OpMax, comm.OpAnd, comm.OpOr} {
		in := make([]int64, 6)
		for i := range in {
			in[i] = val(me, i)
		}
		got, err := wld.Allreduce(ctx, op, in)
		if err != nil {
			t.Fatal(err)
		}
		for i := range in {
			want := val(0, i)
			if op == comm.OpAnd || op == comm.OpOr {
				want = b2i(want != 0)
			}
			for r := 1; r < p; r++ {
				v := val(r, i)
				switch op {
				case comm.OpSum:
					want += v
				case comm.OpMin:
					want = min(want, v)
				case comm.OpMax:
					want = max(want, v)
				case comm.OpAnd:
					want = b2i(want != 0 && v != 0)
				case comm.OpOr:
					want = b2i(want != 0 || v != 0)
				}
			}
			if got[i] != want {
				t.Errorf("%v element %d: got %d, want %d", op, i, got[i], want)
			}
		}
	}
	// A length mismatch is an error on every rank, not a hang or a crash.
	if _, err := wld.Allreduce(ctx, comm.OpSum, make([]int64, 1+me%2)); err == nil {
		t.Error("allreduce with mismatched lengths succeeded")
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestSplit(t *testing.T) {
	ctx := need(t)
	me, p := wld.Rank(), wld.Size()
	color := me % 2
	if me == p-1 && p > 2 {
		color = -1 // joins no group
	}
	sub, err := wld.Split(ctx, color, -me) // reverse order
	if err != nil {
		t.Fatal(err)
	}
	if color < 0 {
		if sub != nil {
			t.Fatal("a negative color gave a communicator")
		}
	} else {
		var members []int
		for r := p - 1; r >= 0; r-- {
			if r%2 == color && !(r == p-1 && p > 2) {
				members = append(members, r)
			}
		}
		if sub.Size() != len(members) || members[sub.Rank()] != me {
			t.Fatalf("sub size %d rank %d, want members %v", sub.Size(), sub.Rank(), members)
		}
		for i, r := range members {
			if sub.Host(i) != wld.Host(r) {
				t.Errorf("host of sub rank %d = %q, want %q", i, sub.Host(i), wld.Host(r))
			}
		}
		// The child and its parent work at the same time.
		var wg sync.WaitGroup
		var subSum []int64
		var subErr error
		wg.Go(func() { subSum, subErr = sub.Allreduce(ctx, comm.OpSum, []int64{int64(me)}) })
		if err := wld.Barrier(ctx); err != nil {
			t.Error(err)
		}
		wg.Wait()
		var want int64
		for _, r := range members {
			want += int64(r)
		}
		if subErr != nil || subSum[0] != want {
			t.Errorf("sub allreduce = %v, %v; want %d", subSum, subErr, want)
		}
	}
	if color < 0 {
		if err := wld.Barrier(ctx); err != nil {
			t.Error(err)
		}
	}
	byNode, err := wld.SplitString(ctx, fmt.Sprintf("node%d", me/2))
	if err != nil {
		t.Fatal(err)
	}
	if want := min(2, p-me/2*2); byNode.Size() != want || byNode.Rank() != me%2 {
		t.Errorf("split by node: size %d rank %d, want %d and %d", byNode.Size(), byNode.Rank(), want, me%2)
	}
	if err := byNode.Close(); err != nil {
		t.Error(err)
	}
	if err := byNode.Barrier(ctx); !errors.Is(err, comm.ErrClosed) {
		t.Errorf("barrier on a closed communicator: %v", err)
	}
	// A closed child leaves its parent: the world's drain at Close walks
	// the children, and MPI aborts on a freed handle (it did, after a
	// flush's communicator was closed before SCR_Finalize).
	wld.mu.Lock()
	stale := slices.ContainsFunc(wld.children, func(k *Comm) bool { return comm.Comm(k) == byNode })
	wld.mu.Unlock()
	if stale {
		t.Error("a closed communicator is still among the world's children")
	}
	if sub != nil {
		if err := sub.Close(); err != nil {
			t.Error(err)
		}
	}
	wld.drain() // would abort the job if it met a freed handle
	if err := wld.Barrier(ctx); err != nil {
		t.Error(err)
	}
}

// A receive that gives up on its context withdraws: the message sent
// later goes to the next receive.
func TestRecvContext(t *testing.T) {
	ctx := need(t)
	if wld.Rank() == 0 {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := wld.Recv(short, 1, 11)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("recv with nothing sent: %v", err)
		}
	}
	if err := wld.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	switch wld.Rank() {
	case 1:
		if err := wld.Send(ctx, 0, 11, []byte("late")); err != nil {
			t.Fatal(err)
		}
	case 0:
		b, err := wld.Recv(ctx, 1, 11)
		if err != nil || string(b) != "late" {
			t.Fatalf("recv after a withdrawn one: %q, %v", b, err)
		}
	}
	if _, err := wld.Recv(ctx, 0, wld.w.tagUB+1); err == nil {
		t.Error("a tag above MPI_TAG_UB was accepted")
	}
}

// Many small collectives from several goroutines on several children: the
// engine keeps them apart and in order.
func TestMany(t *testing.T) {
	ctx := need(t)
	var subs []comm.Comm
	for range 4 {
		s, err := wld.Split(ctx, 0, wld.Rank())
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, s := range subs {
		wg.Go(func() {
			for j := range 200 {
				v, err := s.Allreduce(ctx, comm.OpMax, []int64{int64(s.Rank() + j)})
				if err != nil {
					errs[i] = err
					return
				}
				if v[0] != int64(s.Size()-1+j) {
					errs[i] = fmt.Errorf("sub %d round %d: max %d", i, j, v[0])
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		return
	}
	if err := wld.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
}

// Messages nobody receives: Send returns once they are posted (a large one
// does not wait for a receive that never comes), and Close drains them, so
// MPI_Finalize at the end of this test binary does not hang on them.
func TestUnmatchedSends(t *testing.T) {
	ctx := need(t)
	if wld.Rank() == 0 {
		for _, n := range []int{10, 8 << 20} {
			if err := wld.Send(ctx, 1, 13, make([]byte, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := wld.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
}

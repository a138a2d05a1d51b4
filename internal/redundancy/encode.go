package redundancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/scr-go/scr/comm"
)

// Tags of the messages on a set communicator (Group.Comm is private to
// this package: do not send on it).
const (
	tagData = 1 + iota // pieces of data, file lists
	tagAck             // flow control (rebuild)
)

// shiftBy sends data to rank (me+dist) mod n and receives from rank
// (me-dist) mod n: every rank of c calls it with the same dist. Ranks are
// ordered by their position in the cycle of the permutation, alternating
// send-first and receive-first, so the exchange completes even over a
// transport whose Send waits for the receiver.
func shiftBy(ctx context.Context, c comm.Comm, dist int, data []byte) ([]byte, error) {
	return shiftSend(ctx, c, dist, data, c.Send)
}

// shiftOwned is shiftBy(ctx, c, 1, data) for a caller that gives data up
// (see sendOwned); the buffer returned is the caller's.
func shiftOwned(ctx context.Context, c comm.Comm, data []byte) ([]byte, error) {
	return shiftSend(ctx, c, 1, data, func(ctx context.Context, dst, tag int, b []byte) error {
		return sendOwned(ctx, c, dst, tag, b)
	})
}

func shiftSend(ctx context.Context, c comm.Comm, dist int, data []byte, send func(context.Context, int, int, []byte) error) ([]byte, error) {
	n, me := c.Size(), c.Rank()
	step := ((dist % n) + n) % n
	to, from := (me+step)%n, (me-step+n)%n
	// position of me in its cycle, walking from the cycle's lowest rank
	g := gcd(n, step)
	j, at := 0, me%g
	for at != me {
		at = (at + step) % n
		j++
	}
	if j%2 == 0 {
		if err := send(ctx, to, tagData, data); err != nil {
			return nil, err
		}
		return c.Recv(ctx, from, tagData)
	}
	in, err := c.Recv(ctx, from, tagData)
	if err != nil {
		return nil, err
	}
	return in, send(ctx, to, tagData, data)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// leftCopies is how many left neighbours' file lists each header keeps:
// enough that any loss the scheme tolerates leaves a copy of every list.
func leftCopies(s Scheme, n int) int {
	if n < 2 {
		return 0
	}
	return max(1, min(s.k(), n-1))
}

// EncodeError says that Encode failed: on how many ranks, the lowest of
// them, and this rank's own cause (nil when this rank did its part).
type EncodeError struct {
	Failed int   // ranks that failed
	First  int   // lowest failed world rank
	Err    error // this rank's error, if it failed
}

func (e *EncodeError) Error() string {
	s := fmt.Sprintf("redundancy: encode failed on %d rank(s), first rank %d", e.Failed, e.First)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	} else {
		s += " (see that rank's error)"
	}
	return s + "; the dataset has no usable redundancy"
}

func (e *EncodeError) Unwrap() error { return e.Err }

// localErr keeps the first local failure. A rank that fails locally still
// takes part in every message of the protocol (sending zeros), so that no
// peer waits forever; the failure is agreed on at the end.
type localErr struct{ err error }

func (l *localErr) set(err error) {
	if err != nil && l.err == nil {
		l.err = err
	}
}

// agree is collective over world: it returns nil when no rank failed, else
// an *EncodeError seen identically (but for Err) by every rank.
func agree(ctx context.Context, world comm.Comm, local error) error {
	failed, first := int64(0), int64(math.MaxInt64)
	if local != nil {
		failed, first = 1, int64(world.Rank())
	}
	n, err := world.Allreduce(ctx, comm.OpSum, []int64{failed})
	if err != nil {
		return fmt.Errorf("redundancy: rank %d: agreeing on the outcome: %w", world.Rank(), err)
	}
	if n[0] == 0 {
		return nil
	}
	f, err := world.Allreduce(ctx, comm.OpMin, []int64{first})
	if err != nil {
		return fmt.Errorf("redundancy: rank %d: agreeing on the outcome: %w", world.Rank(), err)
	}
	return &EncodeError{Failed: int(n[0]), First: int(f[0]), Err: local}
}

// Encode protects this rank's files of one dataset: collective over
// g.World (every rank calls it, with the same scheme). files lists the
// rank's files, relative to dir, in a fixed order; dir is the rank's
// directory of the dataset. Encode writes StateFile "encoding", then
// DataFile (header with this rank's and its left neighbour's file list,
// then the scheme's payload), then, once every rank has succeeded,
// StateFile "encoded". Every rank returns nil, or every rank returns an
// error (an *EncodeError when a rank failed locally).
func Encode(ctx context.Context, g *Group, s Scheme, files []FileInfo, dir string) error {
	return encode(ctx, g, s, files, RankDirs(dir), nil)
}

// Abstain is Encode for a rank that cannot describe its files (cause says
// why): it takes part in every message, so no peer waits for it, and the
// encode fails on every rank with an *EncodeError naming this rank (whose
// Err wraps cause). No rank's state becomes "encoded".
func Abstain(ctx context.Context, g *Group, s Scheme, dir string, cause error) error {
	if cause == nil {
		cause = errors.New("rank abstained")
	}
	return encode(ctx, g, s, nil, RankDirs(dir), cause)
}

func encode(ctx context.Context, g *Group, s Scheme, files []FileInfo, dir Dirs, cause error) error {
	n := len(g.Set.Ranks)
	if err := g.check(s); err != nil {
		return err
	}
	var le localErr
	le.set(cause)
	for _, f := range files {
		le.set(checkName(f.Name)) // and take part anyway: nobody waits for us
	}
	le.set(writeState(dir.Meta, stateEncoding))
	self := toDesc(g.World.Rank(), files)
	total := totalSize(files)
	lf, err := openLogical(dir.Data, files, false)
	le.set(err)
	if lf == nil {
		lf = &logical{total: total} // reads give zeros
	}
	defer lf.close()

	h := &header{Version: formatVersion, Scheme: s.Type.String(), Failures: s.k(), Set: g.Set.ID,
		Members: g.Set.Ranks, Index: g.Index, Self: self}
	var left desc
	var chunk int64
	js, _ := json.Marshal(self)
	for d := 1; d <= leftCopies(s, n); d++ {
		in, err := shiftBy(ctx, g.Comm, d, js)
		if err != nil {
			return commErr(g, "sending file lists", err)
		}
		var l desc
		if err := json.Unmarshal(in, &l); err != nil {
			le.set(fmt.Errorf("redundancy: rank %d: file list from left neighbour %d: %w", g.World.Rank(), d, err))
		}
		h.Lefts = append(h.Lefts, l)
	}
	if len(h.Lefts) > 0 {
		left = h.Lefts[0]
	}
	if n > 1 {
		if s.Type != Single {
			mx, err := g.Comm.Allreduce(ctx, comm.OpMax, []int64{total})
			if err != nil {
				return commErr(g, "agreeing on the chunk size", err)
			}
			chunk = mx[0]
		}
	}
	var kern kernel
	switch s.Type {
	case Partner:
		h.Segments, h.SegSize = 1, totalSize(left.infos())
	case XOR, RS:
		d := int64(n - s.k())
		chunk = (chunk + d - 1) / d
		h.Chunk, h.Segments, h.SegSize = chunk, s.k(), chunk
		kern = xorKernel{}
		if s.Type == RS {
			e := rsMatrix(n, s.k())
			if kern, err = newMadd(e[n-s.k():]); err != nil {
				return err
			}
		}
	}
	w, err := createRed(dir.Meta, h)
	le.set(err)
	var out func(seg int, b []byte)
	if w != nil {
		out = func(seg int, b []byte) { le.set(w.write(seg, b)) }
	} else {
		out = func(int, []byte) {}
	}
	switch s.Type {
	case Partner:
		err = partnerEncode(ctx, g, s.buf(), lf, h.SegSize, out, &le)
	case XOR, RS:
		err = rowsEncode(ctx, g, s.k(), kern, lf, chunk, s.buf(), out, &le)
	}
	if err != nil {
		if w != nil {
			w.abort()
		}
		return commErr(g, "encoding", err)
	}
	if w != nil {
		if le.err == nil {
			le.set(w.finish())
		} else {
			w.abort()
		}
	}
	if err := agree(ctx, g.World, le.err); err != nil {
		return err
	}
	if err := writeState(dir.Meta, stateEncoded); err != nil {
		return fmt.Errorf("redundancy: rank %d: %w", g.World.Rank(), err)
	}
	return nil
}

func commErr(g *Group, what string, err error) error {
	return fmt.Errorf("redundancy: rank %d (set %d): %s: %w", g.World.Rank(), g.Set.ID, what, err)
}

var errProtocol = errors.New("redundancy: protocol error: message of unexpected size (ranks disagree on the scheme or the data)")

// rowsEncode is XOR and RS encoding: a pipelined ring reduce-scatter.
//
// Every member's logical file is cut into n-k chunks of C bytes; there are n
// rows; in row p, members p..p+k-1 hold parity t = 0..k-1 and members
// p+k..p+n-1 contribute their chunk 0..n-k-1 as data shard 0..n-k-1. At
// stage s every member adds its chunk s into the k running parities of its
// row p = i-k-s and passes them right; in the last k stages each member
// takes one finished parity out of what it received and passes the rest on.
// All of this is done piece by piece (buf bytes of each chunk at a time), so
// each file byte is read once, each parity byte written once, and a member
// holds only a few pieces in memory.
//
// Pieces are pipelined: a member takes pipeDepth consecutive pieces through
// each stage before the next stage, so what it receives at stage s was sent
// by its left neighbour pipeDepth items earlier, while this member worked on
// the other pieces: the transfer overlaps work instead of every stage
// waiting for a message sent just before. This relies on Send not waiting
// for the receiver (comm's contract; the receiver queues).
func rowsEncode(ctx context.Context, g *Group, k int, kern kernel, lf *logical, C int64, buf int, out func(int, []byte), le *localErr) (err error) {
	n, c := len(g.Set.Ranks), g.Comm
	// Sends go through an outbox: the right neighbour takes a piece only
	// pipeDepth items after it was sent, so a Send waiting for its
	// receiver must not hold this member up (a queue longer than
	// pipeDepth never fills for good: see doc/redundancy.md).
	ob := newOutboxes(ctx, c, pipeDepth+1)
	defer func() {
		if cerr := ob.close(err == nil); err == nil {
			err = cerr
		}
	}()
	right, left := (g.Index+1)%n, (g.Index-1+n)%n
	tmp := lf.scratch(buf) // pread target when files are not all mapped
	defer putPiece(tmp)
	parts, sub := make([][]byte, k), make([][]byte, k)
	_, isXOR := kern.(xorKernel)
	// The head of a row sends its chunk as it is, and the next member
	// makes the k running parities of it: XOR's parity of one chunk is
	// the chunk, and RS with two data stages or more moves one piece
	// instead of k on that hop (2B instead of 2.5B per member with k=2
	// in sets of 4). With a single data stage the next member holds
	// parity and only passes the parities on, so the head makes them.
	rawHead := isXOR || n-k >= 2
	// item does stage s of the piece at offset o (m bytes of each chunk):
	// it receives what the left neighbour made of it at stage s-1, adds
	// this member's share and sends the result on (the buffers are owned:
	// received, or fresh at stage 0, and given up by the send, so no piece
	// is copied between ranks).
	item := func(s int, o int64, m int) error {
		var in []byte
		if s > 0 {
			if s < n-k && tmp != nil {
				// Read this rank's chunk s first: the message may still be
				// on its way.
				le.set(lf.readAt(tmp[:m], int64(s)*C+o))
			}
			var err error
			if in, err = c.Recv(ctx, left, tagData); err != nil {
				return err
			}
		}
		var send []byte
		switch {
		case s == 0 && rawHead:
			send = getPiece(m)
			le.set(lf.readAt(send, o))
		case s < n-k:
			acc := in
			switch {
			case s == 0:
				acc = getPiece(k * m)
				clear(acc)
				if tmp != nil {
					le.set(lf.readAt(tmp[:m], o))
				}
			case s == 1 && rawHead && !isXOR:
				// The head's chunk: shard 0 of the row.
				if len(in) != m {
					return errProtocol
				}
				acc = getPiece(k * m)
				clear(acc)
				for j := range k {
					parts[j] = slot(acc, k-1-j, m)
				}
				le.set(kern.add(in, 0, parts))
				putPiece(in)
			case len(in) != k*m:
				return errProtocol
			}
			for j := range k {
				parts[j] = slot(acc, k-1-j, m)
			}
			if tmp != nil {
				le.set(kern.add(tmp[:m], s, parts))
			} else {
				le.set(lf.addAt(int64(s)*C+o, m, nil, func(lo int, src []byte) error {
					for j := range k {
						sub[j] = parts[j][lo : lo+len(src)]
					}
					return kern.add(src, s, sub)
				}))
			}
			send = acc
		default:
			// Parity j travels in slot k-1-j: the finished parity t is
			// the last slot, and what goes on is a prefix of the buffer,
			// which keeps the buffer's whole capacity for reuse.
			t := s - (n - k)
			if len(in) != (k-t)*m {
				return errProtocol
			}
			out(t, slot(in, k-1-t, m))
			if t == k-1 {
				putPiece(in)
				return nil
			}
			send = in[:(k-1-t)*m]
		}
		return ob.send(right, send)
	}
	step, depth := int64(buf), int64(pipeDepth)
	for o0 := int64(0); o0 < C; o0 += depth * step {
		for s := range n {
			for o := o0; o < min(C, o0+depth*step); o += step {
				if err := item(s, o, int(min(step, C-o))); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// slot is the i-th of the m-byte parts of b.
func slot(b []byte, i, m int) []byte { return b[i*m : (i+1)*m] }

// pipeDepth is how many pieces go through a stage of the encode before the
// next stage (see rowsEncode).
const pipeDepth = 2

// partnerEncode sends every member's logical file to its right neighbour,
// piece by piece; leftSize is the left neighbour's total.
func partnerEncode(ctx context.Context, g *Group, buf int, lf *logical, leftSize int64, out func(int, []byte), le *localErr) error {
	mx, err := g.Comm.Allreduce(ctx, comm.OpMax, []int64{lf.total})
	if err != nil {
		return err
	}
	for o := int64(0); o < mx[0]; o += int64(buf) {
		mine := getPiece(int(max(0, min(int64(buf), lf.total-o))))
		le.set(lf.readAt(mine, o))
		in, err := shiftOwned(ctx, g.Comm, mine)
		if err != nil {
			return err
		}
		if int64(len(in)) != max(0, min(int64(buf), leftSize-o)) {
			return errProtocol
		}
		if len(in) > 0 {
			out(0, in)
		}
		putPiece(in)
	}
	return nil
}

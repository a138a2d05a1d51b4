package redundancy

import (
	"context"

	"github.com/scr-go/scr/comm"
)

// Piece buffers move between ranks by ownership: a rank fills a buffer,
// hands it to comm.SendOwned and never touches it again; the receiver owns
// what Recv returns and, once done with it, gives it back (comm.Release).
// Over the in-process transport a piece therefore crosses from rank to rank
// without a copy; over TCP, buffers circulate between the pieces a rank
// sends and those it receives, so memory is not faulted in afresh for
// every piece.

// getPiece returns a buffer of n bytes (contents undefined) that the caller
// owns.
func getPiece(n int) []byte { return comm.Buffer(n) }

// putPiece gives b back: the caller holds no other reference to b's memory
// (nor to any slice sharing it: send sub-slices with their capacity cut,
// b[i:j:j]).
func putPiece(b []byte) { comm.Release(b) }

// sendOwned sends b, which the caller gives up.
func sendOwned(ctx context.Context, c comm.Comm, dst, tag int, b []byte) error {
	return comm.SendOwned(ctx, c, dst, tag, b)
}

// Reserve maps and touches, ahead of the first encode, the piece buffers
// an encode of s keeps in flight, so the first checkpoint of a run does not
// pay for fresh memory on its critical path (on the virtual machines
// measured, the first access of a page costs as much as copying several;
// see comm.Reserve and doc/performance.md). The counts are what the first encode of a 4-member
// set takes from comm.Buffer (counted per class): the pipeline's pieces in
// this member's hands, its outbox and the neighbour's receive queue
// (3*pipeDepth+2 of k pieces), plus the read buffer and short last pieces.
// Memory kept this way is bounded by comm's free lists (32 MiB).
func Reserve(s Scheme) {
	buf := s.buf()
	switch s.Type {
	case XOR:
		comm.Reserve(buf, 3*pipeDepth+6)
	case RS:
		comm.Reserve(s.k()*buf, 3*pipeDepth+2)
		comm.Reserve(buf, 3)
	case Partner:
		comm.Reserve(buf, 4)
	}
}

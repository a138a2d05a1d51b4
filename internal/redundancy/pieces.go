package redundancy

import (
	"context"
	"sync"

	"github.com/scr-go/scr/comm"
)

// Piece buffers move between ranks by ownership: a rank fills a buffer,
// hands it to comm.SendOwned and never touches it again; the receiver owns
// what Recv returns and, once done with it, gives it back to the pool. Over
// the in-process transport a piece therefore crosses from rank to rank
// without a copy and circulates instead of being allocated per message;
// over TCP, received buffers are recycled the same way.
var piecePool sync.Pool // of *[]byte

// getPiece returns a buffer of n bytes (contents undefined) that the caller
// owns.
func getPiece(n int) []byte {
	if p, ok := piecePool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n)
}

// putPiece gives b back: the caller holds no other reference to b's memory
// (nor to any slice sharing it: send sub-slices with their capacity cut,
// b[i:j:j]).
func putPiece(b []byte) {
	if cap(b) < 4<<10 {
		return // not worth keeping
	}
	piecePool.Put(&b)
}

// sendOwned sends b, which the caller gives up.
func sendOwned(ctx context.Context, c comm.Comm, dst, tag int, b []byte) error {
	return comm.SendOwned(ctx, c, dst, tag, b)
}

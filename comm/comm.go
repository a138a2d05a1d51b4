// Package comm is the communicator of scr-go: a fixed group of ranks that can
// exchange messages and run collectives, without MPI.
//
// Ranks of a parallel job find each other through the launcher (PMI-1 on
// PMI_FD/PMI_PORT as served by srun --mpi=pmi2, flux run and hydra, or a
// rendezvous directory for launchers without PMI) and then talk over TCP.
// Tests and single-process programs use NewLocal, which runs every rank as a
// goroutine in one process.
//
// Rules every implementation keeps:
//   - Collectives are called by every rank of the communicator, in the same
//     order, with compatible arguments.
//   - Every blocking call takes a context and returns its error when the
//     context ends; no call blocks forever.
//   - When a peer is lost (its process died or its node vanished), blocking
//     calls return an error that wraps ErrPeerLost (see PeerLostError).
//   - A Comm is used by one goroutine at a time; sub-communicators from Split
//     may be used concurrently with their parent.
//
// Lifecycle of a launched process: FromEnv (collective: every rank calls it;
// it returns once every rank is up), then any calls, then Close of the world
// communicator before the process exits. A process that exits without Close
// looks like a lost peer to the ranks still running. Unless
// Options.OnPeerLost is set, a lost peer ends the process with ExitPeerLost
// (the fatal policy, see doc/comm.md); tests simulate losses with
// LocalGroup.Kill.
package comm

import (
	"context"
	"errors"
	"fmt"
)

// Op is a reduction operator for Allreduce.
type Op int

const (
	OpSum Op = iota // sum of the values
	OpMin           // minimum
	OpMax           // maximum
	OpAnd           // logical AND: nonzero is true; result 1 or 0
	OpOr            // logical OR: nonzero is true; result 1 or 0
)

func (o Op) String() string {
	switch o {
	case OpSum:
		return "sum"
	case OpMin:
		return "min"
	case OpMax:
		return "max"
	case OpAnd:
		return "and"
	case OpOr:
		return "or"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Comm is a communicator: Size ranks numbered 0..Size-1.
type Comm interface {
	// Rank is this process's rank in the communicator.
	Rank() int
	// Size is the number of ranks.
	Size() int

	// Send delivers data to rank dst with the given tag. Messages between
	// one pair of ranks with one tag arrive in order. Send may return
	// before the receiver has received the data; data may be reused once
	// Send returns. Large buffers are sent in pipelined pieces.
	Send(ctx context.Context, dst, tag int, data []byte) error
	// Recv receives the next message from rank src with the given tag.
	Recv(ctx context.Context, src, tag int) ([]byte, error)

	// Barrier returns once every rank has entered it.
	Barrier(ctx context.Context) error
	// Bcast returns root's data on every rank (data is ignored elsewhere).
	Bcast(ctx context.Context, root int, data []byte) ([]byte, error)
	// Gather returns, on root only, every rank's data indexed by rank;
	// other ranks get nil.
	Gather(ctx context.Context, root int, data []byte) ([][]byte, error)
	// Allgather returns every rank's data, indexed by rank, on every rank.
	Allgather(ctx context.Context, data []byte) ([][]byte, error)
	// Allreduce combines vals element-wise over all ranks with op. Every
	// rank passes the same number of values.
	Allreduce(ctx context.Context, op Op, vals []int64) ([]int64, error)

	// Split partitions the ranks by color; ranks with one color form a new
	// communicator ordered by (key, old rank). A negative color returns a
	// nil Comm (the rank joins no group).
	Split(ctx context.Context, color, key int) (Comm, error)
	// SplitString is Split with a string color (e.g. a hostname); ranks
	// are ordered by their old rank.
	SplitString(ctx context.Context, color string) (Comm, error)

	// Host is the node identity that rank r reported at start-up (for
	// messages and failure-group formation).
	Host(r int) string

	// Close releases the communicator's resources. Sub-communicators are
	// closed with their parent.
	Close() error
}

// ErrPeerLost is wrapped by every error caused by a lost peer.
var ErrPeerLost = errors.New("peer lost")

// PeerLostError says which peer was lost and how it was noticed.
type PeerLostError struct {
	Rank   int    // rank in the world communicator
	Host   string // host the rank reported
	Reason string // e.g. "no heartbeat for 3s", "connection reset"
}

func (e *PeerLostError) Error() string {
	return fmt.Sprintf("lost rank %d on %s: %s", e.Rank, e.Host, e.Reason)
}

func (e *PeerLostError) Unwrap() error { return ErrPeerLost }

// ExitPeerLost is the exit code of a process ended by the default fatal
// policy on a lost peer (EX_TEMPFAIL: the job can be relaunched). scr_run
// and job scripts can tell it apart from an application's own failure.
const ExitPeerLost = 75

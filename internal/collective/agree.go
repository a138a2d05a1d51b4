// Package collective has the one collective the library and internal/flush
// use to turn per-rank errors into one outcome on every rank.
package collective

import (
	"context"
	"fmt"

	"github.com/scr-go/scr/comm"
)

// maxCause bounds the cause sent to every rank.
const maxCause = 2048

// Failure is what every rank learns when some rank failed.
type Failure struct {
	Failed int    // how many ranks failed
	First  int    // the lowest failing rank
	Cause  string // its error message
}

func (f *Failure) Error() string {
	return fmt.Sprintf("failed on %d rank(s); rank %d: %s", f.Failed, f.First, f.Cause)
}

// Agree is collective over c: nil when no rank had a local error, else a
// *Failure identical on every rank, carrying the lowest failing rank's
// message. So whichever rank reports first (a launcher that kills the
// job when the first rank exits, srun -K, prints only that rank), the
// cause is in its message. The success path costs one allreduce; a
// failure one more allreduce and a broadcast.
func Agree(ctx context.Context, c comm.Comm, local error) (*Failure, error) {
	failed := int64(0)
	if local != nil {
		failed = 1
	}
	n, err := c.Allreduce(ctx, comm.OpSum, []int64{failed})
	if err != nil {
		return nil, err
	}
	if n[0] == 0 {
		return nil, nil
	}
	return Cause(ctx, c, int(n[0]), local)
}

// Cause is the failure half of Agree, for callers that already counted
// the failed ranks (failed > 0) with a collective of their own: every
// rank calls it, and gets the lowest failing rank's message.
func Cause(ctx context.Context, c comm.Comm, failed int, local error) (*Failure, error) {
	mine := int64(c.Size())
	if local != nil {
		mine = int64(c.Rank())
	}
	m, err := c.Allreduce(ctx, comm.OpMin, []int64{mine})
	if err != nil {
		return nil, err
	}
	first := int(m[0])
	var msg []byte
	if c.Rank() == first {
		msg = []byte(local.Error())
		if len(msg) > maxCause {
			msg = append(msg[:maxCause], "..."...)
		}
	}
	msg, err = c.Bcast(ctx, first, msg)
	if err != nil {
		return nil, err
	}
	return &Failure{Failed: failed, First: first, Cause: string(msg)}, nil
}

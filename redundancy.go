package scr

import (
	"context"
	"errors"
	"fmt"

	"github.com/scr-go/scr/comm"
)

// ErrUnrecoverable: a dataset lost more than its redundancy can rebuild.
var ErrUnrecoverable = errors.New("scr: dataset cannot be rebuilt")

// codecSpec says how one dataset is protected.
type codecSpec struct {
	Scheme   string // SINGLE, PARTNER, XOR, RS
	SetSize  int    // minimum ranks per redundancy set
	Failures int    // RS: lost members tolerated per set
	Group    string // failure group: NODE, WORLD or a GROUPS name
	BufSize  int    // piece size for transfers
	Dataset  int    // dataset id (for messages)
}

// codec is what the library needs from a redundancy scheme. Every rank of
// world calls each method (collective). Files are paths relative to the
// rank's directory in the dataset; the codec keeps its own data below
// <rankDir>/.scr/. Rebuild is called after migration: lost says whether
// this rank's directory is missing or damaged (it is then empty); on
// success the codec has restored every listed file of every lost rank,
// filemap included. Rebuild returns an error wrapping ErrUnrecoverable,
// identical on every rank, when some set lost too much.
type codec interface {
	Encode(ctx context.Context, world comm.Comm, spec codecSpec, rankDir string, files []string) error
	Rebuild(ctx context.Context, world comm.Comm, spec codecSpec, rankDir string, lost bool) (sets int, err error)
}

// codecFor returns the codec of a scheme.
func (h *Handle) codecFor(scheme string) (codec, error) {
	switch scheme {
	case "SINGLE":
		return singleCodec{}, nil
	}
	return h.redundancyCodec(scheme)
}

// singleCodec keeps one copy: nothing to encode, and a dataset survives
// only if no rank lost its files.
type singleCodec struct{}

func (singleCodec) Encode(context.Context, comm.Comm, codecSpec, string, []string) error {
	return nil
}

func (singleCodec) Rebuild(ctx context.Context, world comm.Comm, spec codecSpec, _ string, lost bool) (int, error) {
	n, err := world.Allreduce(ctx, comm.OpSum, []int64{b2i(lost)})
	if err != nil {
		return 0, err
	}
	if n[0] > 0 {
		return 0, fmt.Errorf("dataset %d: %d rank(s) lost their files and SINGLE keeps no redundancy: %w", spec.Dataset, n[0], ErrUnrecoverable)
	}
	return 0, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

package main

import (
	"context"

	"github.com/scr-go/scr/comm"
)

// bootstrap returns the world communicator of this launched process:
// PMI-1, a rendezvous directory, or a singleton (comm.FromEnv). A lost
// peer ends the process with exit code 75 (comm's default fatal policy).
func bootstrap(ctx context.Context) (comm.Comm, error) {
	return comm.FromEnv(ctx, comm.Options{})
}

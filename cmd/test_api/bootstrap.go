package main

import (
	"context"
	"os"

	"github.com/scr-go/scr/comm"
)

// bootstrap returns the world communicator. Until comm.FromEnv lands the
// program runs as a single rank; the multi-rank logic (Run) is tested with
// comm.NewLocal.
func bootstrap(ctx context.Context) (comm.Comm, error) {
	host, _ := os.LookupEnv("SCR_NODE_NAME")
	if host == "" {
		host, _ = os.Hostname()
	}
	return comm.NewLocal([]string{host})[0], nil
}

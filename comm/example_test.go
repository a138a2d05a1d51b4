package comm_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/scr-go/scr/comm"
)

// Four ranks as goroutines on two nodes: a sum over all ranks, then one
// communicator per node.
func ExampleNewLocal() {
	comms := comm.NewLocal([]string{"n1", "n1", "n2", "n2"})
	ctx := context.Background()
	out := make([]string, len(comms))
	var wg sync.WaitGroup
	for _, c := range comms {
		wg.Go(func() {
			defer c.Close()
			sum, err := c.Allreduce(ctx, comm.OpSum, []int64{int64(c.Rank())})
			if err != nil {
				out[c.Rank()] = err.Error()
				return
			}
			node, err := c.SplitString(ctx, c.Host(c.Rank()))
			if err != nil {
				out[c.Rank()] = err.Error()
				return
			}
			out[c.Rank()] = fmt.Sprintf("rank %d: sum %d, rank %d of %d on %s",
				c.Rank(), sum[0], node.Rank(), node.Size(), c.Host(c.Rank()))
		})
	}
	wg.Wait()
	for _, s := range out {
		fmt.Println(s)
	}
	// Output:
	// rank 0: sum 6, rank 0 of 2 on n1
	// rank 1: sum 6, rank 1 of 2 on n1
	// rank 2: sum 6, rank 0 of 2 on n2
	// rank 3: sum 6, rank 1 of 2 on n2
}

// A test simulates losing a rank: the others' blocking calls fail with a
// PeerLostError naming it.
func ExampleLocalGroup_Kill() {
	g := comm.NewLocalGroup([]string{"n1", "n2", "n3"})
	comms := g.Comms()
	g.Kill(2, "node n3 vanished")
	err := comms[0].Barrier(context.Background())
	var pl *comm.PeerLostError
	if errors.As(err, &pl) {
		fmt.Println(pl.Rank, pl.Host, pl.Reason)
	}
	// Output:
	// 2 n3 node n3 vanished
}

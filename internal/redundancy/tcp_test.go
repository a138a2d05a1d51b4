package redundancy

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/scr-go/scr/comm"
)

// tcpWorld bootstraps one rank per host over comm's TCP transport on
// loopback (rendezvous directory), all in this process.
func tcpWorld(t testing.TB, hosts []string) func(ctx context.Context) []comm.Comm {
	return func(ctx context.Context) []comm.Comm {
		dir, err := os.MkdirTemp(t.TempDir(), "rdv")
		if err != nil {
			t.Fatal(err)
		}
		p := len(hosts)
		comms := make([]comm.Comm, p)
		errs := make([]error, p)
		var wg sync.WaitGroup
		for r := range p {
			env := map[string]string{
				"OMPI_COMM_WORLD_RANK": strconv.Itoa(r), "OMPI_COMM_WORLD_SIZE": strconv.Itoa(p),
				"SCR_RENDEZVOUS_DIR": dir, "SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": hosts[r],
			}
			wg.Go(func() {
				comms[r], errs[r] = comm.FromEnv(ctx, comm.Options{
					Getenv:     func(k string) string { return env[k] },
					OnPeerLost: func(*comm.PeerLostError) {},
				})
			})
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("rank %d: bootstrap over TCP: %v", r, err)
			}
		}
		return comms
	}
}

// TestOverTCP runs encode and rebuild over the real TCP transport
// (loopback): the message pattern, flow control and piece sizes must work
// where Send goes through sockets, not only through in-process mailboxes.
func TestOverTCP(t *testing.T) {
	for _, s := range []Scheme{{Type: XOR, BufSize: 8 << 10}, {Type: RS, Failures: 2, BufSize: 8 << 10}, {Type: Partner, BufSize: 8 << 10}} {
		t.Run(s.Type.String(), func(t *testing.T) {
			w := newWorld(t, nodes(5, 1), 8)
			w.comms = tcpWorld(t, w.hosts)
			files := w.writeData(sizes(300000, 0, 70001), 12)
			noErrs(t, "encode", w.run(func(ctx context.Context, g *Group) error {
				return Encode(ctx, g, s, files[g.World.Rank()], w.dir(g.World.Rank()))
			}))
			good := w.snapshot()
			os.RemoveAll(filepath.Join(w.root, w.hosts[3]))
			w.checkRebuild(s, files, good, map[int]bool{3: true}, 1)
		})
	}
}

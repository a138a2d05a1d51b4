package comm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
)

// AllgatherFunc is a collective of a runtime the ranks already share (MPI,
// say): every rank passes its data and gets every rank's, indexed by rank.
type AllgatherFunc func(ctx context.Context, data []byte) ([][]byte, error)

// FromAllgather brings up a TCP world communicator for ranks that already
// run under another parallel runtime, bootstrapped through that runtime's
// allgather instead of PMI or a rendezvous directory: each rank publishes
// its node and listening address, rank 0 adds the job's secret. Collective:
// every rank of the runtime calls it with the same size.
//
// The MPI backend (internal/mpicomm) uses the result as its failure
// detector: its heartbeat ring notices a silent node loss within
// opts.Timeout, which MPI itself does not, and runs opts.OnPeerLost or the
// default fatal policy (exit ExitPeerLost). Data can travel over it too.
func FromAllgather(ctx context.Context, opts Options, rank, size int, allgather AllgatherFunc) (Comm, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("comm: rank %d out of range for size %d", rank, size)
	}
	if size == 1 {
		return NewLocal([]string{opts.Node})[0], nil
	}
	ctx, cancel := context.WithTimeout(ctx, opts.BootstrapTimeout)
	defer cancel()

	ip, err := listenAddr(opts.Addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, fmt.Errorf("comm: rank %d on %s: listen on %s: %w (set SCR_COMM_ADDR to an address of this node)", rank, opts.Node, ip, err)
	}
	rec := opts.Node + ";" + ln.Addr().String()
	if rank == 0 {
		s := make([]byte, 32)
		rand.Read(s)
		rec += ";" + hex.EncodeToString(s)
	}
	all, err := allgather(ctx, []byte(rec))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("comm: rank %d of %d on %s: exchange addresses: %w", rank, size, opts.Node, err)
	}
	peers, secret, err := parsePeers(all, size)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("comm: rank %d of %d on %s: %w", rank, size, opts.Node, err)
	}
	pol := &policy{opts: opts, rank: rank}
	cfg := tcpConfig{
		rank: rank, size: size, host: opts.Node, secret: secret, ln: ln,
		lookup: func(_ context.Context, r int) (string, string, error) {
			return peers[r][1], peers[r][0], nil
		},
		timeout: opts.Timeout, onLost: pol.onLost,
	}
	g, _, err := startTCP(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// parsePeers reads the records of FromAllgather: "node;addr" per rank, and
// rank 0's with ";secret" (hex) appended. It returns [node, addr] by rank.
func parsePeers(all [][]byte, size int) ([][2]string, []byte, error) {
	if len(all) != size {
		return nil, nil, fmt.Errorf("the exchange returned %d records for %d ranks", len(all), size)
	}
	peers := make([][2]string, size)
	var secret []byte
	for r, b := range all {
		f := strings.Split(string(b), ";")
		if len(f) < 2 || f[0] == "" || f[1] == "" || (r == 0) != (len(f) == 3) || len(f) > 3 {
			return nil, nil, fmt.Errorf("bad address record %q of rank %d", b, r)
		}
		if _, _, err := net.SplitHostPort(f[1]); err != nil {
			return nil, nil, fmt.Errorf("bad address %q of rank %d: %w", f[1], r, err)
		}
		peers[r] = [2]string{f[0], f[1]}
		if r == 0 {
			s, err := hex.DecodeString(f[2])
			if err != nil || len(s) < 16 {
				return nil, nil, fmt.Errorf("bad job secret from rank 0")
			}
			secret = s
		}
	}
	return peers, secret, nil
}

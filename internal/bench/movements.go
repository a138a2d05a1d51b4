package bench

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Movements is what the data movements a checkpoint is made of cost in
// CPU on this machine, in milliseconds per 64 MiB moved in 1 MiB pieces
// (the best of a few rounds: a floor, not a typical value). A scheme's
// floor (Floor) is the CPU its checkpoint cannot do without, in plain
// writes: where the ranks share the cores, as simulated nodes on one
// machine do, wall time cannot go below it either.
type Movements struct {
	Write float64 `json:"write_ms"` // write a new tmpfs file (the plain write)
	Pread float64 `json:"pread_ms"` // read a file just written
	TCP   float64 `json:"tcp_ms"`   // loopback TCP, sender and receiver
	XOR   float64 `json:"xor_ms"`   // XOR one buffer into another
}

// movementPiece is the size of the pieces moved (the library's default
// SCR_MPI_BUF_SIZE).
const movementPiece = 1 << 20

// MeasureMovements measures Movements in dir (a tmpfs directory of ours)
// with up to 64 MiB, rounds times, keeping each movement's best.
func MeasureMovements(dir string, size int64, rounds int) (Movements, error) {
	total := min(max(size, movementPiece), 64<<20) / movementPiece * movementPiece
	buf := make([]byte, movementPiece)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	scale := float64(64<<20) / float64(total) / 1e6 // ns for total -> ms per 64 MiB
	var best Movements
	keep := func(v *float64, ns int64) {
		if ms := float64(ns) * scale; *v == 0 || ms < *v {
			*v = ms
		}
	}
	p := filepath.Join(dir, "movements")
	defer os.Remove(p)
	for range max(rounds, 1) {
		os.Remove(p)
		var werr error
		ns := cpuNS(func() { werr = writeNew(p, buf, total) })
		if werr != nil {
			return best, werr
		}
		keep(&best.Write, ns)
		var rerr error
		ns = cpuNS(func() { rerr = preadFile(p, buf, total) })
		if rerr != nil {
			return best, rerr
		}
		keep(&best.Pread, ns)
		acc := make([]byte, movementPiece)
		keep(&best.XOR, cpuNS(func() {
			for o := int64(0); o < total; o += movementPiece {
				subtle.XORBytes(acc, acc, buf)
			}
		}))
		var terr error
		ns = cpuNS(func() { terr = loopback(buf, total) })
		if terr != nil {
			return best, terr
		}
		keep(&best.TCP, ns)
	}
	return best, nil
}

// cpuNS is the CPU time of this process (user and system) while f runs.
func cpuNS(f func()) int64 {
	var a, b syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &a)
	f()
	syscall.Getrusage(syscall.RUSAGE_SELF, &b)
	return b.Utime.Nano() + b.Stime.Nano() - a.Utime.Nano() - a.Stime.Nano()
}

func writeNew(p string, buf []byte, total int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	for o := int64(0); o < total && err == nil; o += int64(len(buf)) {
		_, err = f.Write(buf)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func preadFile(p string, buf []byte, total int64) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for o := int64(0); o < total; o += int64(len(buf)) {
		if _, err := f.ReadAt(buf, o); err != nil {
			return err
		}
	}
	return nil
}

// loopback sends total bytes over a loopback TCP connection to a reader
// in this process.
func loopback(buf []byte, total int64) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		rb := make([]byte, len(buf))
		for o := int64(0); o < total; o += int64(len(rb)) {
			if _, err := io.ReadFull(c, rb); err != nil {
				got <- err
				return
			}
		}
		got <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	for o := int64(0); o < total; o += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
	return <-got
}

// Floor is a lower bound of the CPU a scheme's checkpoint (REBUILD: the
// rebuild of one node) costs in data movements alone, in plain writes of
// the same bytes, for one rank per node on nodes nodes (RS with failures
// parity chunks per set of all nodes). Writes are valued at plain, the CPU
// per 64 MiB of the ranks' own plain write in the runs (0: m.Write), the
// other movements at what they cost this process alone, which is no more
// than under the ranks' contention. Per rank with B bytes, XOR writes B and
// B/(N-1) of parity, reads B, sends and receives B over the ring and XORs
// (N-2)/(N-1) B; RS (k parities, chunks C = B/(N-k)) writes B and kC, sends
// C (1 + (N-k-1) k + k(k-1)/2) and multiplies and adds kB (counted as XORs,
// which they cost at least); a rebuild of one node reads N B on the
// survivors (data and parity), moves N B in chains, XORs N (N-2)/(N-1) B
// and writes B + B/(N-1) on the new node, against one rank's plain write of
// B. The deletion of the previous checkpoint, which the plain write's
// truncation of its previous file matches, is left out.
func (m Movements) Floor(scheme string, nodes, failures int, plain float64) (float64, error) {
	if plain <= 0 {
		plain = m.Write
	}
	if plain <= 0 {
		return 0, fmt.Errorf("no write measured")
	}
	n := float64(nodes)
	var writes, reads, sent, xors float64 // in B
	switch scheme {
	case Single:
		writes = 1
	case XOR:
		if nodes < 2 {
			return 0, fmt.Errorf("XOR needs 2 nodes or more")
		}
		writes, reads, sent, xors = 1+1/(n-1), 1, 1, (n-2)/(n-1)
	case RS:
		k := float64(failures)
		if failures < 1 || failures >= nodes {
			return 0, fmt.Errorf("RS with %d failures needs more than %d nodes", failures, failures)
		}
		c := 1 / (n - k)
		hops := 1 + (n-k-1)*k
		if nodes-failures < 2 {
			hops = k // the head makes the parities
		}
		writes, reads, sent, xors = 1+k*c, 1, c*(hops+k*(k-1)/2), k
	case Rebuild:
		if nodes < 2 {
			return 0, fmt.Errorf("a rebuild needs 2 nodes or more")
		}
		writes, reads, sent, xors = 1+1/(n-1), n, n, n*(n-2)/(n-1)
	default:
		return 0, fmt.Errorf("unknown scheme %q", scheme)
	}
	return (writes*plain + reads*m.Pread + sent*m.TCP + xors*m.XOR) / plain, nil
}

package redundancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/scr-go/scr/comm"
)

// Result is what Rebuild found and did.
type Result struct {
	Files   []FileInfo // this rank's files (from its header or its right neighbour's)
	Rebuilt bool       // this rank's files and redundancy data were rebuilt
	Ranks   int        // ranks rebuilt, over all sets
	Sets    int        // sets that rebuilt at least one member
}

// ErrUnrecoverable is wrapped by *UnrecoverableError.
var ErrUnrecoverable = errors.New("dataset cannot be rebuilt from its redundancy data")

// SetLoss describes one set that lost more than its scheme tolerates.
type SetLoss struct {
	Set     int      `json:"set"`
	Lost    []int    `json:"lost"`    // world ranks missing files or redundancy data
	Hosts   []string `json:"hosts"`   // their hosts now
	Reasons []string `json:"reasons"` // why each counts as lost
}

// UnrecoverableError says which sets lost too much. Every rank returns the
// same one; nothing was changed on disk.
type UnrecoverableError struct {
	Scheme Scheme
	Sets   []SetLoss // at most maxLossReport, lowest set ids first
	Total  int       // number of sets that cannot be rebuilt
}

const maxLossReport = 8

func (e *UnrecoverableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "redundancy: cannot rebuild: %d set(s) lost more than %v tolerates", e.Total, e.Scheme.Type)
	for _, s := range e.Sets {
		fmt.Fprintf(&b, "; set %d lost", s.Set)
		for i, r := range s.Lost {
			fmt.Fprintf(&b, " rank %d on %s (%s)", r, s.Hosts[i], s.Reasons[i])
		}
	}
	if e.Total > len(e.Sets) {
		fmt.Fprintf(&b, "; and %d more set(s)", e.Total-len(e.Sets))
	}
	b.WriteString("; fetch the dataset from the prefix instead")
	return b.String()
}

func (e *UnrecoverableError) Unwrap() error { return ErrUnrecoverable }

// member states exchanged inside a set
const (
	stOK      = 0
	stMissing = 1 // files or redundancy data bad, file list known
	stUnknown = 2 // file list lost too
)

// Rebuild is collective over g.World. Each rank checks its files of one
// dataset in dir (present, recorded size, recorded CRC32C) and its
// redundancy data (DataFile intact, StateFile "encoded"); a rank on a spare
// node starts with an empty dir. If every set lost no more than the scheme
// tolerates, the lost members' files, DataFile and StateFile are rebuilt in
// place and every rank returns its file list; otherwise every rank returns
// the same *UnrecoverableError and nothing is changed. Local failures
// during the rebuild give every rank an *EncodeError.
func Rebuild(ctx context.Context, g *Group, s Scheme, dir string) (Result, error) {
	return rebuild(ctx, g, s, RankDirs(dir))
}

func rebuild(ctx context.Context, g *Group, s Scheme, dir Dirs) (Result, error) {
	n := len(g.Set.Ranks)
	me := g.World.Rank()
	if err := g.check(s); err != nil {
		return Result{}, err
	}

	// 1. What this rank holds.
	var hdr *header
	var red *redFile
	redOK, why := false, ""
	if r, err := openRed(dir.Meta, false); err == nil {
		if err := r.h.matches(g, s); err == nil {
			hdr, red = &r.h, r
			switch st := stateAt(dir.Meta); st {
			case stateEncoded:
				redOK = true
			case stateDamaged:
				why = "redundancy data damaged (CRC mismatch found by an earlier rebuild)"
			case "":
				why = "no encode state"
			default:
				why = "encode or rebuild was interrupted"
			}
		} else {
			r.close()
			why = "redundancy file: " + err.Error()
		}
	} else if os.IsNotExist(err) {
		why = "no redundancy file"
	} else {
		why = "redundancy file: " + err.Error()
	}
	if red != nil {
		defer red.close()
	}

	// 2. File lists: own header, else the right neighbour's copy; then the
	// left neighbour's list (for PARTNER and for rebuilt headers).
	var self *desc
	var lefts []desc
	if hdr != nil {
		self = &hdr.Self
	}
	nl := leftCopies(s, n)
	for d := 1; d <= nl; d++ {
		var give []byte
		if hdr != nil && len(hdr.Lefts) >= d {
			give, _ = json.Marshal(hdr.Lefts[d-1])
		}
		in, err := shiftBy(ctx, g.Comm, -d, give)
		if err != nil {
			return Result{}, commErr(g, "recovering file lists", err)
		}
		if self == nil && len(in) > 0 {
			var dd desc
			if json.Unmarshal(in, &dd) == nil && dd.Rank == me && dd.check() == nil {
				self = &dd
			}
		}
	}
	var give []byte
	if self != nil {
		give, _ = json.Marshal(self)
	}
	for d := 1; d <= nl; d++ {
		in, err := shiftBy(ctx, g.Comm, d, give)
		if err != nil {
			return Result{}, commErr(g, "recovering file lists", err)
		}
		var dd desc
		if len(in) > 0 && json.Unmarshal(in, &dd) == nil && dd.Rank == g.Set.Ranks[(g.Index-d+n)%n] && dd.check() == nil {
			lefts = append(lefts, dd)
		} else {
			lefts = append(lefts, desc{Rank: -1})
		}
	}

	// 3. Are my files intact?
	st := stOK
	switch {
	case self == nil:
		st, why = stUnknown, "file list lost: "+why
	case !redOK:
		st = stMissing
	default:
		if err := verify(dir.Data, self.infos()); err != nil {
			st, why = stMissing, err.Error()
		}
	}

	// 4. Per set: who is missing, and is that tolerable?
	all, err := g.Comm.Allgather(ctx, []byte{byte(st)})
	if err != nil {
		return Result{}, commErr(g, "counting lost members", err)
	}
	var lost []int // set positions
	unknown := false
	for i, b := range all {
		if len(b) != 1 {
			return Result{}, errProtocol
		}
		if b[0] != stOK {
			lost = append(lost, i)
		}
		unknown = unknown || b[0] == stUnknown
	}
	ok := !unknown && tolerable(s, n, lost)
	leader := g.Index == 0
	var v [3]int64 // bad sets, lost ranks, sets to rebuild
	if leader {
		if !ok {
			v[0] = 1
		} else if len(lost) > 0 {
			v[2] = 1
		}
	}
	if st != stOK {
		v[1] = 1
	}
	sum, err := g.World.Allreduce(ctx, comm.OpSum, v[:])
	if err != nil {
		return Result{}, commErr(g, "agreeing on the rebuild", err)
	}
	if sum[0] > 0 {
		return Result{}, lossReport(ctx, g, s, ok, lost, st, why, int(sum[0]))
	}
	res := Result{Ranks: int(sum[1]), Sets: int(sum[2])}
	if self != nil {
		res.Files = self.infos()
	}
	if sum[1] == 0 {
		return res, nil
	}

	// 5. Rebuild the sets that lost members.
	var le localErr
	if len(lost) > 0 {
		res.Rebuilt = st != stOK
		if err := rebuildSet(ctx, g, s, dir, lost, self, lefts, hdr, red, &le); err != nil {
			return Result{}, commErr(g, "rebuilding", err)
		}
		if red != nil && !res.Rebuilt {
			// The payload this rank contributed must have been intact;
			// if not, the rebuild fails and this rank's redundancy is
			// marked untrusted, so the next attempt counts it lost.
			if err := red.checkPayload(true); err != nil {
				le.set(fmt.Errorf("redundancy: rank %d: %s: %w", me, red.f.Name(), err))
				writeState(dir.Meta, stateDamaged)
			}
		}
	}
	if err := agree(ctx, g.World, le.err); err != nil {
		return Result{}, err
	}
	if res.Rebuilt {
		if err := writeState(dir.Meta, stateEncoded); err != nil {
			return Result{}, fmt.Errorf("redundancy: rank %d: %w", me, err)
		}
	}
	return res, nil
}

// tolerable says whether a set of n members can rebuild the lost positions.
func tolerable(s Scheme, n int, lost []int) bool {
	switch s.Type {
	case Partner:
		for _, f := range lost {
			if slices.Contains(lost, (f+1)%n) {
				return false
			}
		}
		return true
	default:
		return len(lost) <= s.k()
	}
}

// lossReport gathers the bad sets' details on world rank 0 and broadcasts
// the error, so that every rank returns the same one.
func lossReport(ctx context.Context, g *Group, s Scheme, ok bool, lost []int, st int, why string, total int) error {
	// Members tell their set leader why they are lost.
	reason := []byte(nil)
	if st != stOK {
		reason = []byte(why)
	}
	whys, err := g.Comm.Gather(ctx, 0, reason)
	if err != nil {
		return commErr(g, "reporting lost members", err)
	}
	var mine []byte
	if g.Index == 0 && !ok {
		sl := SetLoss{Set: g.Set.ID}
		for _, i := range lost {
			r := g.Set.Ranks[i]
			sl.Lost = append(sl.Lost, r)
			sl.Hosts = append(sl.Hosts, g.World.Host(r))
			sl.Reasons = append(sl.Reasons, string(whys[i]))
		}
		mine, _ = json.Marshal(sl)
	}
	reps, err := g.World.Gather(ctx, 0, mine)
	if err != nil {
		return commErr(g, "reporting lost sets", err)
	}
	var out []byte
	if g.World.Rank() == 0 {
		var sets []SetLoss
		for _, b := range reps {
			if len(b) == 0 {
				continue
			}
			var sl SetLoss
			if json.Unmarshal(b, &sl) == nil {
				sets = append(sets, sl)
			}
		}
		slices.SortFunc(sets, func(a, b SetLoss) int { return a.Set - b.Set })
		if len(sets) > maxLossReport {
			sets = sets[:maxLossReport]
		}
		out, _ = json.Marshal(sets)
	}
	out, err = g.World.Bcast(ctx, 0, out)
	if err != nil {
		return commErr(g, "reporting lost sets", err)
	}
	e := &UnrecoverableError{Scheme: s, Total: total}
	if err := json.Unmarshal(out, &e.Sets); err != nil {
		return fmt.Errorf("redundancy: loss report: %w", err)
	}
	return e
}

// rebuildSet runs inside one set whose lost positions are tolerable.
func rebuildSet(ctx context.Context, g *Group, s Scheme, dir Dirs, lost []int, self *desc, lefts []desc, hdr *header, red *redFile, le *localErr) error {
	var left *desc
	if len(lefts) > 0 && lefts[0].Rank >= 0 {
		left = &lefts[0]
	}
	k := s.k()
	missing := slices.Contains(lost, g.Index)
	var chunk int64 = -1
	if hdr != nil && !missing {
		chunk = hdr.Chunk
	}
	if s.Type == XOR || s.Type == RS {
		mx, err := g.Comm.Allreduce(ctx, comm.OpMax, []int64{chunk})
		if err != nil {
			return err
		}
		chunk = mx[0]
	}
	var lf *logical
	var w *redWriter
	out := func(int, []byte) {}
	if missing {
		le.set(writeState(dir.Meta, stateEncoding))
		var err error
		lf, err = openLogical(dir.Data, self.infos(), true)
		le.set(err)
		h := &header{Version: formatVersion, Scheme: s.Type.String(), Failures: k, Set: g.Set.ID,
			Members: g.Set.Ranks, Index: g.Index, Self: *self, Lefts: lefts}
		switch s.Type {
		case Partner:
			h.Segments = 1
			if left != nil {
				h.SegSize = totalSize(left.infos())
			}
		case XOR, RS:
			h.Chunk, h.Segments, h.SegSize = chunk, k, chunk
		}
		if w, err = createRed(dir.Meta, h); err == nil {
			out = func(seg int, b []byte) { le.set(w.write(seg, b)) }
		}
		le.set(err)
	} else {
		var err error
		lf, err = openLogical(dir.Data, self.infos(), false)
		le.set(err)
	}
	if lf == nil {
		lf = &logical{total: totalSize(self.infos())} // reads give zeros
	}
	defer lf.close()

	var err error
	switch s.Type {
	case Partner:
		err = partnerRebuild(ctx, g, s.buf(), lost, lf, self, left, red, out, le)
	case XOR, RS:
		err = rowsRebuild(ctx, g, s, lost, lf, red, chunk, out, le)
	}
	if err != nil {
		if w != nil {
			w.abort()
		}
		return err
	}
	if missing {
		if w != nil {
			if le.err == nil {
				le.set(w.finish())
			} else {
				w.abort()
			}
		}
		le.set(lf.close())
		if le.err == nil {
			le.set(applyMeta(dir.Data, self.infos()))
		}
	}
	return nil
}

// rowsRebuild rebuilds the lost members of an XOR or RS set. For each
// piece and each row, the first n-k surviving members of the row (in ring
// order) pass a running sum along a chain, each adding its shard times its
// decoding coefficients; the last one sends each lost member its shard.
//
// The work is a wavefront: the member at position q of a row's chain (a
// lost member counts as position n-k) handles piece j of that row at step
// j+q, and every member goes through the steps in order, rows in order
// within a step. So what a member receives was sent one step earlier, while
// it worked on other rows and pieces: no member waits for a message sent
// just before, and the chains of all rows keep every member busy at once.
// Messages between two members keep the same order on both sides (their
// steps differ by one for every message of that pair), and flow control
// (see flow) bounds what a receiver queues.
func rowsRebuild(ctx context.Context, g *Group, s Scheme, lost []int, lf *logical, red *redFile, C int64, out func(int, []byte), le *localErr) (err error) {
	n, k, me := len(g.Set.Ranks), s.k(), g.Index
	d := n - k
	shard := func(m, p int) int { // shard index of member m in row p
		if t := (m - p + n) % n; t >= k {
			return t - k
		} else {
			return d + t
		}
	}
	type row struct {
		chain []int // survivors, in chain order
		kern  kernel
		pos   int // this member's position: in chain, d if lost, -1 if neither
	}
	rows := make([]row, n)
	enc := rsMatrix(n, k)
	links := map[[2]int]int{} // messages per step between two members
	for p := range n {
		var r row
		for i := range n {
			m := (p + k + i) % n
			if !slices.Contains(lost, m) && len(r.chain) < d {
				r.chain = append(r.chain, m)
			}
		}
		r.pos = slices.Index(r.chain, me)
		if r.pos < 0 && slices.Contains(lost, me) {
			r.pos = d
		}
		for i := 1; i < len(r.chain); i++ {
			links[[2]int{r.chain[i-1], r.chain[i]}]++
		}
		for _, f := range lost {
			links[[2]int{r.chain[d-1], f}]++
		}
		if s.Type == XOR {
			r.kern = xorKernel{}
		} else if r.pos >= 0 && r.pos < d {
			avail := make([]int, d)
			for i, m := range r.chain {
				avail[i] = shard(m, p)
			}
			want := make([]int, len(lost))
			for i, m := range lost {
				want[i] = shard(m, p)
			}
			coef, err := decodeRows(enc, avail, want)
			if err != nil {
				return err
			}
			if r.kern, err = newMadd(coef); err != nil {
				return err
			}
		}
		rows[p] = r
	}
	// A sender needs a window of more than two steps' messages to a
	// receiver (see flow): it then never waits for an acknowledgement
	// of a message the receiver can only take after this step.
	window := 0
	for l, c := range links {
		if l[0] == me {
			window = max(window, 2*c+1)
		}
	}
	fl := newFlow(ctx, g.Comm, max(window, flowWindow))
	defer func() { err = fl.finish(ctx, err) }()
	buf := int64(s.buf())
	tmp := getPiece(int(buf))
	defer putPiece(tmp)
	parts, sub := make([][]byte, len(lost)), make([][]byte, len(lost))
	item := func(p int, r row, o int64, m int) error {
		if r.pos == d { // lost: receive this member's shard from the chain's end
			in, err := fl.recv(ctx, r.chain[d-1])
			if err != nil {
				return err
			}
			if len(in) != m {
				return errProtocol
			}
			if sh := shard(me, p); sh < d {
				le.set(lf.writeAt(in, int64(sh)*C+o))
			} else {
				out(sh-d, in)
			}
			putPiece(in)
			return nil
		}
		// In the chain. Read this member's shard first: the running sum
		// may still be on its way. Pieces are owned: fresh at the head of
		// the chain, received further on, given up when sent (sendOwned).
		pos := r.pos
		var first []byte
		if pos == 0 {
			first = getPiece(len(lost) * m)
		}
		b := tmp[:m]
		direct := pos == 0 && s.Type == XOR // the sum of one shard is the shard
		if direct {
			b = first[:m]
		}
		sh := shard(me, p)
		dataLater := sh < d && !direct // added straight from the files below
		if sh < d && direct {
			le.set(lf.readAt(b, int64(sh)*C+o))
		} else if sh >= d && red != nil {
			le.set(red.readAt(sh-d, b, o))
		} else if sh >= d {
			clear(b)
		}
		var acc []byte
		if pos == 0 {
			acc = first[:len(lost)*m]
			if !direct {
				clear(acc)
			}
		} else {
			in, err := fl.recv(ctx, r.chain[pos-1])
			if err != nil {
				return err
			}
			if len(in) != len(lost)*m {
				return errProtocol
			}
			acc = in
		}
		for j := range lost {
			parts[j] = acc[j*m : (j+1)*m : (j+1)*m] // sent to different owners
		}
		switch {
		case dataLater:
			le.set(lf.addAt(int64(sh)*C+o, m, b, func(lo int, src []byte) error {
				for j := range lost {
					sub[j] = parts[j][lo : lo+len(src)]
				}
				return r.kern.add(src, pos, sub)
			}))
		case !direct:
			le.set(r.kern.add(b, pos, parts))
		}
		if pos < len(r.chain)-1 {
			return fl.send(ctx, r.chain[pos+1], acc)
		}
		if len(lost) == 1 {
			return fl.send(ctx, lost[0], acc) // the whole buffer, so it is reused whole
		}
		for j, f := range lost {
			if err := fl.send(ctx, f, parts[j]); err != nil {
				return err
			}
		}
		return nil
	}
	pieces := int((C + buf - 1) / buf)
	for t := 0; t < pieces+d; t++ {
		for p, r := range rows {
			if j := t - r.pos; r.pos >= 0 && j >= 0 && j < pieces {
				o := int64(j) * buf
				if err := item(p, r, o, int(min(buf, C-o))); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// partnerRebuild: a lost member gets its files from its right neighbour's
// copy, then its copy of its left neighbour's files from that neighbour.
// Lost members are never neighbours, so senders never receive.
func partnerRebuild(ctx context.Context, g *Group, buf int, lost []int, lf *logical, self, left *desc, red *redFile, out func(int, []byte), le *localErr) (err error) {
	me := g.Index
	fl := newFlow(ctx, g.Comm, flowWindow)
	defer func() { err = fl.finish(ctx, err) }()
	isLost := func(i int) bool { return slices.Contains(lost, i) }
	// Phase 1: the files of each lost member, from the copy on its right.
	if isLost(g.left()) && red != nil {
		size := red.h.SegSize
		for o := int64(0); o < size || o == 0; o += int64(buf) {
			b := getPiece(int(min(int64(buf), size-o)))
			le.set(red.readAt(0, b, o))
			if err := fl.send(ctx, g.left(), b); err != nil {
				return err
			}
			if size == 0 {
				break
			}
		}
	}
	if isLost(me) {
		size := totalSize(self.infos())
		for o := int64(0); o < size || o == 0; o += int64(buf) {
			in, err := fl.recv(ctx, g.right())
			if err != nil {
				return err
			}
			if int64(len(in)) != min(int64(buf), size-o) {
				return errProtocol
			}
			le.set(lf.writeAt(in, o))
			putPiece(in)
			if size == 0 {
				break
			}
		}
	}
	// Phase 2: each lost member's copy of its left neighbour's files.
	if isLost(g.right()) {
		size := lf.total
		for o := int64(0); o < size || o == 0; o += int64(buf) {
			b := getPiece(int(min(int64(buf), size-o)))
			le.set(lf.readAt(b, o))
			if err := fl.send(ctx, g.right(), b); err != nil {
				return err
			}
			if size == 0 {
				break
			}
		}
	}
	if isLost(me) {
		var size int64
		if left != nil {
			size = totalSize(left.infos())
		}
		for o := int64(0); o < size || o == 0; o += int64(buf) {
			in, err := fl.recv(ctx, g.left())
			if err != nil {
				return err
			}
			if int64(len(in)) != min(int64(buf), size-o) {
				return errProtocol
			}
			if len(in) > 0 {
				out(0, in)
			}
			putPiece(in)
			if size == 0 {
				break
			}
		}
	}
	return nil
}

// flowWindow is the least number of pieces a sender may have in flight to
// one receiver before it waits for the receiver to take the oldest.
const flowWindow = 4

// flow sends pieces with a window per receiver: each received piece is
// acknowledged, and a sender with window unacknowledged pieces to a
// receiver waits for one acknowledgement. So a fast sender cannot queue a
// whole file in a slow receiver's memory. Pieces go out through outboxes
// (a goroutine per receiver), so a Send that waits for its receiver does
// not hold up this member; acknowledgements are tiny and sent directly,
// relying on Send not waiting for the receiver for them (comm's transports
// queue, MPI sends small messages eagerly). Pieces are given up by send:
// the sender must not touch them again. finish ends it.
type flow struct {
	c      comm.Comm
	window int
	out    map[int]int // unacknowledged pieces per receiver
	ob     *outboxes
}

func newFlow(ctx context.Context, c comm.Comm, window int) *flow {
	return &flow{c: c, window: window, out: map[int]int{}, ob: newOutboxes(ctx, c, window)}
}

func (f *flow) send(ctx context.Context, dst int, b []byte) error {
	if f.out[dst] >= f.window {
		if _, err := f.c.Recv(ctx, dst, tagAck); err != nil {
			putPiece(b)
			return err
		}
		f.out[dst]--
	}
	if err := f.ob.send(dst, b); err != nil {
		return err
	}
	f.out[dst]++
	return nil
}

func (f *flow) recv(ctx context.Context, src int) ([]byte, error) {
	b, err := f.c.Recv(ctx, src, tagData)
	if err != nil {
		return nil, err
	}
	return b, f.c.Send(ctx, src, tagAck, nil)
}

// finish ends the flow after its sends and receives: on success (err nil)
// it takes the outstanding acknowledgements, so none is left for the next
// operation on the communicator; it stops the outboxes and returns err or
// the first error of its own.
func (f *flow) finish(ctx context.Context, err error) error {
	if err == nil {
	drain:
		for dst, n := range f.out {
			for range n {
				if _, err = f.c.Recv(ctx, dst, tagAck); err != nil {
					break drain
				}
			}
			delete(f.out, dst)
		}
	}
	if cerr := f.ob.close(err == nil); err == nil {
		err = cerr
	}
	return err
}

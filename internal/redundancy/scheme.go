package redundancy

import (
	"fmt"
	"strings"
)

// Type is a redundancy scheme (SCR_COPY_TYPE).
type Type int

const (
	Single  Type = iota // nothing beyond a header with the file list
	Partner             // a full copy of the left neighbour's files
	XOR                 // one rotating parity chunk per member: lose 1 per set
	RS                  // Reed-Solomon: k checksum chunks per member: lose k per set
)

func (t Type) String() string {
	switch t {
	case Single:
		return "SINGLE"
	case Partner:
		return "PARTNER"
	case XOR:
		return "XOR"
	case RS:
		return "RS"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// ParseType reads SINGLE, PARTNER, XOR or RS (any case).
func ParseType(s string) (Type, error) {
	for _, t := range []Type{Single, Partner, XOR, RS} {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("redundancy: unknown scheme %q: want SINGLE, PARTNER, XOR or RS", s)
}

// DefaultBufSize is the piece size used when Scheme.BufSize is 0: large
// enough that per-message costs vanish, small enough that a rank's working
// memory (a few pieces per parity) stays small whatever the file sizes.
const DefaultBufSize = 1 << 20

// Scheme says how a dataset is protected. Every rank passes the same value.
type Scheme struct {
	Type     Type
	Failures int // RS only: k = SET_FAILURES, members a set may lose (0 means 2)
	BufSize  int // bytes per piece sent (SCR_MPI_BUF_SIZE-like); 0 = DefaultBufSize
}

// k is the number of parity chunks per row (XOR 1, RS Failures).
func (s Scheme) k() int {
	switch s.Type {
	case XOR:
		return 1
	case RS:
		if s.Failures == 0 {
			return 2
		}
		return s.Failures
	}
	return 0
}

func (s Scheme) buf() int {
	if s.BufSize <= 0 {
		return DefaultBufSize
	}
	return s.BufSize
}

// Tolerates says how many members of one set may be lost: SINGLE 0, XOR 1,
// RS k; PARTNER loses any members as long as no two are neighbours (it
// reports 1, the count it always survives).
func (s Scheme) Tolerates() int {
	if s.Type == Partner {
		return 1
	}
	return s.k()
}

// Check says whether the scheme can protect a set of n members.
func (s Scheme) Check(n int) error {
	switch s.Type {
	case Single:
		return nil
	case Partner, XOR:
		if n < 2 {
			return fmt.Errorf("redundancy: %v needs sets of at least 2 members on different failure groups, got a set of %d: use more nodes, a smaller SCR_SET_SIZE does not help; or SINGLE", s.Type, n)
		}
		return nil
	case RS:
		k := s.k()
		if k < 1 {
			return fmt.Errorf("redundancy: RS with SET_FAILURES=%d: must be at least 1", k)
		}
		if n <= k {
			return fmt.Errorf("redundancy: RS with SET_FAILURES=%d needs sets of more than %d members, got a set of %d: lower SET_FAILURES or raise SCR_SET_SIZE", k, k, n)
		}
		if n > 255 {
			return fmt.Errorf("redundancy: RS sets are limited to 255 members, got %d: lower SCR_SET_SIZE", n)
		}
		return nil
	}
	return fmt.Errorf("redundancy: unknown scheme %v", s.Type)
}

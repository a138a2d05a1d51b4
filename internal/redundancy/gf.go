package redundancy

import (
	"fmt"

	"github.com/klauspost/reedsolomon"
)

// GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11D) and generator 2,
// the field of SCR's RS and of klauspost/reedsolomon. The tables are small
// and only used to build coefficient matrices; the bulk multiply-add runs in
// reedsolomon's SIMD kernels (EncodeIdx with a custom matrix).

var gfExp [512]byte
var gfLog [256]int

func init() {
	x := 1
	for i := range 255 {
		gfExp[i] = byte(x)
		gfLog[x] = i
		x <<= 1
		if x&0x100 != 0 {
			x ^= 0x11D
		}
	}
	for i := 255; i < 512; i++ {
		gfExp[i] = gfExp[i-255]
	}
}

func gfMul(a, b byte) byte {
	if a == 0 || b == 0 {
		return 0
	}
	return gfExp[gfLog[a]+gfLog[b]]
}

func gfInv(a byte) byte {
	if a == 0 {
		panic("redundancy: inverse of 0 in GF(2^8)")
	}
	return gfExp[255-gfLog[a]]
}

func gfPow(a byte, n int) byte {
	r := byte(1)
	for range n {
		r = gfMul(r, a)
	}
	return r
}

type matrix [][]byte

func newMatrix(rows, cols int) matrix {
	m := make(matrix, rows)
	for i := range m {
		m[i] = make([]byte, cols)
	}
	return m
}

func (m matrix) mul(o matrix) matrix {
	r := newMatrix(len(m), len(o[0]))
	for i := range m {
		for j := range o[0] {
			var v byte
			for k := range o {
				v ^= gfMul(m[i][k], o[k][j])
			}
			r[i][j] = v
		}
	}
	return r
}

// invert returns the inverse of a square matrix by Gauss-Jordan elimination.
func (m matrix) invert() (matrix, error) {
	n := len(m)
	a := newMatrix(n, 2*n)
	for i := range n {
		copy(a[i], m[i])
		a[i][n+i] = 1
	}
	for c := range n {
		p := -1
		for r := c; r < n; r++ {
			if a[r][c] != 0 {
				p = r
				break
			}
		}
		if p < 0 {
			return nil, fmt.Errorf("redundancy: singular matrix")
		}
		a[c], a[p] = a[p], a[c]
		inv := gfInv(a[c][c])
		for j := range a[c] {
			a[c][j] = gfMul(a[c][j], inv)
		}
		for r := range n {
			if r != c && a[r][c] != 0 {
				f := a[r][c]
				for j := range a[r] {
					a[r][j] ^= gfMul(f, a[c][j])
				}
			}
		}
	}
	out := newMatrix(n, n)
	for i := range n {
		copy(out[i], a[i][n:])
	}
	return out, nil
}

// rsMatrix is the systematic encoding matrix for n shards of which n-k are
// data: the n x (n-k) Vandermonde matrix (row i = i^0 .. i^(n-k-1)) times
// the inverse of its top square, so the top n-k rows are the identity and
// the bottom k rows are the checksum coefficients. Any n-k rows are
// independent, so any k lost shards can be rebuilt. This matrix is part of
// the on-disk format (doc/redundancy.md): it never depends on the library.
func rsMatrix(n, k int) matrix {
	d := n - k
	v := newMatrix(n, d)
	for i := range n {
		for j := range d {
			v[i][j] = gfPow(byte(i), j)
		}
	}
	top, err := matrix(v[:d]).invert()
	if err != nil {
		panic(err) // a Vandermonde matrix of distinct points is invertible
	}
	return v.mul(top)
}

// decodeRows returns, for each wanted shard, its coefficients over the
// available shards: shard w = sum_i rows[w][i] * shard avail[i]. avail
// must name n-k distinct shards.
func decodeRows(enc matrix, avail, want []int) (matrix, error) {
	sub := newMatrix(len(avail), len(enc[0]))
	for i, a := range avail {
		copy(sub[i], enc[a])
	}
	inv, err := sub.invert()
	if err != nil {
		return nil, err
	}
	w := newMatrix(len(want), len(enc[0]))
	for i, s := range want {
		copy(w[i], enc[s])
	}
	return w.mul(inv), nil
}

// madd adds coefficient rows times input shards into outputs: the kernel
// of RS encode and rebuild. out[j] ^= rows[j][idx] * in, computed by
// reedsolomon's SIMD code.
type madd struct {
	enc reedsolomon.Encoder
}

func newMadd(rows matrix) (*madd, error) {
	e, err := reedsolomon.New(len(rows[0]), len(rows), reedsolomon.WithCustomMatrix(rows), reedsolomon.WithMaxGoroutines(1))
	if err != nil {
		return nil, fmt.Errorf("redundancy: RS kernel for %dx%d matrix: %w", len(rows), len(rows[0]), err)
	}
	return &madd{enc: e}, nil
}

func (m *madd) add(in []byte, idx int, out [][]byte) error {
	if len(in) == 0 {
		return nil
	}
	return m.enc.EncodeIdx(in, idx, out)
}

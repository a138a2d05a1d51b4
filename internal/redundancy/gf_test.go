package redundancy

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// mulSlow multiplies in GF(2^8) bit by bit (Russian peasant), independent
// of the log tables.
func mulSlow(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1D
		}
		b >>= 1
	}
	return p
}

func TestGFTables(t *testing.T) {
	for a := range 256 {
		for b := range 256 {
			if got, want := gfMul(byte(a), byte(b)), mulSlow(byte(a), byte(b)); got != want {
				t.Fatalf("%d*%d = %d, want %d", a, b, got, want)
			}
		}
		if a != 0 && gfMul(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("inverse of %d", a)
		}
	}
}

func TestRSMatrixSystematicAndMDS(t *testing.T) {
	for n := 2; n <= 9; n++ {
		for k := 1; k < n && k <= 3; k++ {
			e := rsMatrix(n, k)
			for i := range n - k {
				for j := range n - k {
					if want := byte(0); i == j && e[i][j] != 1 || i != j && e[i][j] != want {
						t.Fatalf("n=%d k=%d: top not identity at %d,%d", n, k, i, j)
					}
				}
			}
			// every choice of n-k rows is invertible
			var pick func(from int, rows []int)
			pick = func(from int, rows []int) {
				if len(rows) == n-k {
					sub := newMatrix(n-k, n-k)
					for i, r := range rows {
						copy(sub[i], e[r])
					}
					if _, err := sub.invert(); err != nil {
						t.Fatalf("n=%d k=%d rows %v singular", n, k, rows)
					}
					return
				}
				for r := from; r < n; r++ {
					pick(r+1, append(rows, r))
				}
			}
			pick(0, nil)
		}
	}
}

// TestKernelsAgainstByteLoop checks the SIMD multiply-add (reedsolomon
// with our matrix) and the XOR kernel against plain byte loops.
func TestKernelsAgainstByteLoop(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 7, 64, 1000, 70000} {
		for _, shape := range [][2]int{{4, 2}, {6, 3}, {3, 1}, {12, 4}} {
			n, k := shape[0], shape[1]
			e := rsMatrix(n, k)
			ma, err := newMadd(e[n-k:])
			if err != nil {
				t.Fatal(err)
			}
			data := make([][]byte, n-k)
			for i := range data {
				data[i] = make([]byte, size)
				for j := range data[i] {
					data[i][j] = byte(rng.IntN(256))
				}
			}
			got := make([][]byte, k)
			for i := range got {
				got[i] = make([]byte, size)
			}
			for i, d := range data {
				if err := ma.add(d, i, got); err != nil {
					t.Fatal(err)
				}
			}
			for p := range k {
				want := make([]byte, size)
				for i, d := range data {
					for b := range d {
						want[b] ^= mulSlow(e[n-k+p][i], d[b])
					}
				}
				if !bytes.Equal(got[p], want) {
					t.Fatalf("size %d n=%d k=%d parity %d differs from the byte loop", size, n, k, p)
				}
			}
		}
		a := make([]byte, size)
		b := make([]byte, size)
		for i := range a {
			a[i], b[i] = byte(rng.IntN(256)), byte(rng.IntN(256))
		}
		want := make([]byte, size)
		for i := range a {
			want[i] = a[i] ^ b[i]
		}
		out := [][]byte{append([]byte(nil), a...)}
		xorKernel{}.add(b, 0, out)
		if !bytes.Equal(out[0], want) {
			t.Fatalf("xor kernel differs at size %d", size)
		}
	}
}

// TestRSDecodeBruteForce erases every pattern of up to k of n one-byte
// shards and finds the missing bytes by trying every value: the unique
// assignment that is a codeword must be what decodeRows computes.
func TestRSDecodeBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, shape := range [][2]int{{3, 1}, {4, 2}, {5, 2}, {5, 3}} {
		n, k := shape[0], shape[1]
		d := n - k
		e := rsMatrix(n, k)
		data := make([]byte, d)
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		word := make([]byte, n)
		for r := range n {
			for c := range d {
				word[r] ^= gfMul(e[r][c], data[c])
			}
		}
		isCode := func(w []byte) bool {
			for r := d; r < n; r++ {
				var v byte
				for c := range d {
					v ^= gfMul(e[r][c], w[c])
				}
				if v != w[r] {
					return false
				}
			}
			return true
		}
		for mask := 1; mask < 1<<n; mask++ {
			var lost, avail []int
			for i := range n {
				if mask&(1<<i) != 0 {
					lost = append(lost, i)
				} else {
					avail = append(avail, i)
				}
			}
			if len(lost) > k || len(lost) > 2 {
				continue
			}
			// brute force
			found, count := make([]byte, len(lost)), 0
			w := append([]byte(nil), word...)
			for v := range 1 << (8 * len(lost)) {
				for j, l := range lost {
					w[l] = byte(v >> (8 * j))
				}
				if isCode(w) {
					count++
					for j, l := range lost {
						found[j] = w[l]
					}
				}
			}
			if count != 1 {
				t.Fatalf("n=%d k=%d lost %v: %d codewords", n, k, lost, count)
			}
			coef, err := decodeRows(e, avail[:d], lost)
			if err != nil {
				t.Fatal(err)
			}
			for j := range lost {
				var v byte
				for i, a := range avail[:d] {
					v ^= gfMul(coef[j][i], word[a])
				}
				if v != found[j] || v != word[lost[j]] {
					t.Fatalf("n=%d k=%d lost %v: decoded %d, brute force %d, original %d", n, k, lost, v, found[j], word[lost[j]])
				}
			}
		}
	}
}

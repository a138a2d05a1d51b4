package hostlist

import (
	"fmt"
	"testing"
)

// 10,000 nodes with every 7th missing: the shape of a large allocation's
// node list after failures.
func bigList() []string {
	var h []string
	for i := 1; i <= 10000; i++ {
		if i%7 != 0 {
			h = append(h, fmt.Sprintf("node%05d", i))
		}
	}
	return h
}

func BenchmarkCompress10k(b *testing.B) {
	h := bigList()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Compress(h)
	}
}

func BenchmarkExpand10k(b *testing.B) {
	s := Compress(bigList())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Expand(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMinus10k(b *testing.B) {
	h := bigList()
	down := h[:100]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Minus(h, down)
	}
}

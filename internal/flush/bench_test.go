package flush

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/scr-go/scr/internal/cache"
)

// BenchmarkCopyRank is the flush of one rank's 64 MiB file from /dev/shm
// to /dev/shm with and without SCR_CRC_ON_FLUSH (the CRC32C computed on
// the way): the price of the checksum that fetch and scr_index --build check.
func BenchmarkCopyRank(b *testing.B) {
	const size = 64 << 20
	base, err := os.MkdirTemp("/dev/shm", "bench-flush-*")
	if err != nil {
		b.Skip(err)
	}
	defer os.RemoveAll(base)
	dir, pfx := filepath.Join(base, "rank"), filepath.Join(base, "prefix")
	os.MkdirAll(filepath.Join(dir, "ckpt"), 0o700)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	os.WriteFile(filepath.Join(dir, "ckpt", "f"), data, 0o600)
	meta, _ := cache.Stat(filepath.Join(dir, "ckpt", "f"), false)
	meta.Rel, meta.Complete = filepath.Join("ckpt", "f"), true
	fm := cache.Filemap{Files: []cache.File{meta}}
	for _, crc := range []bool{false, true} {
		name := "nocrc"
		if crc {
			name = "crc32c"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := CopyRank(context.Background(), pfx, dir, fm, false, 1<<20, crc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

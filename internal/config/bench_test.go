package config

import (
	"path/filepath"
	"testing"
)

// BenchmarkResolve: what one rank pays at Init to read its configuration
// (user file with a multi-level setup, defaults, validation).
func BenchmarkResolve(b *testing.B) {
	dir := b.TempDir()
	write(&testing.T{}, filepath.Join(dir, ".scrconf"), multiLevel)
	opts := Options{Env: envMap("SCR_PREFIX", dir, "USER", "u", "SCR_NODE_NAME", "n1"), SystemFile: filepath.Join(dir, "none"), NoAppFile: true}
	for i := 0; i < b.N; i++ {
		if _, _, err := Resolve(opts, []string{"SCR_FLUSH=1"}); err != nil {
			b.Fatal(err)
		}
	}
}

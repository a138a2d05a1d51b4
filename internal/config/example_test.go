package config_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/scr-go/scr/internal/config"
)

func Example() {
	dir, _ := os.MkdirTemp("", "scr-example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, ".scrconf"), []byte("SCR_COPY_TYPE=FILE\nCKPT=0 TYPE=XOR SET_SIZE=4\nCKPT=1 INTERVAL=4 TYPE=RS SET_SIZE=6\n"), 0o600)
	env := map[string]string{"SCR_PREFIX": dir, "SCR_FLUSH": "2", "USER": "alice"}
	cfg, err := config.Load(config.Options{
		Env:        func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		SystemFile: filepath.Join(dir, "no-system-file"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.Set("SCR_CACHE_SIZE=2") // what SCR_Config does, before Init
	s, err := cfg.Settings()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("flush every", s.Flush, "from", s.Origin("SCR_FLUSH"))
	fmt.Println("cache size", s.CacheSize, "from", s.Origin("SCR_CACHE_SIZE"))
	d, _ := config.Select(s.Redundancy, true, false, 8)
	d, note := config.Adjust(d, s.Stores, config.Topology{Ranks: 12, Nodes: 3})
	fmt.Println("checkpoint 8 uses", d.Type, "sets of", d.SetSize, note)
	// Output:
	// flush every 2 from environment
	// cache size 2 from Config call
	// checkpoint 8 uses RS sets of 6
}

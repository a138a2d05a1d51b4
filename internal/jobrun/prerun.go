package jobrun

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/scr-go/scr/internal/prefix"
)

// Prerun prepares the prefix for a new allocation (scr_prerun): create
// <prefix>/.scr and forget the previous allocation's flush state, node count
// and hostfile, whose caches are gone. The halt file is kept: the user may
// have set conditions for this job before it started. It runs nothing on
// the compute nodes (SCR's `srun hostname` could hang on a dead node).
func Prerun(prefixDir string) error {
	if prefixDir == "" {
		return errors.New("prerun: no prefix directory (set SCR_PREFIX or pass -p)")
	}
	// A prefix that does not exist is a typo in SCR_PREFIX or -p far more
	// often than a wish: say so rather than create a directory somewhere.
	if st, err := os.Stat(prefixDir); err != nil || !st.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return fmt.Errorf("prerun: prefix %s: %w (create it first, or fix SCR_PREFIX / -p)", prefixDir, err)
	}
	dir := prefix.MetaDir(prefixDir)
	if err := prefix.EnsureMetaDir(prefixDir); err != nil {
		return fmt.Errorf("prerun: %w (is the prefix on a writable file system?)", err)
	}
	for _, p := range []string{prefix.FlushPath(prefixDir), prefix.NodesPath(prefixDir), filepath.Join(dir, "hostfile")} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("prerun: remove %s: %w", p, err)
		}
	}
	return nil
}

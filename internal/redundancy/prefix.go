package redundancy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/scr-go/scr/internal/prefix"
)

// PrefixRedDir is where a scavenge puts rank r's redundancy files (red.data,
// red.state) of dataset id under the prefix: <prefix>/.scr/scr.dataset.<id>/
// redundancy/rank.<r>/. The rank's data files are in the prefix at the same
// relative paths as in its cache rank directory.
func PrefixRedDir(prefixDir string, id int64, rank int) string {
	return filepath.Join(prefix.DatasetDir(prefixDir, id), "redundancy", "rank."+strconv.Itoa(rank))
}

// PrefixRebuilder regenerates the missing files of a scavenged dataset
// from the redundancy files found under PrefixRedDir (scr_index --build):
// it implements prefix.Rebuilder with RebuildOffline.
type PrefixRebuilder struct {
	BufSize int // piece size; 0 = DefaultBufSize
}

var _ prefix.Rebuilder = PrefixRebuilder{}

// RebuildDataset rebuilds dataset id in prefixDir. missing only needs to be
// non-empty: the redundancy headers say which ranks exist and what they
// hold; every rank whose files or redundancy files are bad is rebuilt.
func (pr PrefixRebuilder) RebuildDataset(ctx context.Context, prefixDir string, id int64, missing []prefix.Missing) error {
	root := filepath.Dir(PrefixRedDir(prefixDir, id, 0))
	ents, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("redundancy: no scavenged redundancy data for dataset %d: %w", id, err)
	}
	size := 0
	for _, e := range ents {
		r, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "rank."))
		if err != nil || !strings.HasPrefix(e.Name(), "rank.") {
			continue
		}
		size = max(size, r+1)
		if red, err := openRed(filepath.Join(root, e.Name()), false); err == nil {
			for _, m := range red.h.Members {
				size = max(size, m+1)
			}
			red.close()
		}
	}
	for _, m := range missing {
		size = max(size, m.Rank+1)
	}
	if size == 0 {
		return fmt.Errorf("redundancy: no scavenged redundancy data for dataset %d in %s", id, root)
	}
	dirs := make([]Dirs, size)
	for r := range dirs {
		dirs[r] = Dirs{Data: prefixDir, Meta: PrefixRedDir(prefixDir, id, r)}
	}
	_, err = RebuildOffline(ctx, dirs, pr.BufSize)
	return err
}

package prefix

import (
	"fmt"
	"path/filepath"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Dataset is the record of one dataset (SCR's DSET): what it is, who wrote
// it and how big it is. It is stored in the index and in the summary.
type Dataset struct {
	ID         int64     `json:"id"`                // dataset id, counted across runs
	Name       string    `json:"name"`              // user-visible name, unique in the index
	Checkpoint bool      `json:"checkpoint"`        // has the CHECKPOINT flag
	Output     bool      `json:"output"`            // has the OUTPUT flag
	CkptID     int64     `json:"ckpt_id,omitempty"` // checkpoint id (checkpoints only)
	Created    time.Time `json:"created"`           // when Start_output was called
	User       string    `json:"user,omitempty"`
	JobName    string    `json:"job_name,omitempty"`
	JobID      string    `json:"job_id,omitempty"`
	Cluster    string    `json:"cluster,omitempty"`
	Files      int64     `json:"files"`    // number of files over all ranks
	Size       int64     `json:"size"`     // bytes over all ranks
	Complete   bool      `json:"complete"` // every rank reported its files valid
}

// DatasetDir is the per-dataset metadata directory
// <prefix>/.scr/scr.dataset.<id>.
func DatasetDir(prefixDir string, id int64) string {
	return filepath.Join(MetaDir(prefixDir), "scr.dataset."+strconv.FormatInt(id, 10))
}

// MaxNameLen is the longest dataset name accepted, in bytes.
const MaxNameLen = 255

// CheckName says why name cannot be a dataset name, or nil: a name is
// printed by scr_index and written into every metadata file, so it must
// be valid UTF-8 of at most MaxNameLen bytes without control characters
// (a newline would forge lines in listings).
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("dataset name is empty")
	case len(name) > MaxNameLen:
		return fmt.Errorf("dataset name is %d bytes long, more than %d", len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("dataset name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("dataset name %q contains a control character (%U)", name, r)
		}
	}
	return nil
}

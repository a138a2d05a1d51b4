package prefix

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// NodesFile records how many nodes the last run used (SCR's nodes.scr);
// scr_run compares it with the healthy nodes before a relaunch.
const (
	NodesFile    = "nodes.json"
	nodesFormat  = "scr-nodes"
	NodesVersion = 1
)

var errNotExist = os.ErrNotExist

// Nodes is the nodes file.
type Nodes struct {
	Format  string   `json:"format"`
	Version int      `json:"version"`
	Nodes   int      `json:"nodes"`           // number of nodes of the last run
	Hosts   []string `json:"hosts,omitempty"` // their names, if known
}

// NodesPath is the nodes file of a prefix.
func NodesPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), NodesFile) }

// WriteNodes records the node count (and names) of the current run.
func WriteNodes(prefixDir string, n *Nodes) error {
	n.Format, n.Version = nodesFormat, NodesVersion
	if n.Nodes < 0 {
		return fmt.Errorf("nodes file: negative node count %d", n.Nodes)
	}
	return writeJSON(NodesPath(prefixDir), n)
}

// ReadNodes reads the nodes file. A missing file wraps os.ErrNotExist.
func ReadNodes(prefixDir string) (*Nodes, error) {
	path := NodesPath(prefixDir)
	n := &Nodes{}
	ok, err := readJSON(path, nodesFormat, NodesVersion, n)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no nodes file %s: %w", path, errNotExist)
	}
	if n.Nodes < 0 {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("negative node count %d", n.Nodes)}
	}
	return n, nil
}

// AppConfFile holds the values the application set through the API (SCR's
// app.conf), in the config-file syntax of internal/config, so the commands
// see the same settings as the library.
const AppConfFile = "app.conf"

// AppConfPath is the app.conf file of a prefix.
func AppConfPath(prefixDir string) string { return filepath.Join(MetaDir(prefixDir), AppConfFile) }

// WriteAppConf replaces app.conf atomically with data (config syntax).
func WriteAppConf(prefixDir string, data []byte) error {
	return WriteFileAtomic(AppConfPath(prefixDir), data, 0o600)
}

// ReadAppConf returns the content of app.conf; (nil, false, nil) if absent.
func ReadAppConf(prefixDir string) ([]byte, bool, error) {
	b, err := os.ReadFile(AppConfPath(prefixDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", AppConfPath(prefixDir), err)
	}
	return b, true, nil
}

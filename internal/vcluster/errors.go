package vcluster

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMissing is wrapped by MissingError.
var ErrMissing = errors.New("vcluster: required programs missing")

// ErrNotRoot is returned by Up when not running as root.
var ErrNotRoot = errors.New("vcluster: must run as root (namespaces, mounts, Slurm daemons)")

// ErrNoCluster is returned by Load when the state directory holds no cluster.
var ErrNoCluster = errors.New("vcluster: no cluster in this state directory")

// ErrPoweredOff is wrapped when a command targets a node that is powered off.
var ErrPoweredOff = errors.New("node is powered off")

// ErrUnknownNode is wrapped when a node name is not part of the cluster.
var ErrUnknownNode = errors.New("no such node")

// MissingError lists every program Up needs and did not find on PATH.
type MissingError struct {
	Programs []string
	Why      string // set for Flux: where it was looked for, how to build it
}

func (e *MissingError) Error() string {
	if e.Why != "" {
		return "vcluster: missing programs: " + strings.Join(e.Programs, ", ") + ": " + e.Why
	}
	return fmt.Sprintf("vcluster: missing programs: %s (run `make deps` as root to install the Debian packages: slurmctld slurmd slurm-client munge iputils-ping iproute2 util-linux openssh-server openssh-client)",
		strings.Join(e.Programs, ", "))
}

func (e *MissingError) Unwrap() error { return ErrMissing }

// NodeError says which node an operation failed on.
type NodeError struct {
	Node string
	Op   string
	Err  error
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("vcluster: %s %s: %v", e.Op, e.Node, e.Err)
}

func (e *NodeError) Unwrap() error { return e.Err }

package vcluster

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
)

// Timeouts selects how fast Slurm declares a silent node dead.
type Timeouts string

const (
	// TimeoutsFast makes slurmctld mark a powered-off node DOWN in about
	// 10 s (SlurmdTimeout=4, MessageTimeout=2, TCPTimeout=1: lower values were
	// found not to go below ~9 s). For CI tests of the resource manager's
	// reaction.
	TimeoutsFast Timeouts = "fast"
	// TimeoutsProduction keeps Slurm's production defaults
	// (SlurmdTimeout=300, MessageTimeout=10): Slurm stays unaware of a dead
	// node for minutes, so scr-go's own detection has to act first.
	TimeoutsProduction Timeouts = "production"
)

// MaxStateDirLen bounds the state directory's length: slurmd makes unix
// sockets at <state>/spool/nodeN/nodeN_<job>.<step>, and a socket path has
// at most 107 bytes.
const MaxStateDirLen = 60

// MaxNodes bounds Options.Nodes: node i has address 10.252.X.(10+i).
const MaxNodes = 240

// Options configure Up. The zero value is usable: 3 nodes, fast timeouts,
// state in /tmp/vcluster-default.
type Options struct {
	// Name names the cluster; it gives the default state directory
	// /tmp/vcluster-<Name>. Default "default".
	Name string
	// StateDir holds every file of the cluster. Two clusters with different
	// state directories never collide (namespaces, subnet). It must not be
	// under /dev/shm, which every node replaces with its own tmpfs.
	StateDir string
	// Nodes is the number of compute nodes, node1..nodeN. Default 3.
	Nodes int
	// CPUs is the CPU count each node announces to Slurm (the real core
	// count does not limit it). Default 2.
	CPUs int
	// RM is the resource manager: RMSlurm (default) or RMFlux (a Flux
	// system instance, one broker per node; see FluxProgram).
	RM RM
	// Timeouts selects how fast the resource manager notices a silent
	// node: Slurm's timeouts, or Flux's tbon.tcp_user_timeout (fast 2 s,
	// production Flux's default 20 s). Default fast.
	Timeouts Timeouts
	// SSH starts sshd on every node with per-cluster host and user keys;
	// SSHConfig then names an ssh_config that reaches nodeN by name.
	SSH bool
	// BinDir is put first on PATH for commands run on the nodes (the
	// project's binaries). Default $SCR_BIN, if set.
	BinDir string
	// ShmSize limits each node's /dev/shm tmpfs (a mount size= value such
	// as "512m"). Default: the kernel's default (half of RAM).
	ShmSize string
	// Logf, if set, receives progress lines (t.Logf fits).
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = "default"
	}
	if strings.ContainsAny(o.Name, "/ \t\n") {
		return o, fmt.Errorf("vcluster: cluster name %q: use letters, digits, '-' or '_'", o.Name)
	}
	if o.StateDir == "" {
		o.StateDir = filepath.Join(os.TempDir(), "vcluster-"+o.Name)
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return o, fmt.Errorf("vcluster: state dir %q: %w", o.StateDir, err)
	}
	o.StateDir = abs
	if abs == "/dev/shm" || strings.HasPrefix(abs, "/dev/shm/") {
		return o, fmt.Errorf("vcluster: state dir %s is under /dev/shm, which every node replaces with its own tmpfs: choose another directory", abs)
	}
	if len(abs) > MaxStateDirLen {
		return o, fmt.Errorf("vcluster: state dir %s is %d characters long: at most %d fit, because munged and slurmd put unix sockets (at most 108 bytes a path) below it; choose a shorter one", abs, len(abs), MaxStateDirLen)
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return o, fmt.Errorf("vcluster: %d nodes: want 1..%d", o.Nodes, MaxNodes)
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.CPUs < 1 {
		return o, fmt.Errorf("vcluster: %d CPUs per node: want at least 1", o.CPUs)
	}
	switch o.RM {
	case "":
		o.RM = RMSlurm
	case RMSlurm, RMFlux:
	default:
		return o, fmt.Errorf("vcluster: resource manager %q: want %q or %q", o.RM, RMSlurm, RMFlux)
	}
	switch o.Timeouts {
	case "":
		o.Timeouts = TimeoutsFast
	case TimeoutsFast, TimeoutsProduction:
	default:
		return o, fmt.Errorf("vcluster: slurm timeouts %q: want %q or %q", o.Timeouts, TimeoutsFast, TimeoutsProduction)
	}
	if o.BinDir == "" {
		o.BinDir = os.Getenv("SCR_BIN")
	}
	if o.BinDir != "" {
		if o.BinDir, err = filepath.Abs(o.BinDir); err != nil {
			return o, fmt.Errorf("vcluster: bin dir: %w", err)
		}
	}
	if o.ShmSize != "" && strings.ContainsAny(o.ShmSize, ", \t") {
		return o, fmt.Errorf("vcluster: shm size %q: want a tmpfs size such as 512m", o.ShmSize)
	}
	return o, nil
}

// clusterID is a short stable identifier derived from the absolute state
// directory: it names the namespaces (vc-<id>-nodeN) and seeds the subnet.
func clusterID(stateDir string) string {
	h := fnv.New32a()
	h.Write([]byte(stateDir))
	return fmt.Sprintf("%06x", h.Sum32()&0xffffff)
}

// subnetSeed maps a cluster id to the third octet of 10.252.X.0/24, 1..254.
func subnetSeed(stateDir string) int {
	h := fnv.New32a()
	h.Write([]byte("subnet:" + stateDir))
	return int(h.Sum32()%254) + 1
}

// nodeAddr is node i's address (i from 1) in subnet x.
func nodeAddr(x, i int) string { return fmt.Sprintf("10.252.%d.%d", x, 10+i) }

// headAddr is the head namespace's (slurmctld's) address in subnet x.
func headAddr(x int) string { return fmt.Sprintf("10.252.%d.1", x) }

// nodeName is the host and Slurm name of node i (from 1).
func nodeName(i int) string { return fmt.Sprintf("node%d", i) }

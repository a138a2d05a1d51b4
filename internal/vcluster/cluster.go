package vcluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const stateVersion = 1

// state is what state.json records, so that another process (the vcluster
// command) can attach to a running cluster.
type state struct {
	Version  int      `json:"version"`
	Name     string   `json:"name"`
	Dir      string   `json:"dir"`
	ID       string   `json:"id"`
	Subnet   int      `json:"subnet"`
	CPUs     int      `json:"cpus"`
	Timeouts Timeouts `json:"timeouts"`
	RM       RM       `json:"rm,omitempty"` // "" = slurm (older state files)
	// FluxProgram is the flux command of a Flux cluster.
	FluxProgram string      `json:"flux_program,omitempty"`
	SSH         bool        `json:"ssh"`
	BinDir      string      `json:"bin_dir,omitempty"`
	ShmSize     string      `json:"shm_size,omitempty"`
	Nodes       []nodeState `json:"nodes"`
	Up          time.Time   `json:"up"`
}

type nodeState struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	PoweredOff bool   `json:"powered_off,omitempty"`
}

// Cluster is a running virtual cluster. Its methods are safe for concurrent
// use; power operations run one at a time (PowerOffNodes takes several
// nodes down at once), Exec and the Slurm queries run alongside them.
type Cluster struct {
	pmu  sync.Mutex // serializes PowerOff, PowerOn and Down
	mu   sync.Mutex // guards st
	st   state
	logf func(string, ...any)

	// holders started by this process: their Wait goroutines end when the
	// holder dies (PowerOff, Down).
	waits sync.WaitGroup
}

// Node is one compute node of the cluster.
type Node struct {
	Name string `json:"name"` // host name and Slurm NodeName, node1..nodeN
	Addr string `json:"addr"` // its address on the cluster bridge
}

func (c *Cluster) dir(elem ...string) string {
	return filepath.Join(append([]string{c.st.Dir}, elem...)...)
}

func (c *Cluster) netns(node string) string { return "vc-" + c.st.ID + "-" + node }

// StateDir is the directory holding every file of the cluster.
func (c *Cluster) StateDir() string { return c.st.Dir }

// SharedDir is a directory visible at the same path on every node (the
// stand-in for the parallel file system), writable by everyone.
func (c *Cluster) SharedDir() string { return c.dir("shared") }

// SlurmConf is the path of the cluster's slurm.conf (SLURM_CONF).
func (c *Cluster) SlurmConf() string { return c.dir("etc", "slurm.conf") }

// Subnet is the cluster's private network, 10.252.X.0/24.
func (c *Cluster) Subnet() string { return fmt.Sprintf("10.252.%d.0/24", c.st.Subnet) }

// HeadAddr is slurmctld's address.
func (c *Cluster) HeadAddr() string { return headAddr(c.st.Subnet) }

// Nodes lists the compute nodes in order.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Node, len(c.st.Nodes))
	for i, n := range c.st.Nodes {
		out[i] = Node{Name: n.Name, Addr: n.Addr}
	}
	return out
}

// NodeNames lists the compute node names in order.
func (c *Cluster) NodeNames() []string {
	var out []string
	for _, n := range c.Nodes() {
		out = append(out, n.Name)
	}
	return out
}

// PoweredOff reports whether the node is powered off.
func (c *Cluster) PoweredOff(node string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.st.Nodes {
		if n.Name == node {
			return n.PoweredOff
		}
	}
	return false
}

func (c *Cluster) logfln(format string, args ...any) {
	if c.logf != nil {
		c.logf(format, args...)
	}
}

// required lists the programs Up needs (Flux itself is found by
// FluxProgram).
func required(ssh bool, rm RM) []string {
	p := []string{"ip", "nsenter", "unshare", "mount", "umount", "hostname", "sh", "sleep", "ping"}
	if rm == RMFlux {
		p = append(p, "setsid", "env")
	} else {
		p = append(p, "munged", "slurmctld", "slurmd", "slurmstepd", "srun", "sbatch", "salloc", "scontrol", "sinfo", "squeue", "scancel")
	}
	if ssh {
		p = append(p, "sshd", "ssh", "ssh-keygen")
	}
	return p
}

// CheckPrograms returns a *MissingError naming every program a Slurm
// cluster needs that is not on PATH (nil if all are there).
func CheckPrograms(ssh bool) error { return checkPrograms(ssh, RMSlurm) }

func checkPrograms(ssh bool, rm RM) error {
	var missing []string
	for _, p := range required(ssh, rm) {
		if _, err := lookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return &MissingError{Programs: missing}
	}
	return nil
}

// lookPath finds a program on PATH or in the sbin directories, which are
// not on every root PATH.
func lookPath(p string) (string, error) {
	if path, err := exec.LookPath(p); err == nil {
		return path, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if fi, err := os.Stat(filepath.Join(d, p)); err == nil && fi.Mode()&0o111 != 0 {
			return filepath.Join(d, p), nil
		}
	}
	return "", fmt.Errorf("%s not found", p)
}

// Up brings a cluster up: it removes what an earlier cluster of the same
// state directory left, then creates the namespaces, munged, slurmctld and
// one slurmd per node, and waits until every node is IDLE in Slurm. On error
// it tears down what it made.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if err := checkPrograms(opts.SSH, opts.RM); err != nil {
		return nil, err
	}
	c := &Cluster{logf: opts.Logf, st: state{
		Version:  stateVersion,
		Name:     opts.Name,
		Dir:      opts.StateDir,
		ID:       clusterID(opts.StateDir),
		CPUs:     opts.CPUs,
		Timeouts: opts.Timeouts,
		RM:       opts.RM,
		SSH:      opts.SSH,
		BinDir:   opts.BinDir,
		ShmSize:  opts.ShmSize,
	}}
	if opts.RM == RMFlux {
		if c.st.FluxProgram, err = FluxProgram(); err != nil {
			return nil, &MissingError{Programs: []string{"flux"}, Why: err.Error()}
		}
	}
	start := time.Now()
	if err := teardown(ctx, c.st.Dir, c.st.ID); err != nil {
		return nil, fmt.Errorf("vcluster: removing the stale cluster in %s: %w", c.st.Dir, err)
	}
	subnet, err := pickSubnet(c.st.Dir, c.st.ID)
	if err != nil {
		return nil, err
	}
	c.st.Subnet = subnet
	for i := 1; i <= opts.Nodes; i++ {
		c.st.Nodes = append(c.st.Nodes, nodeState{Name: nodeName(i), Addr: nodeAddr(subnet, i)})
	}
	if err := c.up(ctx); err != nil {
		c.logfln("vcluster: bring-up failed, tearing down: %v", err)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = c.Down(dctx)
		return nil, err
	}
	c.st.Up = time.Now()
	if err := c.save(); err != nil {
		return nil, err
	}
	c.logfln("vcluster: %d nodes up in %v (state %s, subnet %s)", opts.Nodes, time.Since(start).Round(time.Millisecond), c.st.Dir, c.Subnet())
	return c, nil
}

func (c *Cluster) up(ctx context.Context) error {
	if err := c.layout(); err != nil {
		return err
	}
	if err := c.save(); err != nil {
		return err
	}
	if err := registerSubnet(c.st.ID, c.st.Subnet, c.st.Dir); err != nil {
		return err
	}
	if c.IsFlux() {
		if err := c.fluxLayout(ctx); err != nil {
			return err
		}
	} else if err := c.startMunge(ctx); err != nil {
		return err
	}
	if c.st.SSH {
		if err := c.sshSetup(ctx); err != nil {
			return err
		}
	}
	if err := c.headNetwork(ctx); err != nil {
		return err
	}
	if err := c.startHolder(ctx, "head", false); err != nil {
		return err
	}
	if !c.IsFlux() {
		if err := c.startSlurmctld(ctx); err != nil {
			return err
		}
	}
	names := c.NodeNames()
	if err := forEach(ctx, names, func(ctx context.Context, n string) error { return c.bootNode(ctx, n) }); err != nil {
		return err
	}
	if c.st.SSH {
		if err := forEach(ctx, names, func(ctx context.Context, n string) error { return c.startSSHD(ctx, n) }); err != nil {
			return err
		}
	}
	if c.IsFlux() {
		return c.waitFluxUp(ctx, names, 60*time.Second)
	}
	return c.waitAllIdle(ctx, 60*time.Second)
}

// waitAllIdle polls slurmctld (one query for all nodes) until every node
// is IDLE, or the timeout passes; the error names the nodes that are not.
func (c *Cluster) waitAllIdle(ctx context.Context, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	names := c.NodeNames()
	var pending []string
	for {
		states, err := c.SlurmStates(wctx)
		if err == nil {
			byName := map[string]NodeState{}
			for _, s := range states {
				byName[s.Name] = s
			}
			pending = pending[:0]
			for _, n := range names {
				if s, ok := byName[n]; !ok || !IsIdle(s) {
					pending = append(pending, n+"="+s.State)
				}
			}
			if len(pending) == 0 {
				return nil
			}
		}
		select {
		case <-wctx.Done():
			first := "node1"
			if len(pending) > 0 {
				first, _, _ = strings.Cut(pending[0], "=")
			}
			return fmt.Errorf("vcluster: nodes not IDLE after %v: %v (%v); slurmd log of %s: %s; slurmctld log: %s",
				timeout, pending, wctx.Err(), first, tail(c.dir("log", "slurmd-"+first+".log"), 600), tail(c.dir("log", "slurmctld.log"), 600))
		case <-tk.C:
		}
	}
}

// forEach runs f for every name with bounded parallelism and returns the
// first error.
func forEach(ctx context.Context, names []string, f func(context.Context, string) error) error {
	const fanout = 16
	sem := make(chan struct{}, fanout)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(ctx, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// layout creates the state directory tree and the configuration files.
func (c *Cluster) layout() error {
	for _, d := range []string{"", "etc", "log", "run", "ctld", "spool", "shared"} {
		if err := os.MkdirAll(c.dir(d), 0o755); err != nil {
			return fmt.Errorf("vcluster: %w", err)
		}
	}
	if err := os.Chmod(c.dir(), 0o755); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	if err := os.Chmod(c.SharedDir(), 0o1777); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	for _, n := range c.st.Nodes {
		if err := os.MkdirAll(c.dir("spool", n.Name), 0o755); err != nil {
			return fmt.Errorf("vcluster: %w", err)
		}
	}
	if !c.IsFlux() {
		conf := slurmConf(confInput{ClusterName: "vc" + c.st.ID, Dir: c.st.Dir, Subnet: c.st.Subnet,
			Nodes: len(c.st.Nodes), CPUs: c.st.CPUs, Timeouts: c.st.Timeouts})
		if err := os.WriteFile(c.SlurmConf(), []byte(conf), 0o644); err != nil {
			return fmt.Errorf("vcluster: %w", err)
		}
	}
	// srun --mpi=pmix (Open MPI) puts its client directory under /tmp by
	// default, which every node shares here: use the node's own /dev/shm.
	if err := os.WriteFile(c.dir("etc", "mpi.conf"), []byte("PMIxCliTmpDirBase=/dev/shm\n"), 0o644); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	if err := os.WriteFile(c.dir("etc", "hosts"), []byte(hostsFile(c.st.Subnet, len(c.st.Nodes))), 0o644); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	return nil
}

// startMunge starts one munged in the root namespace; its socket file in the
// state directory serves every namespace. It runs as root with --force:
// the state directory may sit below a directory only root can enter (as
// t.TempDir() does), where user munge could not reach its key.
func (c *Cluster) startMunge(ctx context.Context) error {
	md := c.dir("munge")
	if err := os.MkdirAll(md, 0o755); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	key := make([]byte, 1024)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("vcluster: munge key: %w", err)
	}
	keyPath := filepath.Join(md, "munge.key")
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	munged, _ := lookPath("munged")
	cmd := exec.CommandContext(ctx, munged, "--force",
		"--socket="+filepath.Join(md, "munge.socket.2"),
		"--key-file="+keyPath,
		"--pid-file="+filepath.Join(md, "munged.pid"),
		"--log-file="+filepath.Join(md, "munged.log"),
		"--seed-file="+filepath.Join(md, "munged.seed"),
		"--num-threads=4")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = md
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("vcluster: starting munged: %w: %s %s", err, strings.TrimSpace(string(out)), tail(filepath.Join(md, "munged.log"), 400))
	}
	return nil
}

// mungePID returns the pid of this cluster's munged, checked against its
// command line (the socket path), or 0.
func mungePID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "munge", "munged.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cl), filepath.Join(dir, "munge", "munge.socket.2")) {
		return 0
	}
	return pid
}

// headNetwork creates the head namespace with the cluster bridge.
func (c *Cluster) headNetwork(ctx context.Context) error {
	h := c.netns("head")
	steps := [][]string{
		{"netns", "add", h},
		{"-n", h, "link", "set", "lo", "up"},
		// A fixed MAC: by default a bridge takes the lowest MAC of its
		// ports, so unplugging a node could change it and leave every
		// node's ARP entry for head stale for ~30 s (head unreachable).
		{"-n", h, "link", "add", "vcbr0", "address", fmt.Sprintf("02:76:63:fc:%02x:01", c.st.Subnet), "type", "bridge"},
		{"-n", h, "addr", "add", c.HeadAddr() + "/24", "dev", "vcbr0"},
		{"-n", h, "link", "set", "vcbr0", "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("vcluster: head network: %w", err)
		}
	}
	return nil
}

// nodeIndex returns the node's index in st.Nodes, or an error.
func (c *Cluster) nodeIndex(node string) (int, error) {
	for i, n := range c.st.Nodes {
		if n.Name == node {
			return i, nil
		}
	}
	return -1, &NodeError{Node: node, Op: "lookup", Err: ErrUnknownNode}
}

// plugNode creates the node's network namespace (if needed) and its link to
// the bridge: eth0 in the node, veth<i> on the bridge in head.
func (c *Cluster) plugNode(ctx context.Context, node string) error {
	i, err := c.nodeIndex(node)
	if err != nil {
		return err
	}
	ns, h := c.netns(node), c.netns("head")
	peer := fmt.Sprintf("veth%d", i+1)
	if _, err := os.Stat(netnsPath(ns)); err != nil {
		if err := ip(ctx, "netns", "add", ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"link", "add", "name", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", h},
		{"-n", ns, "addr", "add", c.st.Nodes[i].Addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", h, "link", "set", peer, "master", "vcbr0"},
		{"-n", h, "link", "set", peer, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// bootNode plugs the node in, starts its holder and its slurmd.
func (c *Cluster) bootNode(ctx context.Context, node string) error {
	if err := c.plugNode(ctx, node); err != nil {
		return &NodeError{Node: node, Op: "network", Err: err}
	}
	if err := c.startHolder(ctx, node, true); err != nil {
		return err
	}
	if c.IsFlux() {
		return c.startBroker(ctx, node)
	}
	return c.startSlurmd(ctx, node)
}

// holderScript runs as PID 1 of a node: it sets the hostname, mounts the
// node's private /dev/shm and the cluster's hosts file, drops its copy of
// /run/netns (so it pins no other namespace), mounts the cluster's
// ssh_config if any, hides the user's ~/.bashrc, reports ready on fd 3,
// and then reaps zombies forever (wait(2) in a loop).
//
// Debian's bash sources ~/.bashrc for every command run over ssh and for
// Flux's rc scripts (run on a socket stdin); the holder gets the real
// user's HOME even on a Flux cluster, whose commands have a HOME of their
// own (fluxHome).
const holderScript = `set -e
hostname "$1"
if [ "$2" = shm ]; then mount -t tmpfs -o "mode=1777${3:+,size=$3}" vcshm /dev/shm; fi
mount --bind "$4" /etc/hosts
if [ -n "$5" ] && [ -e /etc/ssh/ssh_config ]; then mount --bind "$5" /etc/ssh/ssh_config; fi
# ssh sessions on the node run a clean shell: the host user's ~/.bashrc
# (pyenv's rehash, say) would cost seconds per session and leave a lock
# behind when a timeout cuts the session off.
if [ -n "$HOME" ] && [ -f "$HOME/.bashrc" ]; then mount --bind /dev/null "$HOME/.bashrc" || true; fi
umount -l /run/netns 2>/dev/null || true
echo ready >&3
exec 3>&-
set +e
trap '' HUP INT TERM
while :; do sleep 3600 & wait; done
`

// startHolder starts the node's holder process and waits until it is ready.
func (c *Cluster) startHolder(ctx context.Context, node string, shm bool) error {
	logPath := c.dir("log", "holder-"+node+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	defer r.Close()
	shmArg := ""
	if shm {
		shmArg = "shm"
	}
	nsenter, _ := lookPath("nsenter")
	unshare, _ := lookPath("unshare")
	cmd := exec.Command(nsenter, "--net="+netnsPath(c.netns(node)), "--",
		unshare, "--uts", "--mount", "--fork", "--propagation", "private", "--pid", "--ipc", "--mount-proc", "--",
		"sh", "-c", holderScript, "holder", node, shmArg, c.st.ShmSize, c.dir("etc", "hosts"), c.SSHConfig())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(c.baseEnv(), "HOME="+userHome())
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		w.Close()
		return &NodeError{Node: node, Op: "starting holder", Err: err}
	}
	w.Close()
	c.waits.Add(1)
	go func() { defer c.waits.Done(); _ = cmd.Wait() }()

	ready := make(chan error, 1)
	go func() { // ends when the holder writes ready or exits (EOF)
		line, err := bufio.NewReader(r).ReadString('\n')
		if strings.TrimSpace(line) == "ready" {
			ready <- nil
			return
		}
		ready <- fmt.Errorf("holder exited before it was ready (%v): %s", err, tail(logPath, 400))
	}()
	select {
	case err := <-ready:
		if err != nil {
			return &NodeError{Node: node, Op: "starting holder", Err: err}
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return &NodeError{Node: node, Op: "starting holder", Err: ctx.Err()}
	}
	return nil
}

// userHome is the home directory of the user running the cluster (whose
// shell sshd starts on the nodes), "" if unknown.
func userHome() string {
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return ""
}

// holderPID finds the node's holder: the process in the node's network
// namespace that is PID 1 of its own PID namespace.
func (c *Cluster) holderPID(node string) (int, error) {
	id, err := nsOf(netnsPath(c.netns(node)))
	if err != nil {
		return 0, &NodeError{Node: node, Op: "finding holder", Err: err}
	}
	for _, pid := range pidsIn("net", id) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				return pid, nil
			}
		}
	}
	return 0, &NodeError{Node: node, Op: "finding holder", Err: errors.New("no holder process (node crashed or powered off)")}
}

// nsenterArgs are the nsenter arguments that enter a node (or head) and
// run argv in directory wd there ("" = the node's root). Entering the mount
// namespace makes "/" of the node the working directory; `env -C` then
// changes to wd inside the node. (nsenter --wd opens the directory before
// entering, in the caller's mount namespace: the process's cwd then lies
// outside the node's mount tree and getcwd(2) reports it "(unreachable)",
// which made Go programs, os.Getwd, fail.)
func nsenterArgs(holder int, wd string, argv []string) []string {
	a := []string{"-t", strconv.Itoa(holder), "-n", "-u", "-m", "-p", "-i", "--"}
	if wd != "" && wd != "/" {
		env, err := lookPath("env")
		if err != nil {
			env = "/usr/bin/env"
		}
		a = append(a, env, "-C", wd, "PWD="+wd)
	}
	return append(a, argv...)
}

// nodePath is PATH on the nodes: the project's bin dir, flux's, the system's.
func (c *Cluster) nodePath() []string {
	var p []string
	for _, d := range []string{c.st.BinDir, c.fluxBin()} {
		if d != "" {
			p = append(p, d)
		}
	}
	return append(p, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
}

// baseEnv is the environment of commands run on the nodes.
func (c *Cluster) baseEnv() []string {
	env := []string{"PATH=" + strings.Join(c.nodePath(), ":"), "VCLUSTER_STATE=" + c.st.Dir, "LC_ALL=C"}
	if !c.IsFlux() {
		env = append(env, "SLURM_CONF="+c.SlurmConf())
	}
	for _, k := range []string{"HOME", "USER", "LOGNAME", "TERM", "TMPDIR", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			if k == "HOME" && c.IsFlux() {
				v = c.fluxHome()
			}
			env = append(env, k+"="+v)
		}
	}
	return env
}

// daemon runs argv inside the node (or head) and waits for it: for daemons
// that fork into the background, whose parent then becomes the holder.
func (c *Cluster) daemon(ctx context.Context, node string, argv ...string) error {
	h, err := c.holderPID(node)
	if err != nil {
		return err
	}
	nsenter, _ := lookPath("nsenter")
	cmd := exec.CommandContext(ctx, nsenter, nsenterArgs(h, "/", argv)...)
	cmd.Env = c.baseEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &NodeError{Node: node, Op: "starting " + argv[0], Err: fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))}
	}
	return nil
}

func (c *Cluster) startSlurmctld(ctx context.Context) error {
	bin, _ := lookPath("slurmctld")
	if err := c.daemon(ctx, "head", bin, "-f", c.SlurmConf(), "-c"); err != nil {
		return fmt.Errorf("%w; slurmctld log: %s", err, tail(c.dir("log", "slurmctld.log"), 600))
	}
	return nil
}

func (c *Cluster) startSlurmd(ctx context.Context, node string) error {
	bin, _ := lookPath("slurmd")
	if err := c.daemon(ctx, node, bin, "-f", c.SlurmConf(), "-N", node); err != nil {
		return fmt.Errorf("%w; slurmd log: %s", err, tail(c.dir("log", "slurmd-"+node+".log"), 600))
	}
	return nil
}

// save writes state.json atomically.
func (c *Cluster) save() error {
	b, err := json.MarshalIndent(&c.st, "", "  ")
	if err != nil {
		return err
	}
	p := c.dir("state.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("vcluster: saving state: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("vcluster: saving state: %w", err)
	}
	return nil
}

// Load attaches to a cluster brought up (by this or another process) in
// stateDir ("" = the default of Options.Name, itself default "default").
func Load(stateDir, name string) (*Cluster, error) {
	o, err := Options{StateDir: stateDir, Name: name}.withDefaults()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(o.StateDir, "state.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s (run `vcluster up` first)", ErrNoCluster, o.StateDir)
		}
		return nil, fmt.Errorf("vcluster: %w", err)
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, &c.st); err != nil {
		return nil, fmt.Errorf("vcluster: %s/state.json: %w", o.StateDir, err)
	}
	if c.st.Version != stateVersion {
		return nil, fmt.Errorf("vcluster: %s/state.json has version %d, want %d: run `vcluster down` and up again", o.StateDir, c.st.Version, stateVersion)
	}
	return c, nil
}

// SetLogf sets the progress logger (nil: none).
func (c *Cluster) SetLogf(f func(string, ...any)) { c.logf = f }

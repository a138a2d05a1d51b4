package vcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// registryDir records which subnet each live cluster uses, so that two
// clusters on one machine pick different subnets.
const registryDir = "/run/vcluster"

func registerSubnet(id string, subnet int, dir string) error {
	if err := os.MkdirAll(registryDir, 0o755); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	line := fmt.Sprintf("%d %s\n", subnet, dir)
	if err := os.WriteFile(filepath.Join(registryDir, id), []byte(line), 0o644); err != nil {
		return fmt.Errorf("vcluster: %w", err)
	}
	return nil
}

// pickSubnet starts from the state directory's seed and skips subnets that
// another live cluster (its head namespace exists) registered.
func pickSubnet(dir, id string) (int, error) {
	used := map[int]bool{}
	ents, _ := os.ReadDir(registryDir)
	for _, e := range ents {
		if e.Name() == id {
			continue
		}
		if _, err := os.Stat(netnsPath("vc-" + e.Name() + "-head")); err != nil {
			_ = os.Remove(filepath.Join(registryDir, e.Name())) // stale
			continue
		}
		b, err := os.ReadFile(filepath.Join(registryDir, e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				used[n] = true
			}
		}
	}
	x := subnetSeed(dir)
	for range 254 {
		if !used[x] {
			return x, nil
		}
		x = x%254 + 1
	}
	return 0, errors.New("vcluster: every subnet 10.252.1-254.0/24 is taken by a live cluster: run `vcluster down` on some")
}

// clusterNetns lists the network namespaces of cluster id.
func clusterNetns(id string) []string {
	ents, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "vc-"+id+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// isStateDir reports whether dir may be removed by teardown: it does not
// exist, is empty, or holds a vcluster state.
func isStateDir(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(ents) == 0) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, f := range []string{"state.json", "etc/slurm.conf", "munge", "flux/conf/system.toml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true, nil
		}
	}
	return false, nil
}

// teardown removes everything cluster id with state directory dir made:
// every process in its namespaces (found through /proc/<pid>/ns/net), its
// munged, its namespaces and its files. Safe to run when nothing is left.
func teardown(ctx context.Context, dir, id string) error {
	ok, err := isStateDir(dir)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s exists and is not a vcluster state directory: refusing to remove it; choose another --state", dir)
	}
	names := clusterNetns(id)
	var ids []nsID
	for _, n := range names {
		if nid, err := nsOf(netnsPath(n)); err == nil {
			ids = append(ids, nid)
		}
	}
	kctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var errs []error
	if err := killAllIn(kctx, "net", ids...); err != nil {
		errs = append(errs, err)
	}
	if pid := mungePID(dir); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if err := waitGone(kctx, pid); err != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, n := range names {
		if err := ip(ctx, "netns", "del", n); err != nil {
			if _, serr := os.Stat(netnsPath(n)); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	_ = os.Remove(filepath.Join(registryDir, id))
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func waitGone(ctx context.Context, pid int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for pidAlive(pid) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Down removes every namespace, process, mount and file of the cluster. It
// is safe to call twice, and on a cluster whose processes already died.
func (c *Cluster) Down(ctx context.Context) error {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	start := time.Now()
	err := teardown(ctx, c.st.Dir, c.st.ID)
	done := make(chan struct{})
	go func() { c.waits.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if err != nil {
		return fmt.Errorf("vcluster: down %s: %w", c.st.Dir, err)
	}
	c.logfln("vcluster: down in %v", time.Since(start).Round(time.Millisecond))
	return nil
}

// DownDir tears down whatever cluster uses stateDir, with or without a
// readable state.json (for a crashed test or `vcluster down`).
func DownDir(ctx context.Context, stateDir, name string) error {
	o, err := Options{StateDir: stateDir, Name: name}.withDefaults()
	if err != nil {
		return err
	}
	if err := teardown(ctx, o.StateDir, clusterID(o.StateDir)); err != nil {
		return fmt.Errorf("vcluster: down %s: %w", o.StateDir, err)
	}
	return nil
}

// PowerOff simulates pulling the node's plug: it cuts the node's link first
// (so no FIN or RST escapes), then SIGKILLs every process in the node's
// namespaces, and waits until the node's mount namespace, and with it its
// /dev/shm tmpfs, is gone. It returns the time the link was cut.
func (c *Cluster) PowerOff(ctx context.Context, node string) (time.Time, error) {
	return c.PowerOffNodes(ctx, []string{node})
}

// PowerOffNodes powers several nodes off at once (a rack failing): every
// link is cut before any process is killed. It returns the time the last
// link was cut.
func (c *Cluster) PowerOffNodes(ctx context.Context, nodes []string) (time.Time, error) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	idx := make([]int, len(nodes))
	var netIDs, mntIDs []nsID
	for k, node := range nodes {
		i, err := c.nodeIndex(node)
		if err != nil {
			return time.Time{}, err
		}
		if c.PoweredOff(node) {
			return time.Time{}, &NodeError{Node: node, Op: "power off", Err: ErrPoweredOff}
		}
		idx[k] = i
		netID, err := nsOf(netnsPath(c.netns(node)))
		if err != nil {
			return time.Time{}, &NodeError{Node: node, Op: "power off", Err: err}
		}
		netIDs = append(netIDs, netID)
		if h, err := c.holderPID(node); err == nil {
			// Held open until the kill is over: a namespace that dies
			// (with the holder, in the net kill below) frees its inode
			// number for the next one made anywhere on the machine (another
			// cluster's holder, say), which the mnt kill would then hit.
			if f, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", h)); err == nil {
				defer f.Close()
				if m, err := nsOfFile(f); err == nil {
					mntIDs = append(mntIDs, m)
				}
			}
		}
	}
	for k, node := range nodes {
		if err := ip(ctx, "-n", c.netns("head"), "link", "del", fmt.Sprintf("veth%d", idx[k]+1)); err != nil {
			return time.Time{}, &NodeError{Node: node, Op: "power off (cutting the link)", Err: err}
		}
	}
	at := time.Now()
	kctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	name := strings.Join(nodes, ",")
	if err := killAllIn(kctx, "net", netIDs...); err != nil {
		return at, &NodeError{Node: name, Op: "power off", Err: err}
	}
	if err := killAllIn(kctx, "mnt", mntIDs...); err != nil {
		return at, &NodeError{Node: name, Op: "power off (tmpfs)", Err: err}
	}
	c.mu.Lock()
	for _, i := range idx {
		c.st.Nodes[i].PoweredOff = true
	}
	err := c.save()
	c.mu.Unlock()
	if err != nil {
		return at, err
	}
	c.logfln("vcluster: %s powered off (links cut at %s, dark %v later)", name, at.Format("15:04:05.000"), time.Since(at).Round(time.Millisecond))
	return at, nil
}

// PowerOn boots a powered-off node again: link, holder with an empty
// /dev/shm, slurmd; it returns once Slurm sees the node responding and not
// DOWN (IDLE, or ALLOCATED if Slurm never noticed it was gone). On a Flux
// cluster it starts the node's broker and returns once the broker rejoined
// the system instance.
func (c *Cluster) PowerOn(ctx context.Context, node string) error {
	c.pmu.Lock()
	i, err := c.nodeIndex(node)
	if err != nil {
		c.pmu.Unlock()
		return err
	}
	if !c.PoweredOff(node) {
		c.pmu.Unlock()
		return &NodeError{Node: node, Op: "power on", Err: errors.New("node is not powered off")}
	}
	err = c.bootNode(ctx, node)
	if err == nil && c.st.SSH {
		err = c.startSSHD(ctx, node)
	}
	if err == nil {
		c.mu.Lock()
		c.st.Nodes[i].PoweredOff = false
		err = c.save()
		c.mu.Unlock()
	}
	c.pmu.Unlock()
	if err != nil {
		return err
	}
	if c.IsFlux() {
		// Back once its broker rejoined the system instance.
		return c.waitFluxUp(ctx, []string{node}, 60*time.Second)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := c.WaitState(wctx, node, func(s NodeState) bool { return !IsNotResponding(s) && !s.Has("DRAIN") })
	if err != nil {
		return &NodeError{Node: node, Op: "power on", Err: fmt.Errorf("slurm state %s (%s): %w", st.State, st.Reason, err)}
	}
	return nil
}

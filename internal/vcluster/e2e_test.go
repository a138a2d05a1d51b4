package vcluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// These tests need SCR_E2E=1 and root (vcluster.Require); each brings up
// its own cluster in t.TempDir().

// getwdProbe: run on a node, the test binary prints what getcwd(2) says
// there (syscall.Getwd: no help from $PWD, as a C program sees it).
func init() {
	if os.Getenv("VCLUSTER_GETWD_PROBE") == "1" {
		wd, err := syscall.Getwd()
		if err != nil {
			fmt.Println("getwd error:", err)
			os.Exit(1)
		}
		fmt.Println(wd)
		os.Exit(0)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustExec(t *testing.T, ctx context.Context, c *vcluster.Cluster, node string, argv ...string) string {
	t.Helper()
	out, err := c.Exec(ctx, node, argv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// waitFile waits until path exists (a task reports it started).
func waitFile(ctx context.Context, path string) error {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-tk.C:
		}
	}
}

func TestUpDownLeavesNothing(t *testing.T) {
	vcluster.Require(t)
	ctx := ctxT(t, 2*time.Minute)
	tmp, err := os.MkdirTemp("", "vc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(tmp, "c")
	start := time.Now()
	c, err := vcluster.Up(ctx, vcluster.Options{StateDir: dir, Nodes: 3, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bring-up to 3 IDLE nodes: %v", time.Since(start).Round(time.Millisecond))
	out := mustExec(t, ctx, c, "node1", "srun", "-N3", "hostname")
	hosts := strings.Fields(out)
	sort.Strings(hosts)
	if strings.Join(hosts, ",") != "node1,node2,node3" {
		t.Fatalf("srun -N3 hostname printed %q", out)
	}

	// A crashed test leaves its cluster behind: the next Up of the same
	// state directory must clean it and work.
	mustExec(t, ctx, c, "node2", "sh", "-c", "sleep 600 >/dev/null 2>&1 &")
	start = time.Now()
	c2, err := vcluster.Up(ctx, vcluster.Options{StateDir: dir, Nodes: 2, Logf: t.Logf})
	if err != nil {
		t.Fatalf("up over a stale cluster: %v", err)
	}
	t.Logf("bring-up over a stale cluster: %v", time.Since(start).Round(time.Millisecond))
	if got := len(c2.Nodes()); got != 2 {
		t.Fatalf("%d nodes, want 2", got)
	}
	if out := mustExec(t, ctx, c2, "node2", "sh", "-c", "pgrep -c -x sleep || true"); strings.TrimSpace(out) != "1" {
		// Only the holder's own sleep may run: the stale sleep 600 is gone.
		t.Errorf("sleep processes on the new node2: %q, want 1 (the holder's)", out)
	}

	// Remember what to look for after Down.
	var ns []string
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "vc-") && strings.Contains(mustRead(t, filepath.Join("/run/vcluster", strings.Split(e.Name(), "-")[1])), dir) {
			ns = append(ns, e.Name())
		}
	}
	if len(ns) != 3 { // head, node1, node2
		t.Fatalf("cluster namespaces %v, want 3", ns)
	}
	var nsInodes []string
	for _, n := range ns {
		fi, err := os.Stat("/run/netns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		nsInodes = append(nsInodes, fmt.Sprintf("net:[%d]", inode(fi)))
	}

	start = time.Now()
	if err := c2.Down(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("tear-down: %v", time.Since(start).Round(time.Millisecond))
	if err := c2.Down(ctx); err != nil {
		t.Fatalf("second down: %v", err)
	}
	if err := c.Down(ctx); err != nil { // the stale handle too
		t.Fatalf("down of the stale handle: %v", err)
	}

	list, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if strings.Contains(string(list), n) {
			t.Errorf("namespace %s still listed by ip netns list", n)
		}
	}
	mounts := mustRead(t, "/proc/mounts")
	for _, n := range ns {
		if strings.Contains(mounts, n) {
			t.Errorf("mount of %s left in /proc/mounts", n)
		}
	}
	if strings.Contains(mounts, dir) {
		t.Errorf("mount under %s left in /proc/mounts", dir)
	}
	if pids := procsWithNS(nsInodes); len(pids) > 0 {
		t.Errorf("processes %v still in the cluster's network namespaces", pids)
	}
	if pids := procsWithArg(dir); len(pids) > 0 {
		t.Errorf("processes %v still refer to the state dir", pids)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s not removed: %v", dir, err)
	}
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// procsWithNS lists processes whose net namespace link reads one of links.
func procsWithNS(links []string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		l, err := os.Readlink("/proc/" + e.Name() + "/ns/net")
		if err != nil {
			continue
		}
		for _, want := range links {
			if l == want {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// procsWithArg lists live processes whose command line mentions s.
func procsWithArg(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestTmpfsIsolationAndSharedDir(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 2})
	ctx := ctxT(t, time.Minute)
	name := fmt.Sprintf("vc-isolation-%d", os.Getpid())
	mustExec(t, ctx, c, "node1", "sh", "-c", "echo secret > /dev/shm/"+name)
	if out := mustExec(t, ctx, c, "node1", "cat", "/dev/shm/"+name); strings.TrimSpace(out) != "secret" {
		t.Fatalf("node1 reads back %q", out)
	}
	if out, err := c.Exec(ctx, "node2", []string{"cat", "/dev/shm/" + name}, nil); err == nil {
		t.Errorf("node2 sees node1's /dev/shm file: %q", out)
	}
	if _, err := os.Stat("/dev/shm/" + name); err == nil {
		t.Errorf("the host sees node1's /dev/shm file")
	}
	for _, n := range []string{"node1", "node2"} {
		mounts := mustExec(t, ctx, c, n, "cat", "/proc/self/mounts")
		if !strings.Contains(mounts, "vcshm /dev/shm tmpfs") {
			t.Errorf("%s: /dev/shm is not the node's tmpfs:\n%s", n, mounts)
		}
		if h := strings.TrimSpace(mustExec(t, ctx, c, n, "hostname")); h != n {
			t.Errorf("hostname on %s is %q", n, h)
		}
	}
	// The shared directory is the same on both nodes, and the working
	// directory is kept.
	shared := filepath.Join(c.SharedDir(), "hello")
	mustExec(t, ctx, c, "node1", "sh", "-c", "hostname > "+shared)
	if out := mustExec(t, ctx, c, "node2", "cat", shared); strings.TrimSpace(out) != "node1" {
		t.Errorf("node2 reads %q from the shared dir", out)
	}
	cmd := c.CommandDir(ctx, "node2", c.SharedDir(), []string{"pwd"}, []string{"FOO=bar"})
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != c.SharedDir() {
		t.Errorf("pwd in the shared dir on node2: %q %v", out, err)
	}
	// A program sees the directory too (getcwd(2) used to report it
	// "(unreachable)": the directory was opened outside the node).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd = c.CommandDir(ctx, "node2", c.SharedDir(), []string{self}, []string{"VCLUSTER_GETWD_PROBE=1"})
	out, err = cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != c.SharedDir() {
		t.Errorf("getcwd in the shared dir on node2: %q %v", out, err)
	}
	// Own PID namespace: the node's PID 1 is the holder.
	if out := mustExec(t, ctx, c, "node2", "cat", "/proc/1/comm"); strings.TrimSpace(out) != "sh" {
		t.Errorf("PID 1 on node2 is %q, want the holder shell", out)
	}
}

func TestSrunPMI2AcrossNodes(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 2})
	ctx := ctxT(t, time.Minute)
	out := mustExec(t, ctx, c, "node1", "srun", "-N2", "-n2", "--mpi=pmi2", "sh", "-c",
		`echo "host=$(hostname) fd=$PMI_FD rank=$PMI_RANK size=$PMI_SIZE"`)
	t.Logf("srun --mpi=pmi2:\n%s", out)
	ranks := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := map[string]string{}
		for _, kv := range strings.Fields(sc.Text()) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["fd"] == "" || f["size"] != "2" {
			t.Errorf("task without PMI_FD or with PMI_SIZE != 2: %q", sc.Text())
		}
		ranks[f["rank"]] = f["host"]
	}
	if len(ranks) != 2 || ranks["0"] == ranks["1"] || ranks["0"] == "" || ranks["1"] == "" {
		t.Errorf("ranks 0 and 1 not on two nodes: %v", ranks)
	}
}

func TestPowerOffDetectedAndPowerOn(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3})
	ctx := ctxT(t, 2*time.Minute)
	mustExec(t, ctx, c, "node3", "sh", "-c", "echo data > /dev/shm/ckpt")

	mac := bridgeMAC(t, ctx, c)
	at, err := c.PowerOff(ctx, "node3")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("poweroff: node3 dark %v after the link was cut", time.Since(at).Round(time.Millisecond))
	// Unplugging a node must not change the bridge's MAC (else the other
	// nodes cannot reach head until their ARP entries expire, ~30 s).
	if after := bridgeMAC(t, ctx, c); after != mac {
		t.Errorf("bridge MAC changed from %s to %s on poweroff", mac, after)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if out, err := c.Exec(pctx, "node1", []string{"scontrol", "ping"}, nil); err != nil || !strings.Contains(string(out), "is UP") {
		t.Errorf("slurmctld unreachable from node1 right after node3's poweroff: %s %v", out, err)
	}
	cancel()
	if _, err := c.Exec(ctx, "node3", []string{"true"}, nil); !errors.Is(err, vcluster.ErrPoweredOff) {
		t.Errorf("exec on a powered-off node: %v, want ErrPoweredOff", err)
	}
	if _, err := c.PowerOff(ctx, "node3"); !errors.Is(err, vcluster.ErrPoweredOff) {
		t.Errorf("second poweroff: %v, want ErrPoweredOff", err)
	}
	out, err := c.Exec(ctx, "node1", []string{"ping", "-c1", "-W1", "node3"}, nil)
	pingDone := time.Since(at)
	if err == nil {
		t.Fatalf("ping node3 from node1 succeeded after poweroff: %s", out)
	}
	if pingDone > 2*time.Second {
		t.Errorf("ping failed only %v after poweroff, want within 2 s", pingDone)
	}
	t.Logf("poweroff -> ping from node1 fails: %v", pingDone.Round(time.Millisecond))

	st, err := c.WaitState(ctxT(t, 40*time.Second), "node3", vcluster.IsNotResponding)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("poweroff -> Slurm %s: %v", st.State, time.Since(at).Round(time.Millisecond))
	st, err = c.WaitState(ctxT(t, 40*time.Second), "node3", vcluster.IsDown)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("poweroff -> Slurm %s (%s): %v", st.State, st.Reason, time.Since(at).Round(time.Millisecond))
	for _, n := range []string{"node1", "node2"} {
		if s, err := c.SlurmState(ctx, n); err != nil || !vcluster.IsIdle(s) {
			t.Errorf("%s: %+v %v, want IDLE", n, s, err)
		}
	}

	start := time.Now()
	if err := c.PowerOn(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitState(ctxT(t, 30*time.Second), "node3", vcluster.IsIdle); err != nil {
		t.Fatal(err)
	}
	t.Logf("poweron -> IDLE: %v", time.Since(start).Round(time.Millisecond))
	if out, err := c.Exec(ctx, "node3", []string{"ls", "-A", "/dev/shm"}, nil); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("node3's /dev/shm after power-on: %q %v, want empty (the tmpfs was dropped)", out, err)
	}
	hosts := strings.Fields(mustExec(t, ctx, c, "node1", "srun", "-N3", "hostname"))
	if len(hosts) != 3 {
		t.Errorf("srun -N3 after power-on printed %v", hosts)
	}
}

// A job step spanning a node that is powered off, in an allocation that
// survives node failure (sbatch --no-kill), with fast Slurm timeouts.
func TestStepOnPoweredOffNodeNoKill(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3})
	ctx := ctxT(t, 2*time.Minute)
	out := filepath.Join(c.SharedDir(), "out")
	if err := os.MkdirAll(out, 0o777); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
out=%s
srun -N2 -n2 -w node2,node3 sh -c 'touch $0/task.$SLURM_PROCID; exec sleep 600' $out 2>$out/step1.err
echo "$? $(date +%%s.%%N)" > $out/step1.rc
srun -N2 -n2 --exclude=node3 hostname > $out/step2.out 2>&1
echo "$? $(date +%%s.%%N)" > $out/step2.rc
`, out)
	job, err := c.Sbatch(ctx, script, "-N3", "--no-kill", "--no-requeue", "-o", filepath.Join(out, "job.out"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"task.0", "task.1"} {
		if err := waitFile(ctxT(t, 30*time.Second), filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	at, err := c.PowerOff(ctx, "node3")
	if err != nil {
		t.Fatal(err)
	}
	if err := waitFile(ctxT(t, 60*time.Second), filepath.Join(out, "step2.rc")); err != nil {
		b, _ := os.ReadFile(filepath.Join(out, "step1.err"))
		t.Fatalf("%v; step 1 stderr: %s", err, b)
	}
	rc1, t1 := readRC(t, filepath.Join(out, "step1.rc"))
	rc2, t2 := readRC(t, filepath.Join(out, "step2.rc"))
	errText, _ := os.ReadFile(filepath.Join(out, "step1.err"))
	t.Logf("poweroff -> srun of the step on node2,node3 returned: %.2f s, exit %d, stderr: %s", t1-unix(at), rc1, strings.TrimSpace(string(errText)))
	t.Logf("next step --exclude=node3 ran in %.3f s, exit %d", t2-t1, rc2)
	if rc1 == 0 {
		t.Errorf("srun of the step on the dead node exited 0")
	}
	if rc2 != 0 {
		b, _ := os.ReadFile(filepath.Join(out, "step2.out"))
		t.Errorf("the next step exited %d: %s", rc2, b)
	}
	hosts := strings.Fields(mustRead(t, filepath.Join(out, "step2.out")))
	sort.Strings(hosts)
	if strings.Join(hosts, ",") != "node1,node2" {
		t.Errorf("next step ran on %v, want node1,node2", hosts)
	}
	if st, err := c.SlurmState(ctx, "node3"); err != nil || !vcluster.IsDown(st) {
		t.Errorf("node3 state %+v %v, want DOWN", st, err)
	}
	state, err := c.WaitJob(ctxT(t, 30*time.Second), job, func(s string) bool { return s == "COMPLETED" })
	if err != nil {
		t.Errorf("job %s: %v (it should survive the node under --no-kill and complete)", job, err)
	}
	t.Logf("job %s ended %s", job, state)
}

func readRC(t *testing.T, p string) (int, float64) {
	t.Helper()
	f := strings.Fields(mustRead(t, p))
	if len(f) != 2 {
		t.Fatalf("%s: %q", p, f)
	}
	rc, err1 := strconv.Atoi(f[0])
	ts, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: %q", p, f)
	}
	return rc, ts
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func TestSSHBetweenNodes(t *testing.T) {
	vcluster.Require(t)
	if err := vcluster.CheckPrograms(true); err != nil {
		t.Fatal(err)
	}
	c := vcluster.Start(t, vcluster.Options{Nodes: 2, SSH: true})
	ctx := ctxT(t, time.Minute)
	if c.SSHConfig() == "" {
		t.Fatal("no ssh config with Options.SSH")
	}
	out := mustExec(t, ctx, c, "node1", "ssh", "node2", "hostname; echo $SLURM_CONF")
	if f := strings.Fields(out); len(f) != 2 || f[0] != "node2" || f[1] != c.SlurmConf() {
		t.Errorf("ssh node2 from node1 printed %q", out)
	}
	at, err := c.PowerOff(ctx, "node2")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Exec(ctx, "node1", []string{"ssh", "node2", "true"}, nil); err == nil {
		t.Fatalf("ssh to a powered-off node succeeded: %s", out)
	}
	t.Logf("poweroff -> ssh node2 fails: %v", time.Since(at).Round(time.Millisecond))
	if err := c.PowerOn(ctx, "node2"); err != nil {
		t.Fatal(err)
	}
	if out := mustExec(t, ctx, c, "node1", "ssh", "node2", "hostname"); strings.TrimSpace(out) != "node2" {
		t.Errorf("ssh after power-on printed %q", out)
	}
}

// bridgeMAC is the MAC address of the cluster bridge in head.
func bridgeMAC(t *testing.T, ctx context.Context, c *vcluster.Cluster) string {
	t.Helper()
	f := strings.Fields(mustExec(t, ctx, c, "head", "ip", "-o", "link", "show", "vcbr0"))
	for i, w := range f {
		if w == "link/ether" && i+1 < len(f) {
			return f[i+1]
		}
	}
	t.Fatalf("no MAC for vcbr0 in %q", f)
	return ""
}

func TestPowerOffTwoNodesAtOnce(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, Timeouts: vcluster.TimeoutsProduction})
	ctx := ctxT(t, time.Minute)
	at, err := c.PowerOffNodes(ctx, []string{"node2", "node3"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node2 and node3 dark %v after their links were cut", time.Since(at).Round(time.Millisecond))
	for _, n := range []string{"node2", "node3"} {
		if !c.PoweredOff(n) {
			t.Errorf("%s not marked powered off", n)
		}
		if out, err := c.Exec(ctx, "node1", []string{"ping", "-c1", "-W1", n}, nil); err == nil {
			t.Errorf("ping %s succeeded after power-off: %s", n, out)
		}
	}
	if out := mustExec(t, ctx, c, "node1", "srun", "-N1", "-w", "node1", "hostname"); strings.TrimSpace(out) != "node1" {
		t.Errorf("srun on the surviving node printed %q", out)
	}
	for _, n := range []string{"node2", "node3"} {
		if err := c.PowerOn(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if hosts := strings.Fields(mustExec(t, ctx, c, "node1", "srun", "-N3", "hostname")); len(hosts) != 3 {
		t.Errorf("srun -N3 after power-on printed %v", hosts)
	}
}

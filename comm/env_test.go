package comm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/pmi"
	"github.com/scr-go/scr/internal/prefix"
	"github.com/scr-go/scr/internal/safefs"
	"github.com/scr-go/scr/internal/safefs/safefstest"
)

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// fromEnvWorld bootstraps p ranks in this process with FromEnv, each with
// its own environment from envOf.
func fromEnvWorld(t *testing.T, p int, envOf func(r int) map[string]string) []Comm {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms := make([]Comm, p)
	errs := make([]error, p)
	var wg sync.WaitGroup
	for r := range p {
		wg.Go(func() {
			comms[r], errs[r] = FromEnv(ctx, Options{Getenv: mapEnv(envOf(r)), OnPeerLost: func(*PeerLostError) {}})
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return comms
}

func checkWorld(t *testing.T, comms []Comm) {
	t.Helper()
	mustAll(t, runRanks(t, comms, func(ctx context.Context, c Comm) error {
		if c.Size() != len(comms) {
			return fmt.Errorf("size %d", c.Size())
		}
		for r := range c.Size() {
			if want := fmt.Sprintf("n%d", r/2); c.Host(r) != want {
				return fmt.Errorf("host %d = %q, want %q", r, c.Host(r), want)
			}
		}
		got, err := c.Allreduce(ctx, OpSum, []int64{int64(c.Rank())})
		if err != nil {
			return err
		}
		if want := int64(len(comms) * (len(comms) - 1) / 2); got[0] != want {
			return fmt.Errorf("sum %d want %d", got[0], want)
		}
		return c.Barrier(ctx)
	}))
}

func TestFromEnvRendezvous(t *testing.T) {
	const p = 5
	dir := t.TempDir()
	comms := fromEnvWorld(t, p, func(r int) map[string]string {
		return map[string]string{
			"OMPI_COMM_WORLD_RANK": strconv.Itoa(r), "OMPI_COMM_WORLD_SIZE": strconv.Itoa(p),
			"SCR_RENDEZVOUS_DIR": dir, "SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": fmt.Sprintf("n%d", r/2),
		}
	})
	defer closeAll(comms)
	checkWorld(t, comms)
	st, err := os.Stat(dir + "/secret")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", st, err)
	}
}

func TestFromEnvPMI(t *testing.T) {
	const p = 6
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := pmi.NewServer(p, "kvs")
	fds := make([]int, p)
	for r := range p {
		pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(pair[0]), "pmi")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go srv.Serve(ctx, c, r)
		fds[r] = pair[1]
		defer syscall.Close(pair[1])
	}
	comms := fromEnvWorld(t, p, func(r int) map[string]string {
		return map[string]string{
			"PMI_FD": strconv.Itoa(fds[r]), "PMI_RANK": strconv.Itoa(r), "PMI_SIZE": strconv.Itoa(p),
			"SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": fmt.Sprintf("n%d", r/2),
		}
	})
	defer closeAll(comms)
	checkWorld(t, comms)
}

func TestFromEnvSingleton(t *testing.T) {
	c, err := FromEnv(context.Background(), Options{Getenv: mapEnv(map[string]string{"SCR_NODE_NAME": "solo"})})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size() != 1 || c.Rank() != 0 || c.Host(0) != "solo" {
		t.Fatalf("singleton: rank %d size %d host %s", c.Rank(), c.Size(), c.Host(0))
	}
	got, err := c.Allreduce(context.Background(), OpMax, []int64{4})
	if err != nil || got[0] != 4 {
		t.Fatalf("allreduce: %v %v", got, err)
	}
}

func TestLauncherVars(t *testing.T) {
	for _, tc := range []struct {
		name       string
		env        map[string]string
		ok         bool
		rank, size int
		launcher   string
		wantErr    bool
	}{
		{"none", map[string]string{}, false, 0, 0, "", false},
		{"slurm batch script is not a step", map[string]string{"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"}, false, 0, 0, "", false},
		{"srun task", map[string]string{"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "7", "SLURM_STEP_ID": "2"}, true, 3, 4, "slurm", false},
		{"flux", map[string]string{"FLUX_TASK_RANK": "1", "FLUX_JOB_SIZE": "2", "FLUX_JOB_ID": "f3"}, true, 1, 2, "flux", false},
		{"open mpi", map[string]string{"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8"}, true, 5, 8, "ompi", false},
		{"pmix rank", map[string]string{"PMIX_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"}, true, 2, 3, "ompi", false},
		{"jsrun", map[string]string{"JSM_NAMESPACE_RANK": "0", "JSM_NAMESPACE_SIZE": "6", "LSB_JOBID": "11"}, true, 0, 6, "jsm", false},
		{"rank beyond size", map[string]string{"OMPI_COMM_WORLD_RANK": "8", "OMPI_COMM_WORLD_SIZE": "8"}, false, 0, 0, "", true},
		{"garbage", map[string]string{"FLUX_TASK_RANK": "x", "FLUX_JOB_SIZE": "2"}, false, 0, 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lv, ok, err := launcherVars(mapEnv(tc.env))
			if (err != nil) != tc.wantErr || ok != tc.ok || (ok && (lv.rank != tc.rank || lv.size != tc.size || lv.name != tc.launcher)) {
				t.Fatalf("got %+v ok=%v err=%v", lv, ok, err)
			}
		})
	}
}

func TestRendezvousDir(t *testing.T) {
	lv := launcher{name: "slurm", rank: 1, size: 2, step: "7.2"}
	d, err := rendezvousDir(mapEnv(map[string]string{"SCR_PREFIX": "/p", "SCR_RUN_ID": "3"}), lv)
	if err != nil || d != "/p/.scr/rendezvous/slurm-7.2-run3" {
		t.Fatalf("got %q %v", d, err)
	}
	if _, err := rendezvousDir(mapEnv(nil), lv); err == nil {
		t.Fatal("no prefix and no dir accepted")
	}
	if _, err := rendezvousDir(mapEnv(map[string]string{"SCR_PREFIX": "/p"}), launcher{name: "mvapich"}); err == nil {
		t.Fatal("no key accepted")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, v := range []string{"0", "-1", "abc", "0.01"} {
		o := Options{Getenv: mapEnv(map[string]string{"SCR_COMM_TIMEOUT": v, "SCR_NODE_NAME": "x"})}
		if err := o.fill(); err == nil {
			t.Errorf("SCR_COMM_TIMEOUT=%s accepted", v)
		}
	}
	o := Options{Getenv: mapEnv(map[string]string{"SCR_COMM_TIMEOUT": "1.5", "SCR_NODE_NAME": "x"})}
	if err := o.fill(); err != nil || o.Timeout != 1500*time.Millisecond {
		t.Fatalf("1.5: %v %v", o.Timeout, err)
	}
}

func TestListenAddr(t *testing.T) {
	if a, err := listenAddr("127.0.0.5"); err != nil || a != "127.0.0.5" {
		t.Fatalf("explicit IP: %q %v", a, err)
	}
	if a, err := listenAddr("localhost"); err != nil || net.ParseIP(a) == nil {
		t.Fatalf("name: %q %v", a, err)
	}
	if _, err := listenAddr("no-such-host.invalid"); err == nil {
		t.Fatal("unresolvable name accepted")
	}
	a, err := listenAddr("")
	if err != nil || net.ParseIP(a) == nil {
		t.Fatalf("default: %q %v", a, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(a, "0"))
	if err != nil {
		t.Fatalf("the default address %s is not an address of this machine: %v", a, err)
	}
	ln.Close()
	t.Logf("default listen address here: %s", a)
}

// The default policy: one timeline event from the rank that noticed, one
// stderr line, exit 75 (os.Exit replaced here).
func TestDefaultPolicy(t *testing.T) {
	pfx := t.TempDir()
	var out strings.Builder
	code := -1
	p := &policy{rank: 2, opts: Options{Prefix: pfx, Node: "n2", Stderr: &out, Timeout: time.Second,
		Getenv: mapEnv(map[string]string{"SCR_RUN_ID": "4"}), Exit: func(c int) { code = c }}}
	e := &PeerLostError{Rank: 5, Host: "n5", Reason: "no heartbeat for 3.0s"}
	p.onLost(e, true)
	p.onLost(e, true) // once only
	if code != ExitPeerLost || out.String() != "scr: lost rank 5 on n5: no heartbeat for 3.0s\n" {
		t.Fatalf("exit %d, stderr %q", code, out.String())
	}
	evs, err := prefix.ReadTimeline(pfx)
	if err != nil || len(evs) != 1 {
		t.Fatalf("timeline: %v %v", evs, err)
	}
	ev := evs[0]
	if ev.Event != "peer_lost" || ev.Source != "comm" || ev.Run != 4 || ev.Fields["lost_rank"] != float64(5) ||
		ev.Fields["lost_host"] != "n5" || ev.Fields["rank"] != float64(2) || ev.Fields["host"] != "n2" {
		t.Fatalf("event %+v", ev)
	}
	// A rank that was told (not the one that noticed) writes no event.
	p2 := &policy{rank: 3, opts: Options{Prefix: pfx, Node: "n3", Stderr: &out, Timeout: time.Second, Getenv: mapEnv(nil), Exit: func(int) {}}}
	p2.onLost(e, false)
	if evs, _ := prefix.ReadTimeline(pfx); len(evs) != 1 {
		t.Fatalf("a told rank wrote an event: %d events", len(evs))
	}
}

// A rendezvous directory reused with the files of an earlier launch still
// there: ranks that read the stale secret before rank 0 rewrote it must not
// trust it (rank 0 of the earlier launch does not answer the probe) and
// pick up the new one.
func TestRendezvousStaleSecret(t *testing.T) {
	const p = 5
	dir := t.TempDir()
	// The earlier launch's rank 0 "address": a listener that hangs up on
	// every connection (its process is gone); it counts the probes.
	old, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var probes sync.Map
	go func() {
		for {
			c, err := old.Accept()
			if err != nil {
				return
			}
			probes.Store(c.RemoteAddr().String(), true)
			c.Close()
		}
	}()
	stale := &dirBoot{dir: dir, secret: []byte("stale-secret-of-an-earlier-launch")}
	if err := os.WriteFile(dir+"/secret", []byte(fmt.Sprintf("%x", stale.secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	for r := range p {
		node, addr := fmt.Sprintf("n%d", r/2), old.Addr().String()
		os.WriteFile(fmt.Sprintf("%s/rank.%d", dir, r), []byte(node+";"+addr+";"+stale.entryMAC(r, node, addr)), 0o600)
	}
	envOf := func(r int) map[string]string {
		return map[string]string{
			"OMPI_COMM_WORLD_RANK": strconv.Itoa(r), "OMPI_COMM_WORLD_SIZE": strconv.Itoa(p),
			"SCR_RENDEZVOUS_DIR": dir, "SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": fmt.Sprintf("n%d", r/2),
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	comms := make([]Comm, p)
	errs := make([]error, p)
	var wg sync.WaitGroup
	start := func(r int) {
		wg.Go(func() {
			comms[r], errs[r] = FromEnv(ctx, Options{Getenv: mapEnv(envOf(r)), OnPeerLost: func(*PeerLostError) {}})
		})
	}
	for r := 1; r < p; r++ {
		start(r)
	}
	// The other ranks read the stale secret and probe the old rank 0,
	// which does not answer: they keep polling instead of trusting it.
	waitFor(t, "the probes of the stale rank 0", func() bool {
		n := 0
		probes.Range(func(any, any) bool { n++; return true })
		return n >= p-1
	})
	start(0)
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	defer closeAll(comms)
	checkWorld(t, comms)
}

// The secret never goes through a file another user prepared: the old
// predictable temporary name (secret.tmp<pid>) is planted with mode 0666
// (readable by its planter), and the secret must end up in a new 0600 file
// (another inode), the planted file untouched.
func TestRendezvousSecretNotInAPlantedFile(t *testing.T) {
	dir := t.TempDir()
	trap := fmt.Sprintf("%s/secret.tmp%d", dir, os.Getpid())
	if err := os.WriteFile(trap, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(trap, 0o666)
	trapSt, _ := os.Stat(trap)
	comms := fromEnvWorld(t, 2, func(r int) map[string]string {
		return map[string]string{
			"OMPI_COMM_WORLD_RANK": strconv.Itoa(r), "OMPI_COMM_WORLD_SIZE": "2",
			"SCR_RENDEZVOUS_DIR": dir, "SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": "n" + strconv.Itoa(r),
		}
	})
	defer closeAll(comms)
	st, err := os.Stat(dir + "/secret")
	if err != nil || st.Mode().Perm() != 0o600 || os.SameFile(st, trapSt) {
		t.Fatalf("secret file %v (%v): mode or inode of the planted file", st, err)
	}
	if b, err := os.ReadFile(trap); err == nil && len(b) > 0 {
		t.Fatalf("the secret was written into the planted file: %q", b)
	}
}

// Another user pre-creates the rendezvous directory (mode 0777, so that
// she can read and replace what we write there): FromEnv refuses it, names
// it, and writes no secret into it.
func TestRendezvousRefusesAnotherUsersDirectory(t *testing.T) {
	safefstest.RequireRoot(t)
	shared := safefstest.SharedDir(t)
	dir := shared + "/rdv"
	safefstest.As(t, safefstest.Mallory, "mkdir -m 0777 "+dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := FromEnv(ctx, Options{Getenv: mapEnv(map[string]string{
		"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2",
		"SCR_RENDEZVOUS_DIR": dir, "SCR_COMM_ADDR": "127.0.0.1", "SCR_NODE_NAME": "n0",
	}), OnPeerLost: func(*PeerLostError) {}})
	if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("another user's rendezvous directory was used: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("something was written into it: %v", ents)
	}
}

package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/local"
	"github.com/scr-go/scr/internal/rm/rmtest"
)

// cluster makes <root>/<node>/shm for every node and returns root.
func cluster(t *testing.T, nodes ...string) string {
	root := t.TempDir()
	for _, n := range nodes {
		if err := os.MkdirAll(filepath.Join(root, n, "shm"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func newLocal(env map[string]string) func(context.Context) (rm.Manager, error) {
	return func(ctx context.Context) (rm.Manager, error) { return local.New(rm.Config{Env: rm.MapEnv(env)}) }
}

func TestConformance(t *testing.T) {
	root := cluster(t, "n1", "n2", "n3", "n4")
	if err := os.WriteFile(filepath.Join(root, "n2", local.DownFile), []byte("disk on fire\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// n3 is powered off: the resource manager does not know.
	if err := os.WriteFile(filepath.Join(root, "n3", local.PowerOffFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"n1", "n2", "n3", "n4"}
	rmtest.Run(t, []rmtest.Case{
		{Name: "markers", New: newLocal(map[string]string{"SCR_NODELIST": "n[1-4]", "SCR_LOCAL_ROOT": root, "SCR_JOB_ID": "77"}),
			JobID: "77", Nodes: nodes, Down: []string{"n2"}, End: -1,
			CacheEnvs: []map[string]string{{"SCR_JOB_ID": "77", "SCR_NODE_NAME": "n2", "PMI_RANK": "1"}}},
		// Without SCR_JOB_ID, scr_launch's ranks (PMI_*, SCR_NODE_NAME, no
		// resource manager's variables) use the library's default.
		{Name: "no-root", New: newLocal(map[string]string{"SCR_NODELIST": "n[1-4],n1", "SCR_END_TIME": "1795613000"}),
			JobID: "defjobid", Nodes: nodes, End: 1795613000,
			CacheEnvs: []map[string]string{{"SCR_NODE_NAME": "n1", "PMI_RANK": "0", "PMI_SIZE": "4", "SCR_NODELIST": "n[1-4]"}}},
	})
	m, _ := local.New(rm.Config{Env: rm.MapEnv(map[string]string{"SCR_NODELIST": "n[1-4]", "SCR_LOCAL_ROOT": root})})
	down, _ := m.DownNodes(context.Background())
	if down["n2"] != "local: disk on fire" {
		t.Errorf("reason %q", down["n2"])
	}
}

func TestPingAndTransport(t *testing.T) {
	root := cluster(t, "n1", "n2")
	os.WriteFile(filepath.Join(root, "n2", local.PowerOffFile), nil, 0o644)
	m, _ := local.New(rm.Config{Env: rm.MapEnv(map[string]string{"SCR_NODELIST": "n[1-2]", "SCR_LOCAL_ROOT": root})})
	ctx := context.Background()
	if err := m.Ping(ctx, "n1"); err != nil {
		t.Errorf("ping n1: %v", err)
	}
	if err := m.Ping(ctx, "n9"); err == nil {
		t.Errorf("ping of a node without a directory succeeded")
	}
	pctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := m.Ping(pctx, "n2"); err == nil || !strings.Contains(err.Error(), "n2") {
		t.Errorf("ping of powered-off n2: %v", err)
	}
	tr, _ := m.Transport(ctx)
	res := remote.Run(ctx, tr, []string{"n1", "n2"}, []string{"sh", "-c", `echo "$SCR_NODE_NAME $SCR_CACHE_BASE"`}, remote.Options{Timeout: 300 * time.Millisecond})
	if got := strings.TrimSpace(string(res[0].Stdout)); got != "n1 "+filepath.Join(root, "n1", "shm") {
		t.Errorf("n1 said %q (err %v)", got, res[0].Err)
	}
	if res[1].Err == nil {
		t.Errorf("powered-off n2 answered %q", res[1].Stdout)
	}
}

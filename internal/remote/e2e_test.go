package remote_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/vcluster"
)

// from runs a transport's commands inside one node of the virtual cluster
// (the nodes are reachable only from inside its namespaces).
type from struct {
	c     *vcluster.Cluster
	node  string
	inner remote.Transport
	env   []string
}

func (f from) Name() string { return f.inner.Name() }

func (f from) Command(node string, argv []string) (remote.Cmd, error) {
	in, err := f.inner.Command(node, argv)
	if err != nil {
		return remote.Cmd{}, err
	}
	cmd := f.c.Command(context.Background(), f.node, append([]string{in.Path}, in.Args...), append(f.env, in.Env...))
	if cmd.Err != nil {
		return remote.Cmd{}, cmd.Err
	}
	return remote.Cmd{Path: cmd.Path, Args: cmd.Args[1:], Env: cmd.Env}, nil
}

// TestE2EDeadNodeNeverHangs runs echo on node[2-3] from node1 through ssh
// and through srun, after node3 was powered off (Slurm not yet aware):
// node2 answers, node3 fails within its timeout, and Run returns.
func TestE2EDeadNodeNeverHangs(t *testing.T) {
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, SSH: true, Timeouts: vcluster.TimeoutsProduction})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job, err := c.Sbatch(ctx, "#!/bin/sh\nexec sleep 600\n", "-N3", "--no-kill", "--no-requeue", "-o", "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitJob(ctx, job, func(s string) bool { return s == "RUNNING" }); err != nil {
		t.Fatal(err)
	}
	transports := []remote.Transport{
		from{c: c, node: "node1", inner: remote.SSH{ConnectTimeout: 2 * time.Second, Extra: []string{"-F", c.SSHConfig()}}},
		from{c: c, node: "node1", inner: remote.Srun{JobID: job}},
	}
	nodes := []string{"node2", "node3"}
	// Wait until both transports reach both nodes (sshd and the job step
	// daemons may still be starting).
	for _, tr := range transports {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		for {
			res := remote.Run(wctx, tr, nodes, []string{"echo", "UP"}, remote.Options{Timeout: 5 * time.Second})
			if res[0].Err == nil && res[1].Err == nil {
				break
			}
			select {
			case <-wctx.Done():
				t.Fatalf("%s: healthy nodes never answered: %v / %v", tr.Name(), res[0].Err, res[1].Err)
			case <-time.After(200 * time.Millisecond): // poll interval
			}
		}
		wcancel()
	}
	if _, err := c.PowerOff(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	for _, tr := range transports {
		start := time.Now()
		res := remote.Run(ctx, tr, nodes, []string{"echo", "UP"}, remote.Options{Timeout: 5 * time.Second})
		d := time.Since(start)
		t.Logf("%s after node3 power-off: %.2f s; node2 %q %v; node3 %v", tr.Name(), d.Seconds(),
			strings.TrimSpace(string(res[0].Stdout)), res[0].Err, res[1].Err)
		if res[0].Err != nil {
			t.Errorf("%s: node2 failed: %v", tr.Name(), res[0].Err)
		}
		var ne *remote.NodeError
		if !errors.As(res[1].Err, &ne) || ne.Node != "node3" {
			t.Errorf("%s: node3: %v", tr.Name(), res[1].Err)
		}
		if d > 15*time.Second {
			t.Errorf("%s: Run took %v with a 5 s per-node timeout", tr.Name(), d)
		}
	}
}

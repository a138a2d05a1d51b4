// Package vcluster is a test bed: a virtual cluster of N nodes on one Linux
// machine, built from namespaces and running real Slurm, so that node
// failures can be tested in CI. It plays the role net/http/httptest plays
// for HTTP: e2e tests bring a cluster up, run jobs on it, power nodes off and
// on, and tear it down.
//
// # Shape
//
// Each node is a network namespace (vc-<id>-nodeN) with its own hostname
// (UTS), mount, PID and IPC namespaces, entered through a holder process that
// is PID 1 of the node's PID namespace and reaps zombies. Every node has a
// private tmpfs on /dev/shm (node-local storage) and one address on a private
// bridge that lives in a head namespace (vc-<id>-head), where slurmctld runs.
// One munged in the root namespace serves every namespace through a socket
// file in the state directory. One slurmd runs per node. The subnet is
// 10.252.X.0/24 with X derived from the state directory; there is no route
// anywhere else, so only the cluster's own addresses can be reached.
//
// Every file lives below one state directory (default /tmp/vcluster-<name>):
// slurm.conf, logs, spool directories, munge key and socket, and the shared
// directory (SharedDir) that every node sees at the same path, standing in for
// the parallel file system. The rest of the host file system, including the
// project's bin directory, is visible on every node at the same path.
//
// # Lifecycle
//
//	c, err := vcluster.Up(ctx, vcluster.Options{Nodes: 3})
//	defer c.Down(context.Background())
//	out, err := c.Exec(ctx, "node1", []string{"srun", "-N3", "hostname"}, nil)
//	at, err := c.PowerOff(ctx, "node3")   // link cut, processes killed, tmpfs gone
//	err = c.WaitState(ctx, "node3", vcluster.IsDown)
//	err = c.PowerOn(ctx, "node3")         // idle again
//
// Up first removes whatever a crashed earlier cluster of the same state
// directory left behind. Down is safe to call twice and finds processes
// through their namespaces (/proc/<pid>/ns/net), never by name. Load attaches
// to a cluster another process brought up (the vcluster command uses it).
//
// The cluster needs root and the Debian packages that `make deps` installs;
// Up reports every missing binary at once (MissingError). Tests use Require(t)
// to skip unless SCR_E2E=1 and running as root.
package vcluster

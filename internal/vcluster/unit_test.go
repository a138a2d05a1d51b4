package vcluster

import (
	"errors"
	"strings"
	"testing"
)

func TestOptionsDefaultsAndValidation(t *testing.T) {
	t.Setenv("SCR_BIN", "")
	tests := []struct {
		name    string
		in      Options
		wantErr string
		check   func(t *testing.T, o Options)
	}{
		{name: "zero value", in: Options{}, check: func(t *testing.T, o Options) {
			if o.Nodes != 3 || o.CPUs != 2 || o.Timeouts != TimeoutsFast || o.Name != "default" || !strings.HasSuffix(o.StateDir, "/vcluster-default") {
				t.Errorf("defaults: %+v", o)
			}
		}},
		{name: "name gives state dir", in: Options{Name: "ci"}, check: func(t *testing.T, o Options) {
			if !strings.HasSuffix(o.StateDir, "/vcluster-ci") {
				t.Errorf("state dir %s", o.StateDir)
			}
		}},
		{name: "relative state dir made absolute", in: Options{StateDir: "x/y"}, check: func(t *testing.T, o Options) {
			if !strings.HasPrefix(o.StateDir, "/") {
				t.Errorf("state dir %s not absolute", o.StateDir)
			}
		}},
		{name: "production", in: Options{Timeouts: TimeoutsProduction}, check: func(t *testing.T, o Options) {
			if o.Timeouts != TimeoutsProduction {
				t.Errorf("timeouts %s", o.Timeouts)
			}
		}},
		{name: "default resource manager", in: Options{}, check: func(t *testing.T, o Options) {
			if o.RM != RMSlurm {
				t.Errorf("rm %q", o.RM)
			}
		}},
		{name: "flux", in: Options{RM: RMFlux}, check: func(t *testing.T, o Options) {
			if o.RM != RMFlux {
				t.Errorf("rm %q", o.RM)
			}
		}},
		{name: "bad resource manager", in: Options{RM: "pbs"}, wantErr: "resource manager"},
		{name: "state under dev shm", in: Options{StateDir: "/dev/shm/vc"}, wantErr: "under /dev/shm"},
		{name: "dev shm itself", in: Options{StateDir: "/dev/shm"}, wantErr: "under /dev/shm"},
		{name: "too many nodes", in: Options{Nodes: MaxNodes + 1}, wantErr: "nodes"},
		{name: "negative nodes", in: Options{Nodes: -1}, wantErr: "nodes"},
		{name: "bad cpus", in: Options{CPUs: -2}, wantErr: "CPUs"},
		{name: "bad timeouts", in: Options{Timeouts: "slow"}, wantErr: "timeouts"},
		{name: "state dir too long", in: Options{StateDir: "/tmp/" + strings.Repeat("d", MaxStateDirLen)}, wantErr: "characters long"},
		{name: "bad name", in: Options{Name: "a/b"}, wantErr: "name"},
		{name: "bad shm size", in: Options{ShmSize: "1g,exec"}, wantErr: "shm size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.in.withDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
		})
	}
}

// FluxProgram says where it looked and how to build Flux when it finds none.
func TestFluxProgramNotInstalled(t *testing.T) {
	t.Setenv("SCR_FLUX_PREFIX", t.TempDir())
	_, err := FluxProgram()
	if err == nil || !strings.Contains(err.Error(), "make deps-flux") || !strings.Contains(err.Error(), "SCR_FLUX_PREFIX") {
		t.Fatalf("err = %v", err)
	}
}

func TestClusterIDAndSubnetStable(t *testing.T) {
	a, b := clusterID("/tmp/vcluster-a"), clusterID("/tmp/vcluster-b")
	if a == b {
		t.Errorf("two state dirs share id %s", a)
	}
	if clusterID("/tmp/vcluster-a") != a || len(a) != 6 {
		t.Errorf("id %q not stable or not 6 hex digits", a)
	}
	seen := map[int]bool{}
	for i := range 2000 {
		x := subnetSeed("/tmp/vc-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)))
		if x < 1 || x > 254 {
			t.Fatalf("subnet %d out of 1..254", x)
		}
		seen[x] = true
	}
	if len(seen) < 200 {
		t.Errorf("subnet seeds poorly spread: %d distinct of 254", len(seen))
	}
	// Namespace names must fit ip-netns and stay distinct per node.
	if n := "vc-" + a + "-node" + "240"; len(n) > 64 {
		t.Errorf("netns name %s too long", n)
	}
}

func TestSlurmConf(t *testing.T) {
	fast := slurmConf(confInput{ClusterName: "vcabc", Dir: "/tmp/vc", Subnet: 7, Nodes: 3, CPUs: 4, Timeouts: TimeoutsFast})
	for _, want := range []string{
		"SlurmctldHost=head(10.252.7.1)\n",
		"AuthInfo=socket=/tmp/vc/munge/munge.socket.2\n",
		"SlurmdSpoolDir=/tmp/vc/spool/%n\n",
		"ProctrackType=proctrack/linuxproc\n",
		"MpiDefault=pmi2\n",
		"ReturnToService=2\n",
		"SlurmdTimeout=4\n",
		"NodeName=node1 NodeAddr=10.252.7.11 NodeHostname=node1 CPUs=4 State=UNKNOWN\n",
		"NodeName=node3 NodeAddr=10.252.7.13 NodeHostname=node3 CPUs=4 State=UNKNOWN\n",
	} {
		if !strings.Contains(fast, want) {
			t.Errorf("fast slurm.conf lacks %q:\n%s", want, fast)
		}
	}
	if strings.Contains(fast, "node4") {
		t.Error("slurm.conf has a node4 for 3 nodes")
	}
	prod := slurmConf(confInput{ClusterName: "vcabc", Dir: "/tmp/vc", Subnet: 7, Nodes: 1, CPUs: 2, Timeouts: TimeoutsProduction})
	if !strings.Contains(prod, "SlurmdTimeout=300\n") || strings.Contains(prod, "SlurmdTimeout=4\n") {
		t.Errorf("production slurm.conf timeouts wrong:\n%s", prod)
	}
	h := hostsFile(9, 2)
	if !strings.Contains(h, "10.252.9.1\thead\n") || !strings.Contains(h, "10.252.9.12\tnode2\n") || strings.Contains(h, "node3") {
		t.Errorf("hosts file:\n%s", h)
	}
}

func TestParseNodes(t *testing.T) {
	// Lines as scontrol 22.05 prints them (trimmed).
	out := `NodeName=node1 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 CPUTot=2 NodeAddr=10.252.66.11 NodeHostName=node1 State=IDLE ThreadsPerCore=1 Partitions=vc BootTime=2026-11-25T13:37:58
NodeName=node3 Arch=x86_64 CoresPerSocket=1 CPUAlloc=1 State=DOWN+NOT_RESPONDING ThreadsPerCore=1 Partitions=vc Reason=Not responding [slurm@2026-11-25T13:48:42]
NodeName=node2 CPUAlloc=1 State=MIXED+NOT_RESPONDING Reason=Kill task failed [root@2026-11-25T13:49:00] Comment=x

`
	got := parseNodes(out)
	if len(got) != 3 {
		t.Fatalf("parsed %d nodes, want 3: %+v", len(got), got)
	}
	if got[0].Name != "node1" || got[0].State != "IDLE" || !IsIdle(got[0]) || IsDown(got[0]) || got[0].Reason != "" {
		t.Errorf("node1: %+v", got[0])
	}
	if got[1].Base() != "DOWN" || !got[1].Has("NOT_RESPONDING") || !IsDown(got[1]) || !IsNotResponding(got[1]) {
		t.Errorf("node3: %+v", got[1])
	}
	if got[1].Reason != "Not responding [slurm@2026-11-25T13:48:42]" {
		t.Errorf("node3 reason %q", got[1].Reason)
	}
	if got[2].Reason != "Kill task failed [root@2026-11-25T13:49:00]" || IsDown(got[2]) || !IsNotResponding(got[2]) || IsIdle(got[2]) {
		t.Errorf("node2: %+v", got[2])
	}
	if s := (NodeState{State: "IDLE+DRAIN"}); IsIdle(s) || !s.Has("DRAIN") || s.Has("IDLE") {
		t.Errorf("IDLE+DRAIN: idle=%v", IsIdle(s))
	}
}

func TestErrors(t *testing.T) {
	var err error = &MissingError{Programs: []string{"slurmd", "munged"}}
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "make deps") || !strings.Contains(err.Error(), "slurmd, munged") {
		t.Errorf("missing error: %v", err)
	}
	err = &NodeError{Node: "node2", Op: "exec", Err: ErrPoweredOff}
	if !errors.Is(err, ErrPoweredOff) || !strings.Contains(err.Error(), "node2") {
		t.Errorf("node error: %v", err)
	}
}

func FuzzParseNodes(f *testing.F) {
	f.Add("NodeName=node1 State=IDLE Reason=x y Foo=1")
	f.Add("NodeName= State=")
	f.Fuzz(func(t *testing.T, s string) {
		for _, n := range parseNodes(s) {
			if n.Name == "" || strings.ContainsAny(n.Name, " \t\n") {
				t.Fatalf("bad name %q from %q", n.Name, s)
			}
			_ = n.Base()
		}
	})
}

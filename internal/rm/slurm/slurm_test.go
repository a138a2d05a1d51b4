package slurm_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/rmtest"
	"github.com/scr-go/scr/internal/rm/slurm"
)

const sinfo = "sinfo -h -o %N|%T|%E -n n[1-8]"

func newSlurm(sinfoFile, scontrolFile string) func(context.Context) (rm.Manager, error) {
	return func(ctx context.Context) (rm.Manager, error) {
		rp := &rmtest.Replay{Replies: map[string]rmtest.Reply{
			sinfo:                             {File: filepath.Join("testdata", sinfoFile)},
			"scontrol --oneliner show job 42": {File: filepath.Join("testdata", scontrolFile)},
		}}
		env := rm.MapEnv(map[string]string{"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n[1-8]"})
		return slurm.New(rm.Config{Env: env, Run: rp.Runner()})
	}
}

func TestConformance(t *testing.T) {
	nodes := rmNodes()
	end := time.Date(2026, 11, 25, 14, 0, 0, 0, time.Local).Unix()
	rmtest.Run(t, []rmtest.Case{
		// The batch script and a task of two steps share the allocation's
		// SLURM_JOB_ID (each step has its own SLURM_STEP_ID); live captures
		// are checked in TestE2ELiveSlurm.
		{Name: "healthy", New: newSlurm("sinfo-healthy.txt", "scontrol-show-job-limit.txt"), JobID: "42", Nodes: nodes, End: end,
			CacheEnvs: []map[string]string{
				{"SLURM_JOB_ID": "42", "SLURM_JOBID": "42", "SLURM_JOB_NODELIST": "n[1-8]"},
				{"SLURM_JOB_ID": "42", "SLURM_JOBID": "42", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3"},
				{"SLURM_JOB_ID": "42", "SLURM_JOBID": "42", "SLURM_STEP_ID": "1", "SLURM_PROCID": "0"},
			}},
		{Name: "one-down-one-drained", New: newSlurm("sinfo-one-down-one-drained.txt", "scontrol-show-job-limit.txt"),
			JobID: "42", Nodes: nodes, Down: []string{"n3", "n4"}, End: end},
		// SCR's bug: "n[2-4]" was taken as one node name. Every node of the
		// range is down; n9 is not ours and must not appear.
		{Name: "range-down", New: newSlurm("sinfo-range-down.txt", "scontrol-show-job-unlimited.txt"),
			JobID: "42", Nodes: nodes, Down: []string{"n2", "n3", "n4"}, End: -1},
		{Name: "draining-is-not-down", New: newSlurm("sinfo-draining.txt", "scontrol-show-job-limit.txt"),
			JobID: "42", Nodes: nodes, Down: []string{"n8"}, End: end},
	})
}

// Live captures (testdata/README.md): job 1 on node[1-4] of the virtual cluster.
func newLive(sit, scontrolSit string) func(context.Context) (rm.Manager, error) {
	return func(ctx context.Context) (rm.Manager, error) {
		rp := &rmtest.Replay{Replies: map[string]rmtest.Reply{
			"sinfo -h -o %N|%T|%E -n node[1-4]": {File: filepath.Join("testdata", "live-sinfo."+sit+".txt")},
			"scontrol --oneliner show job 1":    {File: filepath.Join("testdata", "live-scontrol-show-job."+scontrolSit+".txt")},
		}}
		env := rm.MapEnv(map[string]string{"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "node[1-4]"})
		return slurm.New(rm.Config{Env: env, Run: rp.Runner()})
	}
}

func TestConformanceLive(t *testing.T) {
	nodes := []string{"node1", "node2", "node3", "node4"}
	end := time.Date(2026, 11, 25, 14, 14, 32, 0, time.Local).Unix()
	rmtest.Run(t, []rmtest.Case{
		{Name: "live-healthy", New: newLive("healthy", "healthy"), JobID: "1", Nodes: nodes, End: end},
		{Name: "live-node2-draining", New: newLive("node2-draining", "healthy"), JobID: "1", Nodes: nodes, End: end},
		// sinfo prints node[1,3]: SCR's comma split made "node[1" and "3]".
		// Slurm shrank the job to node[1-3]; the allocation's list keeps node4.
		{Name: "live-node4-down", New: newLive("node4-down", "node4-down"), JobID: "1", Nodes: nodes, Down: []string{"node4"}, End: end},
	})
}

func rmNodes() []string { return []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"} }

func TestReasons(t *testing.T) {
	m, _ := newSlurm("sinfo-one-down-one-drained.txt", "scontrol-show-job-limit.txt")(context.Background())
	down, err := m.DownNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if down["n3"] != "slurm: down*: Not responding" || down["n4"] != "slurm: drained: ssd firmware check failed" {
		t.Fatalf("reasons %q", down)
	}
}

func TestParseSinfoTable(t *testing.T) {
	tests := []struct {
		line string
		down bool
	}{
		{"n1|idle|none", false},
		{"n1|allocated|none", false},
		{"n1|mixed*|none", true},
		{"n1|down|x", true},
		{"n1|draining|x", false},
		{"n1|drained*|x", true},
		{"n1|idle+drain|x", false},
		{"n1|idle~|none", true},
		{"n1|powered_down~|none", true},
		{"n1|fail|x", true},
		{"n1|allocated+failing|x", true},
	}
	for _, tt := range tests {
		d, err := slurm.ParseSinfo([]byte(tt.line + "\n"))
		if err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		if _, got := d["n1"]; got != tt.down {
			t.Errorf("%q: down=%v, want %v", tt.line, got, tt.down)
		}
	}
	if _, err := slurm.ParseSinfo([]byte("garbage\n")); err == nil {
		t.Errorf("garbage line accepted")
	}
}

func TestNoNodeList(t *testing.T) {
	m, _ := slurm.New(rm.Config{Env: rm.MapEnv(map[string]string{"SLURM_JOB_ID": "42"})})
	if _, err := m.Nodes(context.Background()); err == nil {
		t.Fatal("no error without SLURM_JOB_NODELIST")
	}
}

func TestHungSlurmctldIsBounded(t *testing.T) {
	rp := &rmtest.Replay{Replies: map[string]rmtest.Reply{sinfo: {Block: true}}}
	m, _ := slurm.New(rm.Config{Env: rm.MapEnv(map[string]string{"SLURM_JOB_ID": "42", "SLURM_JOB_NODELIST": "n[1-8]"}), Run: rp.Runner()})
	rmtest.CheckBounded(t, m)
}

// FuzzParseSinfo: any output either parses or is refused; what parses only
// names nodes that were in the output.
func FuzzParseSinfo(f *testing.F) {
	for _, s := range []string{"node3|down*|Not responding\nnode[1,3]|mixed|none\n", "n[1-2]|idle~|x", "garbage", "a|b|c|d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		down, err := slurm.ParseSinfo([]byte(s))
		if err != nil {
			return
		}
		for n, why := range down {
			if n == "" || !strings.HasPrefix(why, "slurm: ") {
				t.Fatalf("%q -> %q: %q", s, n, why)
			}
		}
	})
}

func FuzzParseEndTime(f *testing.F) {
	f.Add("JobId=1 TimeLimit=00:10:00 EndTime=2026-11-25T14:14:32")
	f.Add("TimeLimit=UNLIMITED EndTime=Unknown")
	// "No limit" (-1) must come from TimeLimit=UNLIMITED (or a date one
	// second before the epoch); "unknown" (0) from no usable EndTime.
	f.Fuzz(func(t *testing.T, s string) {
		end, err := slurm.ParseEndTime([]byte(s), time.UTC)
		if err != nil {
			return
		}
		if end == -1 && !strings.Contains(strings.ToUpper(s), "UNLIMITED") && !strings.Contains(s, "1969-12-31T23:59:59") {
			t.Fatalf("%q -> no limit", s)
		}
		if end != 0 && end != -1 && !strings.Contains(s, "EndTime=") {
			t.Fatalf("%q -> %d without an EndTime", s, end)
		}
	})
}

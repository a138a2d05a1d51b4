package lsf_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/rm"
	"github.com/scr-go/scr/internal/rm/lsf"
	"github.com/scr-go/scr/internal/rm/rmtest"
)

var now = time.Unix(1795613000, 0)

const bhosts = "bhosts -w lassen1 lassen2 lassen3 lassen4"

func newLSF(env map[string]string, bhostsFile, timeLeft string) func(context.Context) (rm.Manager, error) {
	return func(ctx context.Context) (rm.Manager, error) {
		rp := &rmtest.Replay{Replies: map[string]rmtest.Reply{
			bhosts:                              {File: filepath.Join("testdata", bhostsFile)},
			"bjobs -noheader -o time_left 1234": {Stdout: timeLeft + "\n"},
		}}
		return lsf.New(rm.Config{Env: rm.MapEnv(env), Run: rp.Runner(), Now: func() time.Time { return now }})
	}
}

func TestConformance(t *testing.T) {
	hostfile := map[string]string{"LSB_JOBID": "1234", "LSB_DJOB_HOSTFILE": filepath.Join("testdata", "djob-hostfile.txt")}
	mcpu := map[string]string{"LSB_JOBID": "1234", "LSB_MCPU_HOSTS": "lassen710 1 lassen1 40 lassen2 40 lassen3 40 lassen4 40"}
	nodes := []string{"lassen1", "lassen2", "lassen3", "lassen4"}
	rmtest.Run(t, []rmtest.Case{
		// The batch script and the tasks of two jsrun steps: LSF sets
		// LSB_JOBID for the job's processes (IBM, "Environment variables set
		// for job execution"), jsrun passes it to its tasks along with its
		// own JSM_NAMESPACE_* (as the LSF environment of PyTorch Lightning
		// relies on); each step is a new JSM namespace, not a new job.
		{Name: "hostfile-healthy", New: newLSF(hostfile, "bhosts-w-healthy.txt", "-"), JobID: "1234", Nodes: nodes, End: -1,
			CacheEnvs: []map[string]string{hostfile,
				{"LSB_JOBID": "1234", "JSM_NAMESPACE_RANK": "0", "JSM_NAMESPACE_SIZE": "4", "JSM_NAMESPACE_LOCAL_ID": "1"},
				{"LSB_JOBID": "1234", "JSM_NAMESPACE_RANK": "3", "JSM_NAMESPACE_SIZE": "4", "JSM_NAMESPACE_LOCAL_ID": "2"},
			}},
		{Name: "hostfile-unavail-unreach", New: newLSF(hostfile, "bhosts-w-one-unavail-one-unreach.txt", "1:30 L"),
			JobID: "1234", Nodes: nodes, Down: []string{"lassen2", "lassen4"}, End: now.Unix() + 5400},
		{Name: "mcpu-hosts", New: newLSF(mcpu, "bhosts-w-one-unavail-one-unreach.txt", "0:05 E"),
			JobID: "1234", Nodes: nodes, Down: []string{"lassen2", "lassen4"}, End: now.Unix() + 300},
	})
}

func TestParseBhostsRejectsOtherFormats(t *testing.T) {
	if _, err := lsf.ParseBhosts([]byte("NAME STATE\nx ok\n")); err == nil {
		t.Fatal("accepted a table without HOST_NAME STATUS")
	}
}

func TestParseTimeLeft(t *testing.T) {
	for _, s := range []string{"1:75 L", "x", "1-2"} {
		if _, err := lsf.ParseTimeLeft(s, now); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestLaunchNodeOnly(t *testing.T) {
	m, _ := lsf.New(rm.Config{Env: rm.MapEnv(map[string]string{"LSB_JOBID": "1", "LSB_MCPU_HOSTS": "batch1 1"})})
	if _, err := m.Nodes(context.Background()); err == nil {
		t.Fatal("launch node alone accepted as an allocation")
	}
}

func TestHungLSFIsBounded(t *testing.T) {
	rp := &rmtest.Replay{Replies: map[string]rmtest.Reply{bhosts: {Block: true}}}
	m, _ := lsf.New(rm.Config{Env: rm.MapEnv(map[string]string{"LSB_JOBID": "1234", "LSB_DJOB_HOSTFILE": filepath.Join("testdata", "djob-hostfile.txt")}), Run: rp.Runner()})
	rmtest.CheckBounded(t, m)
}

func FuzzParseBhosts(f *testing.F) {
	f.Add("HOST_NAME STATUS JL/U MAX\nh1 unavail - 1\nh2 ok - 1\n")
	f.Add("NAME x\n")
	f.Fuzz(func(t *testing.T, s string) {
		down, err := lsf.ParseBhosts([]byte(s))
		if err != nil {
			return
		}
		for h, why := range down {
			if h == "" || !strings.HasPrefix(why, "lsf: ") {
				t.Fatalf("%q -> %q: %q", s, h, why)
			}
		}
	})
}

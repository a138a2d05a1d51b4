package all_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/scr-go/scr/internal/rm"
	_ "github.com/scr-go/scr/internal/rm/all"
	"github.com/scr-go/scr/internal/rm/rmtest"
)

func TestDetectOrder(t *testing.T) {
	if got := rm.Registered(); !reflect.DeepEqual(got, []string{"FLUX", "SLURM", "LSF", "LOCAL"}) {
		t.Fatalf("Registered() = %q", got)
	}
	rp := &rmtest.Replay{Replies: map[string]rmtest.Reply{"flux getattr jobid": {Stdout: "ƒVaSC5xK\n"}}}
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"FLUX_URI": "local:///x", "SLURM_JOB_ID": "1"}, "flux"},
		{map[string]string{"SLURM_JOB_ID": "1", "SCR_NODELIST": "n1"}, "slurm"},
		{map[string]string{"SLURM_JOBID": "1"}, "slurm"},
		{map[string]string{"LSB_JOBID": "1", "SCR_NODELIST": "n1"}, "lsf"},
		{map[string]string{"SCR_NODELIST": "n[1-2]"}, "local"},
		{map[string]string{"SLURM_JOB_ID": "1", "SCR_RESOURCE_MANAGER": "local", "SCR_NODELIST": "n1"}, "local"},
	}
	for _, tt := range tests {
		m, err := rm.Detect(context.Background(), rm.Config{Env: rm.MapEnv(tt.env), Run: rp.Runner()})
		if err != nil || m.Name() != tt.want {
			t.Errorf("Detect(%v) = %v, %v; want %s", tt.env, m, err, tt.want)
		}
	}
	if _, err := rm.Detect(context.Background(), rm.Config{Env: rm.MapEnv(nil)}); !errors.Is(err, rm.ErrNoManager) {
		t.Errorf("empty environment: %v", err)
	}
	if _, err := rm.Detect(context.Background(), rm.Config{Env: rm.MapEnv(map[string]string{"SCR_RESOURCE_MANAGER": "PBS"})}); err == nil {
		t.Errorf("unknown SCR_RESOURCE_MANAGER accepted")
	}
}

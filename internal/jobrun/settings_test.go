package jobrun

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/config"
)

// A bad scr_run parameter stops scr_run with the parameter named, instead
// of being replaced by a default (SCR's scr_run clamped SCR_RUNS < 1 to 1).
func TestScrRunRejectsBadParameters(t *testing.T) {
	for _, tc := range []struct{ key, val string }{
		{"SCR_RUNS", "0"},
		{"SCR_RUNS", "-2"},
		{"SCR_MIN_NODES", "-1"},
		{"SCR_LAUNCH_TIMEOUT", "soon"},
	} {
		t.Run(tc.key+"="+tc.val, func(t *testing.T) {
			env := map[string]string{
				"SCR_PREFIX":           t.TempDir(),
				"SCR_NODELIST":         "n[1-2]",
				"SCR_LOCAL_ROOT":       t.TempDir(),
				"SCR_RESOURCE_MANAGER": "local",
				tc.key:                 tc.val,
			}
			_, err := ScrRun(context.Background(), CmdOptions{
				Launcher: "scr_launch", Args: []string{"-n", "2", "true"},
				Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
			})
			var pe *config.ParamError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want a *config.ParamError naming %s", err, tc.key)
			}
		})
	}
}

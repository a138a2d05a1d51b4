package scenario

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// walkthrough is a command of the README's walk-through and what it prints.
type walkthrough struct {
	cmd  string
	want []string
}

// readmeWalkthrough reads the console block after the walk-through marker
// of README.md, and the setup line that exports the parameters.
func readmeWalkthrough(t *testing.T) (steps []walkthrough, exports string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "export SCR_PREFIX=") && exports == "" { // the set-up's, before the walk-through
			exports, _, _ = strings.Cut(line, "#")
		}
	}
	_, rest, ok := strings.Cut(text, "<!-- walkthrough:")
	if !ok || exports == "" {
		t.Fatal("README.md: no walk-through marker or no export SCR_PREFIX= line")
	}
	_, rest, _ = strings.Cut(rest, "```console\n")
	block, _, _ := strings.Cut(rest, "```")
	for _, line := range strings.Split(strings.TrimSuffix(block, "\n"), "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			steps = append(steps, walkthrough{cmd: cmd})
		} else if len(steps) > 0 {
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
		}
	}
	if len(steps) < 5 {
		t.Fatalf("README.md walk-through: %d commands", len(steps))
	}
	return steps, strings.TrimSpace(exports)
}

// variable are the parts of the output that change from run to run:
// times of day, durations and bandwidths (decimals), bytes per second.
var variable = []struct {
	re  *regexp.Regexp
	put string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`), "<time>"},
	{regexp.MustCompile(`\d+\.\d+`), "<x.y>"},
	{regexp.MustCompile(`\d+ bytes/sec`), "<n> bytes/sec"},
}

func normalize(line string) string {
	line = strings.TrimRight(line, " ")
	for _, v := range variable {
		line = v.re.ReplaceAllString(line, v.put)
	}
	return line
}

// matches compares printed lines with the README's: times, durations and
// bandwidths may differ, everything else (names, counts, bytes, the
// checkpoint restarted from) must be the same.
func matches(want, got []string) error {
	if len(want) != len(got) {
		return fmt.Errorf("%d lines, the README shows %d", len(got), len(want))
	}
	for i := range want {
		if normalize(want[i]) != normalize(got[i]) {
			return fmt.Errorf("line %d: %q, the README shows %q", i+1, got[i], want[i])
		}
	}
	return nil
}

// TestREADMEWalkthrough runs the README's walk-through for newcomers, command
// by command, in a Slurm allocation of the virtual cluster, and checks that
// each prints what the README shows.
func TestREADMEWalkthrough(t *testing.T) {
	steps, exports := readmeWalkthrough(t)
	vcluster.Require(t)
	c := vcluster.Start(t, vcluster.Options{Nodes: 3, BinDir: bins(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job, err := c.Salloc(ctx, "-N3", "--no-kill")
	if err != nil {
		t.Fatal(err)
	}
	_, nodes, err := c.JobState(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	// What salloc's shell would have, and the README's exports with $HOME
	// in the shared directory.
	home := filepath.Join(c.SharedDir(), "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	fmt.Fprintf(&script, "export SLURM_JOB_ID=%s SLURM_JOBID=%s SLURM_JOB_NODELIST='%s' SLURM_NODELIST='%s' HOME=%s\n", job, job, nodes, nodes, home)
	fmt.Fprintf(&script, "%s\nmkdir -p \"$SCR_PREFIX\"\n", exports)
	for i, s := range steps {
		fmt.Fprintf(&script, "echo '@@step %d'\n%s\n", i, s.cmd)
	}
	var stdout, stderr bytes.Buffer
	cmd := c.CommandDir(ctx, "node1", home, []string{"bash", "-c", script.String()}, nil)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("walk-through: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	got := map[int][]string{}
	step := -1
	for _, line := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
		if _, err := fmt.Sscanf(line, "@@step %d", &step); err == nil && strings.HasPrefix(line, "@@step") {
			got[step] = []string{}
			continue
		}
		got[step] = append(got[step], line)
	}
	for i, s := range steps {
		if err := matches(s.want, got[i]); err != nil {
			t.Errorf("$ %s: %v\nprinted:\n%s", s.cmd, err, strings.Join(got[i], "\n"))
		}
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", stderr.String())
	}
}

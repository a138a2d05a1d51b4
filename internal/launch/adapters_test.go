package launch

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	alloc := []string{"n1", "n2", "n3", "n4", "n5"}
	tests := []struct {
		name     string
		launcher string
		run      int
		args     []string
		down     []string
		argv     []string
		submit   []string
		nodes    []string
		stepName string
		wantErr  string
	}{
		{name: "srun healthy", launcher: "srun", args: []string{"-N", "4", "./app"},
			argv: []string{"srun", "--job-name=scr.77.1", "-N", "4", "./app"}, stepName: "scr.77.1"},
		{name: "srun one down", launcher: "srun", args: []string{"-N4", "-n8", "./app", "-x", "1"}, down: []string{"n2"},
			argv: []string{"srun", "--exclude=n2", "--job-name=scr.77.1", "-N4", "-n8", "./app", "-x", "1"}, stepName: "scr.77.1"},
		{name: "srun no -N gets healthy count", launcher: "srun", args: []string{"./app"}, down: []string{"n2", "n5"},
			argv: []string{"srun", "--exclude=n[2,5]", "--nodes=3", "--job-name=scr.77.1", "./app"}, stepName: "scr.77.1"},
		{name: "srun user exclude merged", launcher: "srun", args: []string{"--exclude", "n9", "-N", "2", "./app"}, down: []string{"n1"},
			argv: []string{"srun", "--exclude=n9,n1", "--job-name=scr.77.1", "-N", "2", "./app"}, stepName: "scr.77.1"},
		{name: "srun user job name kept", launcher: "srun", args: []string{"-J", "mine", "-N", "2", "./app"},
			argv: []string{"srun", "-J", "mine", "-N", "2", "./app"}, stepName: "mine"},
		{name: "srun program option not taken as srun's", launcher: "srun", args: []string{"-n", "2", "./app", "--nodes", "9"}, down: []string{"n3"},
			argv: []string{"srun", "--exclude=n3", "--nodes=4", "--job-name=scr.77.1", "-n", "2", "./app", "--nodes", "9"}, stepName: "scr.77.1"},
		{name: "srun relaunch overlaps the dying step", launcher: "srun", run: 2, args: []string{"-N", "2", "./app"}, down: []string{"n1"},
			argv: []string{"srun", "--exclude=n1", "--overlap", "--job-name=scr.77.2", "-N", "2", "./app"}, stepName: "scr.77.2"},
		{name: "srun relaunch keeps --exclusive", launcher: "srun", run: 3, args: []string{"--exclusive", "-N", "2", "./app"},
			argv: []string{"srun", "--job-name=scr.77.3", "--exclusive", "-N", "2", "./app"}, stepName: "scr.77.3"},
		{name: "srun nodelist: a spare replaces the down node", launcher: "srun", args: []string{"-N2", "-w", "n[1-2]", "./app"}, down: []string{"n1"},
			argv: []string{"srun", "--exclude=n1", "--nodelist=n[3,2]", "--job-name=scr.77.1", "-N2", "./app"}, stepName: "scr.77.1"},
		{name: "srun nodelist keeps healthy order", launcher: "srun", args: []string{"--nodelist=n4,n2", "./app"}, down: []string{"n4"},
			argv: []string{"srun", "--exclude=n4", "--nodelist=n[1-2]", "--job-name=scr.77.1", "./app"}, stepName: "scr.77.1"},
		{name: "srun nodelist without spares", launcher: "srun", args: []string{"-w", "n[1-5]", "./app"}, down: []string{"n1"}, wantErr: "no healthy spare"},
		{name: "srun nodelist file", launcher: "srun", args: []string{"-w", "./hosts", "./app"}, down: []string{"n1"}, wantErr: "names a file"},
		{name: "srun no program", launcher: "srun", args: []string{"-N", "2"}, wantErr: "no program"},
		{name: "flux run", launcher: "flux", args: []string{"run", "-N2", "-n2", "./app"}, down: []string{"n2", "n4"},
			argv:   []string{"flux", "job", "attach"},
			submit: []string{"flux", "submit", "--requires=-host:n[2,4]", "--job-name=scr.77.1", "-N2", "-n2", "./app"}},
		{name: "flux submit healthy", launcher: "flux", args: []string{"submit", "-N", "2", "./app"},
			argv:   []string{"flux", "job", "attach"},
			submit: []string{"flux", "submit", "--job-name=scr.77.1", "-N", "2", "./app"}},
		{name: "flux other subcommand", launcher: "flux", args: []string{"alloc", "-N2"}, wantErr: "flux run"},
		// The user's host constraint (Flux's -w): a spare replaces the down
		// node, as for srun --nodelist; Flux ANDs every --requires.
		{name: "flux requires host: a spare replaces the down node", launcher: "flux", args: []string{"run", "-N2", "-n2", "--requires=host:n[2-3]", "./app"}, down: []string{"n2"},
			argv:   []string{"flux", "job", "attach"},
			submit: []string{"flux", "submit", "--requires=-host:n2", "--job-name=scr.77.1", "-N2", "-n2", "--requires=host:n[1,3]", "./app"}},
		{name: "flux requires hosts, separate value, with another constraint", launcher: "flux", args: []string{"run", "--requires", "hosts:n4,n1", "--requires=-host:n5", "-N2", "./app", "--requires=host:n4"}, down: []string{"n4"},
			argv:   []string{"flux", "job", "attach"},
			submit: []string{"flux", "submit", "--requires=-host:n4", "--job-name=scr.77.1", "--requires", "hosts:n[2,1]", "--requires=-host:n5", "-N2", "./app", "--requires=host:n4"}},
		{name: "flux requires host without a down node", launcher: "flux", args: []string{"run", "--requires=host:n[1-2]", "./app"}, down: []string{"n4"},
			argv:   []string{"flux", "job", "attach"},
			submit: []string{"flux", "submit", "--requires=-host:n4", "--job-name=scr.77.1", "--requires=host:n[1-2]", "./app"}},
		{name: "flux requires host without spares", launcher: "flux", args: []string{"run", "--requires=host:n[1-5]", "./app"}, down: []string{"n1"}, wantErr: "no healthy spare"},
		// A compound constraint is Flux's to evaluate: left as it is.
		{name: "flux compound constraint", launcher: "flux", args: []string{"run", "--requires=host:n[1-2] or host:n3", "./app"}, down: []string{"n1"},
			argv:   []string{"flux", "job", "attach"},
			submit: []string{"flux", "submit", "--requires=-host:n1", "--job-name=scr.77.1", "--requires=host:n[1-2] or host:n3", "./app"}},
		{name: "jsrun", launcher: "jsrun", args: []string{"-r", "1", "./app"}, down: []string{"n1", "n3"},
			argv: []string{"jsrun", "--exclude_hosts", "n1,n3", "-r", "1", "./app"}},
		{name: "jsrun healthy", launcher: "jsrun", args: []string{"./app"}, argv: []string{"jsrun", "./app"}},
		{name: "lrun", launcher: "lrun", args: []string{"-N", "4", "./app"}, down: []string{"n5"},
			argv: []string{"lrun", "--exclude_hosts=n5", "-N", "4", "./app"}},
		{name: "mpirun hostfile", launcher: "mpirun", args: []string{"-np", "4", "./app"}, down: []string{"n1", "n4"},
			argv: []string{"mpirun", "--hostfile", "/p/.scr/hostfile", "-np", "4", "./app"}, nodes: []string{"n2", "n3", "n5"}},
		{name: "mpirun own hostfile refused", launcher: "mpirun", args: []string{"--hostfile=h", "./app"}, wantErr: "drop --hostfile"},
		{name: "local spare replaces lost", launcher: "scr_launch", args: []string{"-n", "8", "--nodes", "n1,n2,n3,n4", "./app"}, down: []string{"n2"},
			argv: []string{"scr_launch", "--nodes", "n1,n3,n4,n5", "-n", "8", "./app"}, nodes: []string{"n1", "n3", "n4", "n5"}},
		{name: "local no nodes uses healthy", launcher: "scr_launch", args: []string{"-n", "3", "./app"}, down: []string{"n1", "n2"},
			argv: []string{"scr_launch", "--nodes", "n3,n4,n5", "-n", "3", "./app"}, nodes: []string{"n3", "n4", "n5"}},
		{name: "local host list ranges", launcher: "scr_launch", args: []string{"--nodes=n[1-3]", "--ppn", "2", "./app"}, down: []string{"n1"},
			argv: []string{"scr_launch", "--nodes", "n2,n3,n4", "--ppn", "2", "./app"}, nodes: []string{"n2", "n3", "n4"}},
		{name: "local too few", launcher: "scr_launch", args: []string{"--nodes=n1,n2,n3,n4", "./app"}, down: []string{"n1", "n2"}, wantErr: "only 3 healthy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Lookup(tc.launcher)
			if err != nil {
				t.Fatal(err)
			}
			if tc.run == 0 {
				tc.run = 1
			}
			c, err := a.Build(Request{Args: tc.args, Nodes: alloc, Down: tc.down, MetaDir: "/p/.scr", JobID: "77", RunID: tc.run})
			if tc.wantErr != "" {
				var ae *ArgsError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ae) {
					t.Fatalf("err = %v, want ArgsError with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Argv, tc.argv) {
				t.Errorf("argv\n got %q\nwant %q", c.Argv, tc.argv)
			}
			if !reflect.DeepEqual(c.Submit, tc.submit) {
				t.Errorf("submit\n got %q\nwant %q", c.Submit, tc.submit)
			}
			if tc.nodes != nil && !reflect.DeepEqual(c.Nodes, tc.nodes) {
				t.Errorf("nodes %q, want %q", c.Nodes, tc.nodes)
			}
			if c.StepName != tc.stepName {
				t.Errorf("step name %q, want %q", c.StepName, tc.stepName)
			}
		})
	}
}

func TestMpirunHostfileContent(t *testing.T) {
	c, err := Mpirun{}.Build(Request{Args: []string{"./app"}, Nodes: []string{"a", "b", "c"}, Down: []string{"b"}, MetaDir: "/m"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Files) != 1 || c.Files[0].Path != "/m/hostfile" || string(c.Files[0].Content) != "a\nc\n" {
		t.Fatalf("files %+v", c.Files)
	}
}

func TestWantedNodes(t *testing.T) {
	tests := []struct {
		launcher string
		args     []string
		want     int
	}{
		{"srun", []string{"-N", "4", "./app"}, 4},
		{"srun", []string{"-N4-6", "./app"}, 4},
		{"srun", []string{"--nodes=3", "./app"}, 3},
		{"srun", []string{"-n", "4", "./app", "-N", "9"}, 0},
		{"flux", []string{"run", "-N", "2", "./app"}, 2},
		{"flux", []string{"run", "./app"}, 0},
		{"scr_launch", []string{"--nodes", "a,b,c", "./app"}, 3},
		{"scr_launch", []string{"--nodes", "n[1-4]", "./app"}, 4},
		{"lrun", []string{"-N", "5", "./app"}, 5},
		{"mpirun", []string{"-np", "5", "./app"}, 0},
	}
	for _, tc := range tests {
		a, _ := Lookup(tc.launcher)
		if got := a.WantedNodes(tc.args); got != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.launcher, tc.args, got, tc.want)
		}
	}
}

func TestLookup(t *testing.T) {
	if a, err := Lookup("/usr/bin/srun"); err != nil || a.Name() != "srun" {
		t.Fatalf("%v %v", a, err)
	}
	var ue *UnknownLauncherError
	if _, err := Lookup("aprun"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "srun") {
		t.Fatalf("err = %v", err)
	}
}

func TestSrunCancelFindsNewestNamedStep(t *testing.T) {
	var calls [][]string
	run := func(ctx context.Context, argv []string) ([]byte, error) {
		calls = append(calls, argv)
		if argv[0] == "squeue" {
			return []byte("77.0 other\n77.3 scr.77.2\n77.12 scr.77.2\n770.13 scr.77.2\n77.batch batch\n"), nil
		}
		return nil, nil
	}
	c := Command{StepName: "scr.77.2"}
	if err := (Srun{}).Cancel(context.Background(), run, "77", c, ""); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || !reflect.DeepEqual(calls[1], []string{"scancel", "77.12"}) {
		t.Fatalf("calls %q", calls)
	}
	calls = nil
	c.StepName = "absent"
	if err := (Srun{}).Cancel(context.Background(), run, "77", c, ""); err != nil || len(calls) != 1 {
		t.Fatalf("no step: err %v calls %q", err, calls)
	}
	failing := func(ctx context.Context, argv []string) ([]byte, error) { return nil, errors.New("boom") }
	if err := (Srun{}).Cancel(context.Background(), failing, "77", Command{StepName: "x"}, ""); err == nil || !strings.Contains(err.Error(), "job 77") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzOptValue(f *testing.F) {
	f.Add("-N\x004\x00./app")
	f.Add("--nodes=3\x00--\x00x")
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, "\x00")
		v, i, j, ok := optValue(args, "--nodes", "-N", srunWithValue)
		if ok && (i < 0 || j > len(args) || i >= j) {
			t.Fatalf("bad range %d %d for %q (v %q)", i, j, args, v)
		}
		if p := progIndex(args, srunWithValue); p < 0 || p > len(args) {
			t.Fatalf("prog index %d", p)
		}
	})
}

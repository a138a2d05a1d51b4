package main

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/vcluster"
	"github.com/scr-go/scr/internal/vcluster/cli"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args    []string
		want    func(o cli.Options) bool
		wantErr error
	}{
		{[]string{"up"}, func(o cli.Options) bool { return o.Command == "up" && o.Nodes == 3 && o.Timeouts == "fast" && !o.SSH }, nil},
		{[]string{"--name", "ci", "up", "-n", "5", "--slurm-timeouts", "production", "--ssh", "--json"}, func(o cli.Options) bool {
			return o.Name == "ci" && o.Nodes == 5 && o.Timeouts == "production" && o.SSH && o.JSON
		}, nil},
		{[]string{"up", "--state", "/tmp/x"}, func(o cli.Options) bool { return o.StateDir == "/tmp/x" && o.RM == "slurm" }, nil},
		{[]string{"up", "--rm", "flux", "--timeouts", "production"}, func(o cli.Options) bool { return o.RM == "flux" && o.Timeouts == "production" }, nil},
		{[]string{"exec", "node2", "--", "srun", "-N2", "hostname"}, func(o cli.Options) bool {
			return o.Node == "node2" && strings.Join(o.Argv, " ") == "srun -N2 hostname"
		}, nil},
		{[]string{"exec", "node1", "hostname"}, func(o cli.Options) bool { return o.Node == "node1" && o.Argv[0] == "hostname" }, nil},
		{[]string{"poweroff", "node3", "--json"}, func(o cli.Options) bool { return o.Node == "node3" && o.JSON }, nil},
		{[]string{"poweron", "node3"}, func(o cli.Options) bool { return o.Node == "node3" }, nil},
		{[]string{"status", "--json"}, func(o cli.Options) bool { return o.JSON }, nil},
		{[]string{"down"}, func(o cli.Options) bool { return o.Command == "down" }, nil},
		{[]string{}, nil, cli.ErrUsage},
		{[]string{"reboot"}, nil, cli.ErrUsage},
		{[]string{"exec", "node1"}, nil, cli.ErrUsage},
		{[]string{"exec", "--", "ls"}, nil, cli.ErrUsage},
		{[]string{"poweroff"}, nil, cli.ErrUsage},
		{[]string{"down", "extra"}, nil, cli.ErrUsage},
	}
	for _, tt := range tests {
		o, err := parse(tt.args)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("parse(%q) err = %v, want %v", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !tt.want(o) {
			t.Errorf("parse(%q) = %+v, %v", tt.args, o, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{&cli.ExitError{Code: 75}, 75},
		{cli.ErrUsage, 2},
		{&vcluster.MissingError{Programs: []string{"slurmd"}}, 3},
		{&vcluster.MissingError{Programs: []string{"flux"}, Why: "flux-core is not installed"}, 3},
		{vcluster.ErrNoCluster, 4},
		{errors.New("boom"), 1},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

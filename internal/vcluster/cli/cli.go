// Package cli implements the vcluster command: it parses nothing itself
// (cmd/vcluster does) and maps each subcommand to the vcluster package.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/scr-go/scr/internal/vcluster"
)

// Options is the parsed command line.
type Options struct {
	Command  string // up, down, exec, poweroff, poweron, status, env
	StateDir string
	Name     string
	Nodes    int
	Timeouts string
	RM       string // slurm (default) or flux
	SSH      bool
	BinDir   string
	JSON     bool
	Node     string   // exec, poweroff, poweron
	Argv     []string // exec
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
}

// ExitError carries the exit status of a command run by `vcluster exec`.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("command exited with status %d", e.Code) }

// ErrUsage marks a command-line mistake.
var ErrUsage = errors.New("usage")

// Run runs one subcommand.
func Run(ctx context.Context, o Options) error {
	switch o.Command {
	case "up":
		return up(ctx, o)
	case "down":
		return vcluster.DownDir(ctx, o.StateDir, o.Name)
	}
	c, err := vcluster.Load(o.StateDir, o.Name)
	if err != nil {
		return err
	}
	switch o.Command {
	case "exec":
		return execNode(ctx, c, o)
	case "poweroff":
		at, err := c.PowerOff(ctx, o.Node)
		if err != nil {
			return err
		}
		if o.JSON {
			return json.NewEncoder(o.Stdout).Encode(map[string]any{"node": o.Node, "powered_off": at.Format(time.RFC3339Nano), "unix": float64(at.UnixNano()) / 1e9})
		}
		fmt.Fprintf(o.Stdout, "%s powered off at %s\n", o.Node, at.Format(time.RFC3339Nano))
		return nil
	case "poweron":
		start := time.Now()
		if err := c.PowerOn(ctx, o.Node); err != nil {
			return err
		}
		fmt.Fprintf(o.Stdout, "%s powered on in %v\n", o.Node, time.Since(start).Round(time.Millisecond))
		return nil
	case "status":
		return status(ctx, c, o)
	case "env":
		if c.IsFlux() {
			fmt.Fprintf(o.Stdout, "FLUX_URI=%s\nVCLUSTER_STATE=%s\nVCLUSTER_SHARED=%s\n", c.FluxURI(c.Nodes()[0].Name), c.StateDir(), c.SharedDir())
			return nil
		}
		fmt.Fprintf(o.Stdout, "SLURM_CONF=%s\nVCLUSTER_STATE=%s\nVCLUSTER_SHARED=%s\n", c.SlurmConf(), c.StateDir(), c.SharedDir())
		return nil
	}
	return fmt.Errorf("%w: unknown command %q", ErrUsage, o.Command)
}

func up(ctx context.Context, o Options) error {
	start := time.Now()
	c, err := vcluster.Up(ctx, vcluster.Options{Name: o.Name, StateDir: o.StateDir, Nodes: o.Nodes,
		Timeouts: vcluster.Timeouts(o.Timeouts), RM: vcluster.RM(o.RM), SSH: o.SSH, BinDir: o.BinDir})
	if err != nil {
		return err
	}
	if o.JSON {
		m := map[string]any{"state": c.StateDir(), "nodes": c.Nodes(), "rm": string(c.RM()),
			"subnet": c.Subnet(), "shared": c.SharedDir(), "ssh_config": c.SSHConfig(),
			"seconds": time.Since(start).Seconds()}
		if c.IsFlux() {
			m["flux_uri"] = c.FluxURI(c.Nodes()[0].Name)
		} else {
			m["slurm_conf"] = c.SlurmConf()
		}
		return json.NewEncoder(o.Stdout).Encode(m)
	}
	try := fmt.Sprintf("srun -N%d hostname", len(c.Nodes()))
	if c.IsFlux() {
		try = fmt.Sprintf("flux run -N%d hostname", len(c.Nodes()))
	}
	fmt.Fprintf(o.Stdout, "cluster up in %v: %d nodes on %s (%s), state %s\nshared dir: %s\nrun: vcluster exec node1 -- %s\n",
		time.Since(start).Round(time.Millisecond), len(c.Nodes()), c.Subnet(), c.RM(), c.StateDir(), c.SharedDir(), try)
	return nil
}

func status(ctx context.Context, c *vcluster.Cluster, o Options) error {
	if c.IsFlux() {
		return fluxStatus(ctx, c, o)
	}
	states, serr := c.SlurmStates(ctx)
	byName := map[string]vcluster.NodeState{}
	for _, s := range states {
		byName[s.Name] = s
	}
	type row struct {
		Node   string `json:"node"`
		Addr   string `json:"addr"`
		Power  string `json:"power"`
		Slurm  string `json:"slurm"`
		Reason string `json:"reason,omitempty"`
	}
	var rows []row
	for _, n := range c.Nodes() {
		p := "on"
		if c.PoweredOff(n.Name) {
			p = "off"
		}
		s := byName[n.Name]
		rows = append(rows, row{n.Name, n.Addr, p, s.State, s.Reason})
	}
	if o.JSON {
		if err := json.NewEncoder(o.Stdout).Encode(map[string]any{"state": c.StateDir(), "nodes": rows}); err != nil {
			return err
		}
		return serr
	}
	fmt.Fprintf(o.Stdout, "%-8s %-15s %-5s %-28s %s\n", "NODE", "ADDR", "POWER", "SLURM", "REASON")
	for _, r := range rows {
		fmt.Fprintf(o.Stdout, "%-8s %-15s %-5s %-28s %s\n", r.Node, r.Addr, r.Power, r.Slurm, r.Reason)
	}
	return serr
}

// fluxStatus prints each node's power and what the system instance says
// of it: offline (broker lost or not started) or online.
func fluxStatus(ctx context.Context, c *vcluster.Cluster, o Options) error {
	off, ferr := c.FluxOffline(ctx)
	offline := map[string]bool{}
	for _, n := range off {
		offline[n] = true
	}
	type row struct {
		Node  string `json:"node"`
		Addr  string `json:"addr"`
		Power string `json:"power"`
		Flux  string `json:"flux"`
	}
	var rows []row
	for _, n := range c.Nodes() {
		p, f := "on", "online"
		if c.PoweredOff(n.Name) {
			p = "off"
		}
		if offline[n.Name] {
			f = "offline"
		}
		if ferr != nil {
			f = "?"
		}
		rows = append(rows, row{n.Name, n.Addr, p, f})
	}
	if o.JSON {
		if err := json.NewEncoder(o.Stdout).Encode(map[string]any{"state": c.StateDir(), "rm": "flux", "nodes": rows}); err != nil {
			return err
		}
		return ferr
	}
	fmt.Fprintf(o.Stdout, "%-8s %-15s %-5s %s\n", "NODE", "ADDR", "POWER", "FLUX")
	for _, r := range rows {
		fmt.Fprintf(o.Stdout, "%-8s %-15s %-5s %s\n", r.Node, r.Addr, r.Power, r.Flux)
	}
	return ferr
}

// execNode runs the command with the terminal attached, forwards SIGINT
// and SIGTERM to it, and returns its exit status as *ExitError.
func execNode(ctx context.Context, c *vcluster.Cluster, o Options) error {
	if len(o.Argv) == 0 {
		return fmt.Errorf("%w: exec NODE -- CMD...", ErrUsage)
	}
	cmd := c.Command(context.WithoutCancel(ctx), o.Node, o.Argv, passEnv())
	if cmd.Err != nil {
		return cmd.Err
	}
	cmd.SysProcAttr = nil // stay in the terminal's process group
	cmd.Cancel = nil
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // ends when the command exits
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if code < 0 { // killed by a signal
					if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						code = 128 + int(ws.Signal())
					}
				}
				return &ExitError{Code: code}
			}
			return err
		}
	}
}

// passEnv forwards the caller's SCR_* variables to the node.
func passEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SCR_") {
			env = append(env, kv)
		}
	}
	return env
}

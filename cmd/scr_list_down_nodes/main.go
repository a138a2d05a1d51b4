// Command scr_list_down_nodes prints the nodes of the allocation that are
// down, or unfit to run the next step (see doc/nodes.md).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/nodecheck"
	_ "github.com/scr-go/scr/internal/rm/all"
)

// Exit codes (documented in usage).
const (
	exitNoneDown = 0 // the check ran (and, with --fail-if-down, no node is down)
	exitSomeDown = 1 // --fail-if-down only: some nodes are down
	exitUsage    = 2
	exitNoCheck  = 3
)

const usage = `usage: scr_list_down_nodes [-r|--reason] [-f|--free] [-d|--down NODES] [-l|--log]
                           [-s|--secs N] [--json] [--fail-if-down] [-j LAUNCHER]
                           [--cntl DIR[:BYTES]]... [--cache DIR[:BYTES]]... [NODES]

Checks the nodes of the allocation and prints those that are down, as one
compressed host list (node[1-3,7]; an empty line when none is down), or with
--reason one "node: reason" line per down node, sorted.

NODES (a host list) is the set to check; default SCR_NODELIST, else the
resource manager's node list (Slurm, Flux, LSF, or the local cluster).
A node fails the first of these that fails it, and is not tested further:
  1. named in --down                       "Specified as down"
  2. in SCR_EXCLUDE_NODES                  "User excluded via SCR_EXCLUDE_NODES"
  3. reported down by the resource manager "Reported down by resource manager (...)"
  4. ping: ICMP echo, 1 s, retried once    "Failed to ping"
     (in-process from one socket when allowed, else ping -c1 -W1 per node)
  5. remote echo UP                        "Failed to echo UP (...)"
  6. storage: control and cache dirs exist, are writable, have the capacity
                                           "scr_check_node: FAIL: ..."
SCR_NODE_TESTS (ping,echo,dir_capacity) selects tests 4-6. The resource
manager is asked concurrently with the tests and not waited for more than 2 s.

options:
  -r, --reason        print the reason of each down node
  -f, --free          storage test checks free instead of total capacity
  -d, --down NODES    treat NODES as down without testing them
  -l, --log           append a node_down event per down node to the timeline
                      (<SCR_PREFIX or cwd>/.scr/timeline)
  -s, --secs N        the job's run time in seconds, recorded with --log
      --json          print a JSON object instead (nodes, down, reasons)
      --fail-if-down  exit 1 when some node is down (scr-go; SCR's exits 0)
  -j LAUNCHER         accepted for compatibility with SCR; ignored
      --cntl, --cache DIR[:BYTES]
                      directories for the storage test (default: each node's
                      SCR_CNTL_BASE and SCR_CACHE_BASE, else /dev/shm)

EXIT STATUS
  0  the check ran (whether or not nodes are down, as SCR's; scripts under
     set -e rely on it)
  1  with --fail-if-down: some nodes are down (listed)
  2  usage error (bad option or host list)
  3  could not check: no node list (not in an allocation and no NODES or
     SCR_NODELIST), or no way to reach the nodes
`

type options struct {
	reason, free, log, json bool
	failIfDown              bool
	down, secs, launcher    string
	dirs                    []nodecheck.Dir
	nodes                   []string
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("scr_list_down_nodes", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, n := range []string{"r", "reason"} {
		fs.BoolVar(&o.reason, n, false, "")
	}
	for _, n := range []string{"f", "free"} {
		fs.BoolVar(&o.free, n, false, "")
	}
	for _, n := range []string{"l", "log"} {
		fs.BoolVar(&o.log, n, false, "")
	}
	for _, n := range []string{"d", "down"} {
		fs.StringVar(&o.down, n, "", "")
	}
	for _, n := range []string{"s", "secs"} {
		fs.StringVar(&o.secs, n, "", "")
	}
	for _, n := range []string{"j", "joblauncher"} {
		fs.StringVar(&o.launcher, n, "", "")
	}
	fs.BoolVar(&o.json, "json", false, "")
	fs.BoolVar(&o.failIfDown, "fail-if-down", false, "")
	dir := func(kind string) func(string) error {
		return func(s string) error {
			d, err := nodecheck.ParseDir(kind, s)
			if err == nil {
				o.dirs = append(o.dirs, d)
			}
			return err
		}
	}
	fs.Func("cntl", "", dir("cntl"))
	fs.Func("cache", "", dir("cache"))
	// Combined short switches, as argparse takes them: -rl = -r -l.
	var split []string
	for _, a := range args {
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && strings.Trim(a[1:], "rfl") == "" {
			for _, c := range a[1:] {
				split = append(split, "-"+string(c))
			}
			continue
		}
		split = append(split, a)
	}
	args = split
	// Flags and NODES may be mixed, as in SCR.
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return o, err
		}
		args = fs.Args()
		if len(args) > 0 {
			o.nodes = append(o.nodes, args[0])
			args = args[1:]
		}
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Hidden subcommand: the storage test, run on each node.
	if len(args) > 0 && args[0] == "--check-storage" {
		line, ok := nodecheck.RunStorageCheck(args, os.Getenv, nodecheck.NodeName(os.Getenv))
		fmt.Fprintln(stdout, line)
		if !ok {
			return 1
		}
		return 0
	}
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(stdout, usage)
			return exitNoneDown
		}
	}
	o, err := parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "scr_list_down_nodes: %v (see --help)\n", err)
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		self = ""
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := nodecheck.Run(ctx, nodecheck.ListOptions{
		Nodes: strings.Join(o.nodes, ","), Down: o.down, Free: o.free, Log: o.log, Secs: o.secs,
		Dirs: o.dirs, Self: self,
	})
	var ue *nodecheck.UsageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "scr_list_down_nodes: %v\n", err)
		return exitUsage
	case err != nil:
		fmt.Fprintf(stderr, "scr_list_down_nodes: cannot check: %v\n", err)
		return exitNoCheck
	}
	if res.RMErr != nil {
		fmt.Fprintf(stderr, "scr_list_down_nodes: warning: resource manager: %v (own tests used)\n", res.RMErr)
	}
	code := exitNoneDown
	if o.failIfDown && len(res.Down) > 0 {
		code = exitSomeDown
	}
	if res.LogErr != nil {
		fmt.Fprintf(stderr, "scr_list_down_nodes: warning: --log: %v\n", res.LogErr)
	}
	if o.json {
		type entry struct {
			Node   string `json:"node"`
			Reason string `json:"reason"`
		}
		j := struct {
			Nodes    string  `json:"nodes"`
			Checked  int     `json:"checked"`
			Down     string  `json:"down"`
			Reasons  []entry `json:"reasons"`
			RM       string  `json:"resource_manager,omitempty"`
			RMError  string  `json:"resource_manager_error,omitempty"`
			Seconds  float64 `json:"seconds"`
			ExitCode int     `json:"exit_code"`
		}{Nodes: hostlist.Compress(res.Nodes), Checked: len(res.Nodes), Down: hostlist.Compress(nodecheck.Sorted(res.Down)),
			Reasons: []entry{}, RM: res.Manager, Seconds: res.Duration.Seconds()}
		for _, n := range nodecheck.Sorted(res.Down) {
			j.Reasons = append(j.Reasons, entry{n, res.Down[n]})
		}
		if res.RMErr != nil {
			j.RMError = res.RMErr.Error()
		}
		j.ExitCode = code
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(j)
	} else {
		fmt.Fprint(stdout, nodecheck.FormatText(res.Down, o.reason))
	}
	return code
}

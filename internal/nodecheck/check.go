package nodecheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/scr-go/scr/internal/hostlist"
	"github.com/scr-go/scr/internal/remote"
	"github.com/scr-go/scr/internal/rm"
)

// Check names, as in SCR_NODE_TESTS.
const (
	CheckPing        = "ping"
	CheckEcho        = "echo"
	CheckDirCapacity = "dir_capacity"
)

// DefaultChecks is SCR's default list.
var DefaultChecks = []string{CheckPing, CheckEcho, CheckDirCapacity}

// ErrUnavailable is returned by a Pinger that cannot check at all (no ping
// program): the check is then recorded as not run, never as a failure of
// every node.
var ErrUnavailable = errors.New("check unavailable")

// Defaults for Options.
const (
	// DefaultPingTimeout bounds one ping attempt: ping -W1 waits one second
	// for the reply; the rest is process start-up.
	DefaultPingTimeout = 1500 * time.Millisecond
	// DefaultEchoTimeout bounds the remote echo: a live node answers an ssh
	// or srun in well under a second; two seconds keeps one silent node
	// from holding the whole check.
	DefaultEchoTimeout = 2 * time.Second
	// DefaultStorageTimeout bounds the remote storage check (statfs and one
	// small file write: a healthy node takes milliseconds; a wedged SSD hangs).
	DefaultStorageTimeout = 3 * time.Second
	// DefaultRMTimeout bounds the resource manager's down-node query.
	DefaultRMTimeout = 2 * time.Second
	// DefaultPingFanout: pings are cheap (one small process, or nothing
	// for simulated nodes) but a dead node holds its slot for two seconds;
	// 256 (pdsh's -f in SCR) keeps a whole dead rack from queueing the rest.
	DefaultPingFanout = 256
	// icmpWait is the in-process ping's reply window per try, as ping -W1.
	icmpWait = time.Second
	// DefaultBatchSize: 256 nodes per srun step / flux exec: 40 launches
	// for 10,000 nodes instead of 10,000, and a hung node only sends its
	// own launch's nodes to the one-by-one fallback.
	DefaultBatchSize = 256
	// DefaultBatchTimeout bounds one batched launch (a multi-node step
	// takes longer to start than a one-node step).
	DefaultBatchTimeout = 5 * time.Second
	// batchSteps is how many batched launches run at once.
	batchSteps = 4
	// batchLinger is how long live nodes are gathered before a launch that
	// is not full yet.
	batchLinger = 20 * time.Millisecond
)

// Options configure Probe and Check. The zero value runs SCR's default
// checks with the defaults above, except storage, which needs StorageArgv.
type Options struct {
	Checks      []string                                     // subset of DefaultChecks; nil = all
	Transport   remote.Transport                             // for echo and storage; nil = from the Manager
	Ping        func(ctx context.Context, node string) error // nil = the Manager's Pinger, else in-process ICMP, else ping(8)
	NoICMP      bool                                         // never ping in-process: one ping(8) per node
	PingRetries int                                          // extra attempts after a failed ping; default 1 (-1 = none)
	// StorageArgv runs the storage check on a node (e.g. the path of
	// scr_list_down_nodes followed by StorageArgs); nil skips the check.
	StorageArgv []string
	Fanout      int // nodes in remote checks (echo, storage) at once; default remote.DefaultFanout
	PingFanout  int // pings at once; default DefaultPingFanout
	// BatchSize: with a transport that can launch on many nodes at once
	// (remote.Batcher: srun, flux exec) and both echo and storage checks,
	// the live nodes are checked in launches of up to BatchSize nodes;
	// nodes missing from a launch's output are then checked one by one.
	// Default DefaultBatchSize; 1 disables batching.
	BatchSize      int
	BatchTimeout   time.Duration // bound of one batched launch; default DefaultBatchTimeout
	PingTimeout    time.Duration
	EchoTimeout    time.Duration
	StorageTimeout time.Duration
	RMTimeout      time.Duration
}

func (o Options) withDefaults() Options {
	if o.Checks == nil {
		o.Checks = DefaultChecks
	}
	if o.PingRetries == 0 {
		o.PingRetries = 1
	} else if o.PingRetries < 0 {
		o.PingRetries = 0
	}
	if o.Fanout <= 0 {
		o.Fanout = remote.DefaultFanout
	}
	if o.PingFanout <= 0 {
		o.PingFanout = DefaultPingFanout
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = DefaultBatchTimeout
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = DefaultPingTimeout
	}
	if o.EchoTimeout <= 0 {
		o.EchoTimeout = DefaultEchoTimeout
	}
	if o.StorageTimeout <= 0 {
		o.StorageTimeout = DefaultStorageTimeout
	}
	if o.RMTimeout <= 0 {
		o.RMTimeout = DefaultRMTimeout
	}
	return o
}

func (o Options) has(check string) bool {
	for _, c := range o.Checks {
		if c == check {
			return true
		}
	}
	return false
}

// SystemPing runs `ping -c1 -W1 node`. Without a ping program it returns
// ErrUnavailable.
func SystemPing(ctx context.Context, node string) error {
	path, err := exec.LookPath("ping")
	if err != nil {
		return fmt.Errorf("%w: no ping program in PATH", ErrUnavailable)
	}
	cmd := exec.CommandContext(ctx, path, "-c1", "-W1", node)
	cmd.WaitDelay = 200 * time.Millisecond
	out, err := cmd.CombinedOutput()
	if err != nil {
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("ping %s: %v: %s", node, err, line)
	}
	return nil
}

// Probe runs the configured checks on nodes, as a two-stage pipeline: pings
// (with retry; at most opts.PingFanout at once) feed the nodes that answered
// to the remote checks (echo and storage as one remote command; at most
// opts.Fanout nodes at once), so dead nodes waiting for their ping timeout
// never hold up the remote checks of live ones. Every check has its
// timeout. Probe returns when all nodes are done or ctx ends (unfinished
// checks are then reported as not run).
func Probe(ctx context.Context, nodes []string, opts Options) map[string]Result {
	return probe(ctx, nodes, opts, nil)
}

// probe is Probe where nodeCtx, if not nil, gives each node's own context
// (a child of ctx that Check cancels once the resource manager has
// reported the node down).
func probe(ctx context.Context, nodes []string, opts Options, nodeCtx map[string]context.Context) map[string]Result {
	opts = opts.withDefaults()
	ping := opts.Ping
	if ping == nil {
		ping = SystemPing
	}
	res := make([]Result, len(nodes))
	ctxOf := func(i int) context.Context {
		if c, ok := nodeCtx[nodes[i]]; ok {
			return c
		}
		return ctx
	}
	// Stage 1 -> stage 2. Buffered for every node, so stage 1 never waits.
	alive := make(chan int, len(nodes))
	var sock *icmpSocket
	if opts.has(CheckPing) && opts.Ping == nil && !opts.NoICMP && len(nodes) > 0 {
		sock, _ = openICMP() // nil: fall back to ping(8)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // stage 1: ends when every node was pinged or ctx ended
		defer wg.Done()
		defer close(alive)
		if sock != nil {
			defer sock.pc.Close()
			errs := pingAll(ctx, sock, nodes, icmpWait, opts.PingRetries, func(i int) {
				res[i].Ping = Outcome{Ran: true}
				alive <- i
			}, func(i int) bool { return ctxOf(i).Err() != nil })
			for i, err := range errs {
				switch {
				case err == nil:
				case ctxOf(i).Err() != nil:
					res[i].Ping = Outcome{Detail: "not finished: " + ctxOf(i).Err().Error()}
				default:
					res[i].Ping = Outcome{Ran: true, Failed: true, Detail: err.Error()}
				}
			}
			return
		}
		remote.Each(ctx, len(nodes), opts.PingFanout, func(_ context.Context, i int) {
			var ok bool
			res[i].Ping, ok = pingNode(ctxOf(i), nodes[i], ping, opts)
			if ok {
				alive <- i
			}
		})
	}()
	go func() { // stage 2: ends when stage 1 has closed alive and all are done
		defer wg.Done()
		if b, ok := opts.Transport.(remote.Batcher); ok && opts.BatchSize > 1 &&
			opts.has(CheckEcho) && opts.has(CheckDirCapacity) && len(opts.StorageArgv) > 0 {
			runBatches(ctx, b, alive, nodes, res, ctxOf, opts)
			return
		}
		var workers sync.WaitGroup
		for w := 0; w < opts.Fanout; w++ {
			workers.Add(1)
			go func() { // ends when alive is closed and drained
				defer workers.Done()
				for i := range alive {
					remoteChecks(ctxOf(i), nodes[i], &res[i], opts)
				}
			}()
		}
		workers.Wait()
	}()
	wg.Wait()
	out := make(map[string]Result, len(nodes))
	for i, n := range nodes {
		out[n] = res[i]
	}
	return out
}

// runBatches gathers the live nodes coming from stage 1 into launches of
// up to opts.BatchSize nodes (or whatever arrived within batchLinger) and
// runs at most batchSteps launches at once. It returns when alive is closed
// and every launch and fallback is done.
func runBatches(ctx context.Context, b remote.Batcher, alive <-chan int, nodes []string, res []Result, ctxOf func(int) context.Context, opts Options) {
	batches := make(chan []int)
	var wg sync.WaitGroup
	for w := 0; w < batchSteps; w++ {
		wg.Add(1)
		go func() { // ends when batches is closed
			defer wg.Done()
			for bt := range batches {
				runBatch(ctx, b, bt, nodes, res, ctxOf, opts)
			}
		}()
	}
	var cur []int
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	flush := func() {
		if len(cur) > 0 {
			batches <- cur
			cur = nil
		}
	}
gather:
	for {
		select {
		case i, ok := <-alive:
			if !ok {
				break gather
			}
			cur = append(cur, i)
			if len(cur) == 1 {
				linger.Reset(batchLinger)
			}
			if len(cur) >= opts.BatchSize {
				linger.Stop()
				flush()
			}
		case <-linger.C:
			flush()
		}
	}
	linger.Stop()
	flush()
	close(batches)
	wg.Wait()
}

// fixedCmd is a Transport that always returns one prepared command (a
// batched launch, run through remote.RunOne for its timeout and kill).
type fixedCmd struct {
	name string
	cmd  remote.Cmd
}

func (f fixedCmd) Name() string                                 { return f.name }
func (f fixedCmd) Command(string, []string) (remote.Cmd, error) { return f.cmd, nil }

// runBatch checks the nodes bt in one launch, then one by one those whose
// labelled answer did not come back.
func runBatch(ctx context.Context, b remote.Batcher, bt []int, nodes []string, res []Result, ctxOf func(int) context.Context, opts Options) {
	var todo []int
	for _, i := range bt {
		if ctxOf(i).Err() == nil {
			todo = append(todo, i)
		}
	}
	var fallback []int
	if len(todo) == 1 {
		fallback = todo
	} else if len(todo) > 1 {
		names := make([]string, len(todo))
		for k, i := range todo {
			names[k] = nodes[i]
		}
		argv := append(append([]string(nil), opts.StorageArgv...), EchoArg, LabelArg)
		lines := map[string][]string{}
		if cmd, err := b.BatchCommand(names, argv); err == nil {
			r := remote.RunOne(ctx, fixedCmd{b.Name(), cmd}, fmt.Sprintf("%d nodes", len(names)), argv,
				remote.Options{Timeout: opts.BatchTimeout, MaxOutput: max(remote.DefaultMaxOutput, 1024*len(names))})
			// Whatever came back counts, even if the launch failed or
			// timed out because of one bad node.
			for _, l := range strings.Split(string(r.Stdout), "\n") {
				if n, text, ok := strings.Cut(l, ": "); ok {
					lines[n] = append(lines[n], strings.TrimSpace(text))
				}
			}
		}
		for _, i := range todo {
			ls := lines[nodes[i]]
			if len(ls) == 0 || ls[0] != "UP" {
				fallback = append(fallback, i)
				continue
			}
			res[i].Echo = Outcome{Ran: true}
			res[i].Storage = storageLines(ls, "the batched launch printed UP but no storage result")
		}
	}
	remote.Each(ctx, len(fallback), opts.Fanout, func(_ context.Context, k int) {
		i := fallback[k]
		remoteChecks(ctxOf(i), nodes[i], &res[i], opts)
	})
}

// pingNode pings with retry; ok means "go on with the remote checks" (the
// ping passed, or could not run at all).
func pingNode(ctx context.Context, node string, ping func(context.Context, string) error, opts Options) (Outcome, bool) {
	if !opts.has(CheckPing) {
		return Outcome{}, ctx.Err() == nil
	}
	var err error
	for attempt := 0; attempt <= opts.PingRetries; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, opts.PingTimeout)
		err = ping(pctx, node)
		cancel()
		if err == nil || errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			break
		}
	}
	switch {
	case err == nil:
		return Outcome{Ran: true}, true
	case errors.Is(err, ErrUnavailable):
		return Outcome{Detail: err.Error()}, true
	case ctx.Err() != nil:
		return Outcome{Detail: "not finished: " + ctx.Err().Error()}, false
	default:
		// A node that does not ping gets no remote checks.
		return Outcome{Ran: true, Failed: true, Detail: err.Error()}, false
	}
}

// probeNode runs both stages for one node (tests use it directly).
func probeNode(ctx context.Context, node string, ping func(context.Context, string) error, opts Options) Result {
	var p Result
	var ok bool
	if p.Ping, ok = pingNode(ctx, node, ping, opts); ok {
		remoteChecks(ctx, node, &p, opts)
	}
	return p
}

// remoteChecks runs echo and storage on a node that answered ping.
func remoteChecks(ctx context.Context, node string, p *Result, opts Options) {
	if ctx.Err() != nil {
		return
	}
	doEcho := opts.has(CheckEcho) && opts.Transport != nil
	doStorage := opts.has(CheckDirCapacity) && opts.Transport != nil && len(opts.StorageArgv) > 0
	switch {
	case doEcho && doStorage:
		// One remote command for both: it prints UP, then the storage
		// result. Half the remote launches (srun steps, ssh sessions).
		argv := append(append([]string(nil), opts.StorageArgv...), EchoArg)
		timeout := max(opts.EchoTimeout, opts.StorageTimeout)
		r := remote.RunOne(ctx, opts.Transport, node, argv, remote.Options{Timeout: timeout})
		out := string(r.Stdout)
		if first, _, _ := strings.Cut(strings.TrimSpace(out), "\n"); strings.TrimSpace(first) != "UP" {
			if !cannotRun(r) {
				p.Echo = echoFailure(r)
				return
			}
			// The node answers but has no storage-check program: say so,
			// and let a plain echo judge reachability.
			e := remote.RunOne(ctx, opts.Transport, node, []string{"echo", "UP"}, remote.Options{Timeout: opts.EchoTimeout})
			if e.Err != nil || strings.TrimSpace(string(e.Stdout)) != "UP" {
				p.Echo = echoFailure(e)
				return
			}
			p.Echo = Outcome{Ran: true}
			p.Storage = Outcome{Ran: true, Failed: true, Detail: fmt.Sprintf("scr_check_node: FAIL: cannot run %s on the node: %s", opts.StorageArgv[0], shortErr(r))}
			return
		}
		p.Echo = Outcome{Ran: true}
		p.Storage = storageOutcome(r)
	case doEcho:
		r := remote.RunOne(ctx, opts.Transport, node, []string{"echo", "UP"}, remote.Options{Timeout: opts.EchoTimeout})
		if r.Err == nil && strings.TrimSpace(string(r.Stdout)) == "UP" {
			p.Echo = Outcome{Ran: true}
		} else {
			p.Echo = echoFailure(r)
		}
	case doStorage:
		r := remote.RunOne(ctx, opts.Transport, node, opts.StorageArgv, remote.Options{Timeout: opts.StorageTimeout})
		p.Storage = storageOutcome(r)
	}
}

// cannotRun reports whether a remote command failed because its program is
// missing or not executable there (exec error, or a shell's 126/127).
func cannotRun(r remote.Result) bool {
	return errors.Is(r.Err, exec.ErrNotFound) || errors.Is(r.Err, os.ErrNotExist) ||
		errors.Is(r.Err, os.ErrPermission) || r.ExitCode == 126 || r.ExitCode == 127
}

func echoFailure(r remote.Result) Outcome {
	if r.Err != nil {
		return Outcome{Ran: true, Failed: true, Detail: shortErr(r)}
	}
	return Outcome{Ran: true, Failed: true, Detail: fmt.Sprintf("answered %q", strings.TrimSpace(string(r.Stdout)))}
}

func storageOutcome(r remote.Result) Outcome {
	return storageLines(strings.Split(string(r.Stdout), "\n"), shortErr(r))
}

// storageLines finds the storage check's result line; why says what went
// wrong if there is none.
func storageLines(lines []string, why string) Outcome {
	for _, line := range lines {
		line = strings.TrimSpace(line)
		switch {
		case line == StoragePass:
			return Outcome{Ran: true}
		case strings.HasPrefix(line, "scr_check_node: FAIL"):
			return Outcome{Ran: true, Failed: true, Detail: line}
		}
	}
	return Outcome{Ran: true, Failed: true, Detail: "scr_check_node: FAIL: no answer from the storage check: " + why}
}

func shortErr(r remote.Result) string {
	if r.Err == nil {
		return "no output"
	}
	var ne *remote.NodeError
	if errors.As(r.Err, &ne) {
		s := ne.Err.Error()
		if ne.Stderr != "" {
			s += ": " + ne.Stderr
		}
		return s
	}
	return r.Err.Error()
}

// Request is one down-node check of an allocation.
type Request struct {
	Nodes     []string   // nodes to check; nil = the Manager's Nodes
	Specified []string   // named as down by the caller
	Excluded  []string   // SCR_EXCLUDE_NODES, expanded
	Manager   rm.Manager // may be nil (then Nodes must be given)
	Options
}

// Report is the outcome of Check.
type Report struct {
	Nodes  []string          // the nodes checked
	Down   map[string]string // node -> reason
	Probes map[string]Result // what the probes found (for --json)
	RMErr  error             // the resource manager could not answer in time (checks went on)
}

// ErrNoNodes is returned by Check when there is no node list: none given
// and no resource manager to ask.
var ErrNoNodes = errors.New("no nodes to check: give a node list, or run inside an allocation")

// Check decides which nodes are down: the resource manager is asked (bounded
// by RMTimeout) while the probes run, then Decide combines everything. An
// error means nothing could be checked (no node list); a resource manager
// that fails to answer is only reported in Report.RMErr.
func Check(ctx context.Context, req Request) (Report, error) {
	opts := req.Options.withDefaults()
	nodes := req.Nodes
	if len(nodes) == 0 {
		if req.Manager == nil {
			return Report{}, ErrNoNodes
		}
		var err error
		nodes, err = req.Manager.Nodes(ctx)
		if err != nil {
			return Report{}, fmt.Errorf("%w: %v", ErrNoNodes, err)
		}
	}
	nodes = hostlist.Dedupe(nodes)
	rep := Report{Nodes: nodes}

	// Nodes already known down are not probed.
	skip := map[string]bool{}
	for _, n := range req.Specified {
		skip[n] = true
	}
	for _, n := range req.Excluded {
		skip[n] = true
	}
	var probeNodes []string
	for _, n := range nodes {
		if !skip[n] {
			probeNodes = append(probeNodes, n)
		}
	}

	// Each probed node gets its own context, cancelled as soon as the
	// resource manager reports the node down: no need to wait two seconds
	// for the ping of a node Slurm already knows is dead.
	nodeCtx := make(map[string]context.Context, len(probeNodes))
	nodeCancel := make(map[string]context.CancelFunc, len(probeNodes))
	for _, n := range probeNodes {
		nodeCtx[n], nodeCancel[n] = context.WithCancel(ctx)
	}
	defer func() {
		for _, cancel := range nodeCancel {
			cancel()
		}
	}()

	var (
		wg     sync.WaitGroup
		rmDown map[string]string
	)
	if req.Manager != nil {
		wg.Add(1)
		go func() { // ends within RMTimeout: the context bounds the query
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, opts.RMTimeout)
			defer cancel()
			type answer struct {
				down map[string]string
				err  error
			}
			ch := make(chan answer, 1)
			go func() { // may outlive us only if an adapter ignores ctx; the buffered channel lets it finish
				d, err := req.Manager.DownNodes(rctx)
				ch <- answer{d, err}
			}()
			select {
			case a := <-ch:
				rmDown, rep.RMErr = a.down, a.err
			case <-rctx.Done():
				rep.RMErr = fmt.Errorf("%s: no down-node answer within %v", req.Manager.Name(), opts.RMTimeout)
			}
			if rep.RMErr != nil {
				rmDown = nil
			}
			for n := range rmDown {
				if cancel, ok := nodeCancel[n]; ok {
					cancel()
				}
			}
		}()
		if opts.Transport == nil && (opts.has(CheckEcho) || opts.has(CheckDirCapacity)) {
			tr, err := req.Manager.Transport(ctx)
			if err != nil {
				wg.Wait()
				return rep, fmt.Errorf("nodecheck: no way to reach the nodes: %w", err)
			}
			opts.Transport = tr
		}
		if opts.Ping == nil {
			if p, ok := req.Manager.(rm.Pinger); ok {
				opts.Ping = p.Ping
			}
		}
	}
	rep.Probes = probe(ctx, probeNodes, opts, nodeCtx)
	wg.Wait()
	rep.Down = Decide(Inputs{Nodes: nodes, Specified: req.Specified, Excluded: req.Excluded, RMDown: rmDown, Probes: rep.Probes})
	return rep, nil
}

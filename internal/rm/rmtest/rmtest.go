// Package rmtest is the conformance suite every resource-manager adapter
// runs (internal/rm's contract), and a Replay runner that answers an
// adapter's commands with output captured from the real resource manager.
package rmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scr-go/scr/internal/jobid"
	"github.com/scr-go/scr/internal/rm"
)

// Reply is one captured answer: stdout (from a file or literal), exit code
// and stderr.
type Reply struct {
	Stdout   string
	File     string // read stdout from this file instead (testdata)
	Stderr   string
	ExitCode int
	Block    bool // never answer: wait for ctx (a hung resource manager)
}

// Replay answers commands by their exact command line (argv joined with
// single spaces). An unexpected command fails with an error naming it, so
// an adapter that asks something the capture does not hold is caught.
type Replay struct {
	mu      sync.Mutex
	Replies map[string]Reply
	Calls   []string
}

// Runner returns the rm.Runner serving r.
func (r *Replay) Runner() rm.Runner {
	return func(ctx context.Context, argv []string) ([]byte, error) {
		line := strings.Join(argv, " ")
		r.mu.Lock()
		r.Calls = append(r.Calls, line)
		rep, ok := r.Replies[line]
		r.mu.Unlock()
		if !ok {
			return nil, &rm.CmdError{Argv: argv, ExitCode: 127, Err: fmt.Errorf("rmtest: unexpected command %q", line)}
		}
		if rep.Block {
			<-ctx.Done()
			return nil, &rm.CmdError{Argv: argv, ExitCode: -1, Err: ctx.Err()}
		}
		out := []byte(rep.Stdout)
		if rep.File != "" {
			b, err := os.ReadFile(rep.File)
			if err != nil {
				return nil, err
			}
			out = b
		}
		if rep.ExitCode != 0 {
			return out, &rm.CmdError{Argv: argv, ExitCode: rep.ExitCode, Stderr: rep.Stderr, Err: fmt.Errorf("exit status %d", rep.ExitCode)}
		}
		return out, nil
	}
}

// Case is one situation an adapter must describe correctly.
type Case struct {
	Name     string
	New      func(ctx context.Context) (rm.Manager, error)
	JobID    string
	Nodes    []string
	Down     []string // the nodes DownNodes must report (order ignored)
	DownErr  bool     // DownNodes must fail (and say which command)
	End      int64    // expected EndTime; checked unless AnyEnd
	AnyEnd   bool
	Describe string // free text for failures
	// CacheEnvs are environments that processes of this allocation see
	// (the batch script, a task of each run, a command run by the
	// transport): the library's cache identity (internal/jobid) in each
	// must be JobID(), or a relaunch would not find the cache.
	CacheEnvs []map[string]string
}

// Run checks every case against the contract.
func Run(t *testing.T, cases []Case) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			ctx := context.Background()
			m, err := c.New(ctx)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if m.Name() == "" {
				t.Errorf("Name() is empty")
			}
			if got := m.JobID(); got != c.JobID {
				t.Errorf("JobID() = %q, want %q", got, c.JobID)
			}
			for i, env := range c.CacheEnvs {
				if got := jobid.FromEnv(jobid.Lookup(rm.MapEnv(env))); got != m.JobID() {
					t.Errorf("cache identity in environment %d (%v) = %q, JobID() = %q: the library would look in another cache", i, env, got, m.JobID())
				}
			}
			nodes, err := m.Nodes(ctx)
			if err != nil {
				t.Fatalf("Nodes: %v", err)
			}
			if !reflect.DeepEqual(nodes, c.Nodes) {
				t.Errorf("Nodes() = %q, want %q", nodes, c.Nodes)
			}
			seen := map[string]bool{}
			for _, n := range nodes {
				if seen[n] {
					t.Errorf("Nodes() repeats %q", n)
				}
				seen[n] = true
			}
			down, err := m.DownNodes(ctx)
			if c.DownErr {
				if err == nil {
					t.Errorf("DownNodes: want an error, got %v", down)
				}
			} else if err != nil {
				t.Errorf("DownNodes: %v", err)
			} else {
				var got []string
				for n, why := range down {
					got = append(got, n)
					if !seen[n] {
						t.Errorf("DownNodes reports %q, which is not in Nodes()", n)
					}
					if strings.TrimSpace(why) == "" {
						t.Errorf("DownNodes gives %q no reason", n)
					}
				}
				if !sameSet(got, c.Down) {
					t.Errorf("DownNodes() = %v, want %q", down, c.Down)
				}
			}
			end, err := m.EndTime(ctx)
			if err != nil {
				t.Errorf("EndTime: %v", err)
			} else if end < -1 {
				t.Errorf("EndTime() = %d < -1", end)
			} else if !c.AnyEnd && end != c.End {
				t.Errorf("EndTime() = %d, want %d", end, c.End)
			}
			tr, err := m.Transport(ctx)
			if err != nil {
				t.Fatalf("Transport: %v", err)
			}
			for _, n := range nodes {
				cmd, err := tr.Command(n, []string{"echo", "UP"})
				if err != nil {
					t.Errorf("Transport.Command(%s): %v", n, err)
				} else if cmd.Path == "" {
					t.Errorf("Transport.Command(%s) has no program", n)
				}
			}
		})
	}
}

// CheckBounded checks that DownNodes gives up when its context ends, even if
// the resource manager never answers (the adapter under test must have been
// built with a Replay whose down-node query blocks).
func CheckBounded(t *testing.T, m rm.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := m.DownNodes(ctx); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("DownNodes of a hung resource manager returned no error")
		}
		var ce *rm.CmdError
		if !errors.As(err, &ce) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("DownNodes error %v names no command", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("DownNodes ignored its context: still waiting after 10 s")
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

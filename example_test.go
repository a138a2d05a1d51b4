package scr_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
)

// Two runs of a two-rank job in one process (ranks as goroutines, each
// simulated node with its own cache directory): the first writes two
// checkpoints, the second restarts from the newest one in the cache.
func Example() {
	base, _ := os.MkdirTemp("", "scr-example")
	defer os.RemoveAll(base)
	hosts := []string{"node1", "node2"}
	env := func(node string) func(string) (string, bool) {
		m := map[string]string{
			"SCR_PREFIX":     filepath.Join(base, "prefix"),
			"SCR_CACHE_BASE": filepath.Join(base, node),
			"SCR_CNTL_BASE":  filepath.Join(base, node),
			"SCR_JOB_ID":     "example",
			"SCR_COPY_TYPE":  "XOR",
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	run := func(body func(ctx context.Context, h *scr.Handle, rank int) error) {
		ctx := context.Background()
		comms := comm.NewLocal(hosts)
		var wg sync.WaitGroup
		for r, c := range comms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := scr.Init(ctx, scr.Options{Comm: c, Node: hosts[r], Env: env(hosts[r])})
				if err == nil {
					err = body(ctx, h, r)
				}
				if err == nil {
					err = h.Finalize(ctx)
				}
				if err != nil {
					fmt.Println("rank", r, err)
				}
			}()
		}
		wg.Wait()
	}

	run(func(ctx context.Context, h *scr.Handle, rank int) error {
		for step := 1; step <= 2; step++ {
			if err := h.StartOutput(ctx, fmt.Sprintf("ckpt.%d", step), scr.Checkpoint); err != nil {
				return err
			}
			path, err := h.Route(fmt.Sprintf("ckpt.%d/rank_%d", step, rank))
			if err != nil {
				return err
			}
			werr := os.WriteFile(path, []byte(fmt.Sprintf("state of rank %d at step %d", rank, step)), 0o600)
			if err := h.Complete(ctx, werr == nil); err != nil {
				return err
			}
		}
		return nil
	})

	run(func(ctx context.Context, h *scr.Handle, rank int) error {
		name, ok, err := h.HaveRestart(ctx)
		if err != nil || !ok {
			return fmt.Errorf("no restart: %v", err)
		}
		if _, err := h.StartRestart(ctx); err != nil {
			return err
		}
		path, err := h.Route(name + fmt.Sprintf("/rank_%d", rank))
		b, rerr := os.ReadFile(path)
		if rank == 0 {
			fmt.Printf("restarting from %s: %s\n", name, b)
		}
		return h.CompleteRestart(ctx, err == nil && rerr == nil)
	})
	// Output:
	// restarting from ckpt.2: state of rank 0 at step 2
}

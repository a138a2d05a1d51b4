package prefix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestHelperProcess is not a test: when re-run as a child with
// SCR_PREFIX_HELPER set, it performs locked halt decrements.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("SCR_PREFIX_HELPER")
	if dir == "" {
		t.Skip("helper process for TestLockAcrossProcesses")
	}
	n, _ := strconv.Atoi(os.Getenv("SCR_PREFIX_HELPER_N"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		_, err := UpdateHalt(ctx, dir, func(h *Halt, _ bool) error {
			*h.CheckpointsLeft--
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := UpdateIndex(ctx, dir, func(x *Index) error {
			_, err := x.Put(Dataset{ID: int64(os.Getpid())*1000 + int64(i), Name: fmt.Sprintf("p%d.%d", os.Getpid(), i)})
			return err
		}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

// TestLockAcrossProcesses runs real processes that update the halt file
// and the index concurrently; no update may be lost and no reader may see
// a damaged file.
func TestLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 4, 25
	if _, err := UpdateHalt(context.Background(), dir, func(h *Halt, _ bool) error {
		h.CheckpointsLeft = Int64(procs * each)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "SCR_PREFIX_HELPER="+dir, "SCR_PREFIX_HELPER_N="+strconv.Itoa(each))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// Read while they write: every read must succeed (atomic replace).
	done := make(chan error, procs)
	for _, c := range cmds {
		go func() { done <- c.Wait() }()
	}
	finished := 0
	reads := 0
	for finished < procs {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("helper: %v", err)
			}
			finished++
		default:
			if _, _, err := ReadHalt(dir); err != nil {
				t.Fatalf("read during writes: %v", err)
			}
			if _, err := ReadIndex(dir); err != nil {
				t.Fatalf("read during writes: %v", err)
			}
			reads++
		}
	}
	h, _, err := ReadHalt(dir)
	if err != nil || *h.CheckpointsLeft != 0 {
		t.Fatalf("checkpoints left %d after %d locked decrements (lost updates), err %v", *h.CheckpointsLeft, procs*each, err)
	}
	x, err := ReadIndex(dir)
	if err != nil || len(x.Datasets) != procs*each {
		t.Fatalf("%d index entries, want %d; err %v", len(x.Datasets), procs*each, err)
	}
	t.Logf("%d concurrent reads saw only whole files", reads)
}

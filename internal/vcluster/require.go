package vcluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Require skips the test unless SCR_E2E=1 and the process runs as root (the
// cluster needs namespaces and mounts). With SCR_E2E=1 and programs
// missing, the test fails and names them: CI installs them (`make deps`).
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("virtual-cluster test: set SCR_E2E=1 to run it (needs root and `make deps`)")
	}
	if os.Geteuid() != 0 {
		t.Skip("virtual-cluster test: needs root (network, PID and mount namespaces)")
	}
	if err := CheckPrograms(false); err != nil {
		t.Fatal(err)
	}
}

// RequireFlux is Require for a Flux cluster: it also skips when flux-core
// is not installed, saying where it looked and how to build it (Debian 12
// has no Flux package; `make test` prints the same reason where everyone
// sees it).
func RequireFlux(t testing.TB) {
	t.Helper()
	if os.Getenv("SCR_E2E") != "1" {
		t.Skip("Flux virtual-cluster test: set SCR_E2E=1 to run it (needs root and flux-core: make deps-flux)")
	}
	if os.Geteuid() != 0 {
		t.Skip("Flux virtual-cluster test: needs root (network, PID and mount namespaces)")
	}
	if _, err := FluxProgram(); err != nil {
		t.Skipf("SKIPPED Flux e2e test: %v", err)
	}
	if err := checkPrograms(false, RMFlux); err != nil {
		t.Fatal(err)
	}
}

// Start is the test helper: Require (RequireFlux for a Flux cluster), then Up with a fresh short state
// directory under $TMPDIR (removed at cleanup) and progress logged through t.Logf. Cleanup prints the
// cluster's logs if the test failed, then takes the cluster down.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.RM == RMFlux {
		RequireFlux(t)
	} else {
		Require(t)
	}
	if opts.StateDir == "" {
		// Not t.TempDir(): its long names leave no room for the unix
		// sockets below the state directory (MaxStateDirLen).
		dir, err := os.MkdirTemp("", "vc")
		if err != nil {
			t.Fatal(err)
		}
		opts.StateDir = filepath.Join(dir, "c")
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Up(ctx, opts)
	if err != nil {
		t.Fatalf("vcluster up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.Logs())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Down(ctx); err != nil {
			t.Errorf("vcluster down: %v", err)
		}
	})
	return c
}

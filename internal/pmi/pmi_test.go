package pmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// socketpair returns the two ends of a unix socketpair, the way srun
// hands PMI_FD to a task.
func socketpair(t *testing.T) (server net.Conn, clientFD int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "pmi-server")
	server, err = net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); syscall.Close(fds[1]) })
	return server, fds[1]
}

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestClientServerFD(t *testing.T) {
	const n = 8
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := NewServer(n, "kvs_42")
	var wg sync.WaitGroup
	errs := make([]error, n)
	serveErrs := make([]error, n)
	for r := range n {
		sconn, fd := socketpair(t)
		wg.Go(func() { serveErrs[r] = srv.Serve(ctx, sconn, r) })
		wg.Go(func() {
			errs[r] = func() error {
				c, err := Connect(ctx, envOf(map[string]string{
					"PMI_FD": strconv.Itoa(fd), "PMI_RANK": strconv.Itoa(r), "PMI_SIZE": strconv.Itoa(n),
				}))
				if err != nil {
					return err
				}
				if c.Rank != r || c.Size != n || c.KVS != "kvs_42" || c.ValMax != 1024 || c.AppNum != 0 {
					return fmt.Errorf("client state %+v", c)
				}
				if err := c.Put(ctx, fmt.Sprintf("addr-%d", r), fmt.Sprintf("node%d;127.0.0.1:%d", r, 1000+r)); err != nil {
					return err
				}
				if err := c.Barrier(ctx); err != nil {
					return err
				}
				for p := range n {
					v, err := c.Get(ctx, fmt.Sprintf("addr-%d", p))
					if err != nil {
						return err
					}
					if want := fmt.Sprintf("node%d;127.0.0.1:%d", p, 1000+p); v != want {
						return fmt.Errorf("get %d: %q, want %q", p, v, want)
					}
				}
				if _, err := c.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("get missing: %v", err)
				}
				if err := c.Put(ctx, "k", "has space"); err == nil {
					return errors.New("put with a space accepted")
				}
				if err := c.Barrier(ctx); err != nil { // a second barrier works
					return err
				}
				return c.Finalize(ctx)
			}()
		})
	}
	wg.Wait()
	for r := range n {
		if errs[r] != nil {
			t.Errorf("rank %d: %v", r, errs[r])
		}
		if serveErrs[r] != nil {
			t.Errorf("server for rank %d: %v", r, serveErrs[r])
		}
	}
}

func TestClientPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := NewServer(1, "portkvs")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		srv.Serve(ctx, c, 0)
	}()
	c, err := Connect(ctx, envOf(map[string]string{"PMI_PORT": ln.Addr().String(), "PMI_RANK": "0", "PMI_SIZE": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "a"); err != nil || v != "b" {
		t.Fatalf("get: %q %v", v, err)
	}
	if err := c.Finalize(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBarrierContext(t *testing.T) {
	// One of two ranks enters the barrier; the context bounds the wait.
	srv := NewServer(2, "k")
	sconn, fd := socketpair(t)
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	go srv.Serve(sctx, sconn, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, envOf(map[string]string{"PMI_FD": strconv.Itoa(fd), "PMI_RANK": "0", "PMI_SIZE": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bctx, bcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer bcancel()
	if err := c.Barrier(bctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("barrier with a missing rank: %v, want deadline exceeded", err)
	}
	// The barrier_out may still come: the client refuses to go on.
	if _, err := c.Get(ctx, "x"); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("get after an interrupted barrier: %v", err)
	}
}

func TestNoPMI(t *testing.T) {
	if _, err := Connect(context.Background(), envOf(nil)); !errors.Is(err, ErrNoPMI) {
		t.Fatalf("got %v, want ErrNoPMI", err)
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add("cmd=get_result rc=0 value=x\n")
	f.Add("cmd=init pmi_version=1 pmi_subversion=1")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseLine(s)
		if err != nil {
			return
		}
		if _, err := parseLine(m.String()); err != nil {
			t.Fatalf("reparse %q: %v", m.String(), err)
		}
	})
}

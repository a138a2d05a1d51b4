//go:build scrmpi

// Command libscr is SCR's C API over the scr package and the application's
// MPI, built as libscr.so and libscr.a (make lib: go build -buildmode
// c-shared / c-archive with CC=mpicc). scr_api.c holds the public
// functions with SCR's prototypes (lib/include/scr.h); they call the
// scrgo_* functions exported here. One process-wide handle stands behind
// SCR's global API. doc/capi.md describes the layer.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#include <mpi.h>
#include <stdlib.h>
void scrgo_fatal_exit(int code);
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"unsafe"

	"github.com/scr-go/scr"
	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/mpicomm"
)

func main() {} // required by -buildmode=c-shared and c-archive

// maxName is SCR_MAX_FILENAME: the size of the name buffers the
// application passes.
const maxName = 1024

// lib is the state behind SCR's global API. SCR calls come from one
// thread at a time (the application's), so mu only guards against misuse.
var lib struct {
	mu       sync.Mutex
	settings []string // SCR_Config settings made before SCR_Init, in order
	disabled bool     // SCR_ENABLE=0: every call passes through
	eng      *mpicomm.Engine
	world    *mpicomm.Comm
	h        *scr.Handle
	rank     int
}

var errNotInit = errors.New("SCR_Init has not been called (or SCR_Finalize already was)")

// serve runs fn on a goroutine of its own while the calling thread (the
// application's, inside an SCR call) runs MPI for it.
func serve(fn func(ctx context.Context) error) (err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("internal error: %v (please report it with this stack)\n%s", r, debug.Stack())
			}
		}()
		err = fn(context.Background())
	}()
	lib.eng.Serve(done)
	return err
}

// report turns an error into SCR's return code and one line on stderr
// that names the call. An error caused on other ranks is printed by rank 0
// only; with SCR disabled every call succeeds.
func report(call string, err error) C.int {
	if err == nil || errors.Is(err, scr.ErrDisabled) {
		return C.int(0)
	}
	if !errors.Is(err, scr.ErrOtherRanks) || lib.rank == 0 {
		fmt.Fprintf(os.Stderr, "%s: %s\n", call, oneLine(err))
	}
	return 1
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// halted ends the process as SCR does under SCR_HALT_EXIT=1, once the
// handle finished its flushes on every rank: goodbye on the heartbeat
// ring, MPI_Finalize, exit(0) (C's, so the application's buffered output
// is written).
func halted(call string, err error) {
	if lib.rank == 0 {
		fmt.Fprintf(os.Stderr, "%s: job exiting: %s\n", call, oneLine(err))
	}
	if lib.world != nil {
		serve(func(context.Context) error { return lib.world.Close() })
	}
	C.MPI_Finalize()
	C.exit(0)
}

// setName copies s into the application's buffer of maxName bytes.
func setName(call string, dst *C.char, s string) error {
	if dst == nil {
		return nil
	}
	if len(s) >= maxName {
		return fmt.Errorf("%q is %d bytes; SCR_MAX_FILENAME is %d", s, len(s), maxName)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(dst)), maxName)
	copy(b, s)
	b[len(s)] = 0
	return nil
}

// goName reads a name argument.
func goName(s *C.char) (string, error) {
	if s == nil {
		return "", errors.New("name is NULL")
	}
	return C.GoString(s), nil
}

//export scrgo_init
func scrgo_init() C.int {
	const call = "SCR_Init"
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.h != nil || lib.disabled {
		return report(call, errors.New("called twice without SCR_Finalize"))
	}
	if !mpicomm.Initialized() {
		return report(call, mpicomm.ErrNoMPI)
	}
	if mpicomm.QueryThread() == mpicomm.ThreadFunneled && !mpicomm.IsThreadMain() {
		return report(call, errors.New("MPI provides MPI_THREAD_FUNNELED: call SCR from the thread that called MPI_Init"))
	}
	// SCR_ENABLE=0: no MPI traffic at all, every call passes through. A
	// configuration that cannot be read is left to Init, which agrees on
	// it with every rank.
	if on, err := scr.Enabled(nil, lib.settings); err == nil && !on {
		lib.disabled = true
		return 0
	}
	lib.eng = mpicomm.NewEngine()
	err := serve(func(ctx context.Context) error {
		w, err := mpicomm.NewWorld(ctx, lib.eng, mpicomm.Options{Comm: comm.Options{Exit: fatalExit}})
		if err != nil {
			return err
		}
		lib.world, lib.rank = w, w.Rank()
		lib.h, err = scr.Init(ctx, scr.Options{Comm: w, Config: lib.settings})
		return err
	})
	if errors.Is(err, scr.ErrHalted) {
		halted(call, err)
	}
	if err != nil && lib.world != nil {
		serve(func(context.Context) error { return lib.world.Close() })
		lib.world = nil
	}
	return report(call, err)
}

// fatalExit ends the process under the lost-peer policy: the
// application's buffered C output is flushed, and no exit handler runs
// (MPI may hold locks in the thread that waits on the lost peer).
func fatalExit(code int) { C.scrgo_fatal_exit(C.int(code)) }

//export scrgo_finalize
func scrgo_finalize() C.int {
	const call = "SCR_Finalize"
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.disabled {
		lib.disabled = false
		return 0
	}
	if lib.h == nil {
		return report(call, errNotInit)
	}
	err := serve(func(ctx context.Context) error {
		return errors.Join(lib.h.Finalize(ctx), lib.world.Close())
	})
	lib.h, lib.world = nil, nil
	return report(call, err)
}

// active runs a collective call of the handle: it fails before Init and
// passes through with SCR disabled.
func active(call string, fn func(ctx context.Context, h *scr.Handle) error) C.int {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.disabled {
		return 0
	}
	if lib.h == nil {
		return report(call, errNotInit)
	}
	h := lib.h
	err := serve(func(ctx context.Context) error { return fn(ctx, h) })
	if errors.Is(err, scr.ErrHalted) {
		halted(call, err)
	}
	return report(call, err)
}

//export scrgo_config
func scrgo_config(s *C.char) *C.char {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	q, err := goName(s)
	if err != nil {
		report("SCR_Config", err)
		return nil
	}
	call := fmt.Sprintf("SCR_Config(%q)", q)
	f := strings.Fields(q)
	if n := len(f); n == 0 || (n == 1 && !strings.Contains(q, "=")) || (n == 2 && strings.Count(f[0], "=") == 1 && !strings.Contains(f[1], "=")) {
		// A query: KEY, or PARENT=VALUE CHILD.
		v, ok, err := scr.Config(nil, lib.settings, q)
		if err != nil {
			report(call, err)
			return nil
		}
		if !ok {
			return nil
		}
		return C.CString(v) // the caller frees it, as with SCR
	}
	if lib.h != nil || lib.disabled {
		report(call, errors.New("parameters are set before SCR_Init"))
		return nil
	}
	next := append(append([]string(nil), lib.settings...), q)
	if _, _, err := scr.Config(nil, next, "SCR_ENABLE"); err != nil {
		report(call, err)
		return nil
	}
	lib.settings = next
	return nil
}

//export scrgo_route_file
func scrgo_route_file(name, file *C.char) C.int {
	const call = "SCR_Route_file"
	n, err := goName(name)
	if err == nil && file == nil {
		err = errors.New("file buffer is NULL")
	}
	if err == nil && n == "" {
		err = errors.New("name is empty")
	}
	if err != nil {
		return report(call, err)
	}
	lib.mu.Lock()
	h, disabled := lib.h, lib.disabled
	lib.mu.Unlock()
	out := n
	switch {
	case h != nil:
		out, err = h.Route(n)
	case disabled:
		out, err = scr.PassThrough(n)
	}
	if err != nil {
		return report(call, err)
	}
	return report(call, setName(call, file, out))
}

//export scrgo_have_restart
func scrgo_have_restart(flag *C.int, name *C.char) C.int {
	const call = "SCR_Have_restart"
	if flag == nil {
		return report(call, errors.New("flag is NULL"))
	}
	*flag = 0
	return active(call, func(ctx context.Context, h *scr.Handle) error {
		n, ok, err := h.HaveRestart(ctx)
		if err != nil || !ok {
			return err
		}
		*flag = 1
		return setName(call, name, n)
	})
}

//export scrgo_start_restart
func scrgo_start_restart(name *C.char) C.int {
	const call = "SCR_Start_restart"
	return active(call, func(ctx context.Context, h *scr.Handle) error {
		n, err := h.StartRestart(ctx)
		if err != nil {
			return err
		}
		return setName(call, name, n)
	})
}

//export scrgo_complete_restart
func scrgo_complete_restart(valid C.int) C.int {
	return active("SCR_Complete_restart", func(ctx context.Context, h *scr.Handle) error {
		return h.CompleteRestart(ctx, valid != 0)
	})
}

//export scrgo_need_checkpoint
func scrgo_need_checkpoint(flag *C.int) C.int {
	const call = "SCR_Need_checkpoint"
	if flag == nil {
		return report(call, errors.New("flag is NULL"))
	}
	*flag = 0
	return active(call, func(ctx context.Context, h *scr.Handle) error {
		need, err := h.NeedCheckpoint(ctx)
		if need {
			*flag = 1
		}
		return err
	})
}

//export scrgo_should_exit
func scrgo_should_exit(flag *C.int) C.int {
	const call = "SCR_Should_exit"
	if flag == nil {
		return report(call, errors.New("flag is NULL"))
	}
	*flag = 0
	return active(call, func(ctx context.Context, h *scr.Handle) error {
		exit, _, err := h.ShouldExit(ctx)
		if exit {
			*flag = 1
		}
		return err
	})
}

//export scrgo_start_output
func scrgo_start_output(name *C.char, flags C.int) C.int {
	n := ""
	if name != nil {
		n = C.GoString(name)
	}
	return active("SCR_Start_output", func(ctx context.Context, h *scr.Handle) error {
		return h.StartOutput(ctx, n, scr.Flags(flags))
	})
}

//export scrgo_complete_output
func scrgo_complete_output(valid C.int) C.int {
	return active("SCR_Complete_output", func(ctx context.Context, h *scr.Handle) error {
		return h.Complete(ctx, valid != 0)
	})
}

//export scrgo_start_checkpoint
func scrgo_start_checkpoint() C.int {
	return active("SCR_Start_checkpoint", func(ctx context.Context, h *scr.Handle) error {
		return h.StartCheckpoint(ctx)
	})
}

//export scrgo_complete_checkpoint
func scrgo_complete_checkpoint(valid C.int) C.int {
	return active("SCR_Complete_checkpoint", func(ctx context.Context, h *scr.Handle) error {
		return h.CompleteCheckpoint(ctx, valid != 0)
	})
}

// byName runs a call that takes a dataset name.
func byName(call string, name *C.char, fn func(h *scr.Handle, ctx context.Context, name string) error) C.int {
	n, err := goName(name)
	if err != nil {
		return report(call, err)
	}
	return active(call, func(ctx context.Context, h *scr.Handle) error { return fn(h, ctx, n) })
}

//export scrgo_current
func scrgo_current(name *C.char) C.int {
	return byName("SCR_Current", name, (*scr.Handle).Current)
}

//export scrgo_drop
func scrgo_drop(name *C.char) C.int {
	return byName("SCR_Drop", name, (*scr.Handle).Drop)
}

//export scrgo_delete
func scrgo_delete(name *C.char) C.int {
	return byName("SCR_Delete", name, (*scr.Handle).Delete)
}

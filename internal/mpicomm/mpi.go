//go:build scrmpi

package mpicomm

// #include "mpicomm.h"
import "C"

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/scr-go/scr/comm"
)

// Thread levels of MPI_Init_thread and MPI_Query_thread, in order.
const (
	ThreadSingle = iota
	ThreadFunneled
	ThreadSerialized
	ThreadMultiple
)

var levelNames = [...]string{"MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED", "MPI_THREAD_MULTIPLE"}

// LevelName is the MPI name of a thread level.
func LevelName(l int) string {
	if l >= 0 && l < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("thread level %d", l)
}

func levelOf(mpiLevel C.int) int {
	for l := ThreadSingle; l <= ThreadMultiple; l++ {
		if C.scrgo_mpi_level(C.int(l)) == mpiLevel {
			return l
		}
	}
	return ThreadSingle
}

// ErrNoMPI: MPI is not initialized (or already finalized).
var ErrNoMPI = errors.New("MPI is not initialized: call MPI_Init before SCR_Init, and SCR_Finalize before MPI_Finalize")

// Initialized says whether MPI_Init was called and MPI_Finalize was not.
func Initialized() bool { return C.scrgo_mpi_initialized() != 0 && C.scrgo_mpi_finalized() == 0 }

// InitThread calls MPI_Init_thread for a Go program (tests): the calling
// goroutine must stay locked to its thread, the main thread.
func InitThread(required int) (provided int, err error) {
	var p C.int
	if rc := C.scrgo_mpi_init_thread(C.scrgo_mpi_level(C.int(required)), &p); rc != C.MPI_SUCCESS {
		return 0, mpiError("MPI_Init_thread", rc)
	}
	return levelOf(p), nil
}

// IsThreadMain says whether the calling thread is MPI's main thread (the
// one that initialized MPI).
func IsThreadMain() bool { return C.scrgo_mpi_is_thread_main() != 0 }

// QueryThread is the thread level MPI provided.
func QueryThread() int { return levelOf(C.scrgo_mpi_query_thread()) }

// Finalize calls MPI_Finalize (for Go programs; on the main thread).
func Finalize() error {
	if rc := C.scrgo_mpi_finalize(); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Finalize", rc)
	}
	return nil
}

// ForeignCalls counts the MPI calls the package made from a thread other
// than the one serving its engine. It stays 0: tests check it.
func ForeignCalls() int64 { return int64(C.scrgo_mpi_foreign()) }

// mpiError names the MPI call and MPI's own message for its error code.
func mpiError(call string, rc C.int) error {
	buf := (*C.char)(C.malloc(C.MPI_MAX_ERROR_STRING + 1))
	defer C.free(unsafe.Pointer(buf))
	C.scrgo_mpi_error_string(rc, buf)
	return fmt.Errorf("%s failed: %s (MPI error %d)", call, C.GoString(buf), int(rc))
}

// count converts a buffer length to an MPI count.
func count(n int) (C.int, error) {
	if n > math.MaxInt32 {
		return 0, fmt.Errorf("message of %d bytes is over MPI's count limit of %d", n, math.MaxInt32)
	}
	return C.int(n), nil
}

// opCode maps a comm.Op to the helper's operator code.
func opCode(op comm.Op) (C.int, error) {
	switch op {
	case comm.OpSum:
		return 0, nil
	case comm.OpMin:
		return 1, nil
	case comm.OpMax:
		return 2, nil
	case comm.OpAnd:
		return 3, nil
	case comm.OpOr:
		return 4, nil
	}
	return 0, fmt.Errorf("unknown operator %v", op)
}

// Package mpicomm serves comm.Comm over the application's MPI, for the C,
// Fortran and Python interface (libscr): the library's collectives and its
// redundancy traffic then travel on the cluster's interconnect, on a
// communicator duplicated from MPI_COMM_WORLD.
//
// It is built only with the scrmpi build tag and cgo, with CC pointing at
// an MPI compiler wrapper (make lib). Without the tag the package is empty,
// so go build ./... and go test ./... need no MPI.
//
// Threads. MPI is called only on the thread that called the library (the
// application's thread inside an SCR_* call), whatever thread level the
// application asked for: other goroutines submit their MPI operations to an
// Engine, and the caller's thread runs them while it waits (Engine.Serve).
// Every operation is non-blocking (MPI_Isend, MPI_Improbe/MPI_Imrecv,
// MPI_Ibarrier, MPI_Ibcast, MPI_Iallgather(v), MPI_Igather(v),
// MPI_Iallreduce) and completes through MPI_Testsome, so a context or a lost
// peer can end a wait. Only MPI_Comm_split blocks; it comes right after an
// allgather every member passed.
//
// Failures. MPI hangs when a node dies silently. A World therefore runs a
// TCP heartbeat ring beside MPI (comm.FromAllgather, bootstrapped through
// MPI): a lost peer is noticed within comm.Options.Timeout, waits end with
// a *comm.PeerLostError, and the default policy ends the process with
// comm.ExitPeerLost so the launcher returns (doc/comm.md).
package mpicomm

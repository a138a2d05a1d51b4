// Package scr is scalable checkpoint/restart for parallel Go jobs: every
// rank of the job saves its checkpoint to node-local storage (/dev/shm),
// protected by redundancy across nodes, and a relaunched job restarts from
// what survived, rebuilding a lost node's share from the others, instead
// of reading everything back from the parallel file system.
//
// # Lifecycle
//
// Every rank creates a handle after the communicator is up and ends it
// before the process exits:
//
//	h, err := scr.Init(ctx, scr.Options{Comm: c})
//	// restart, if there is something to restart from
//	for {
//		name, ok, err := h.HaveRestart(ctx)
//		if err != nil || !ok {
//			break // start from scratch
//		}
//		h.StartRestart(ctx)
//		path, err := h.Route("ckpt/rank_0.ckpt") // where this rank's file is now
//		valid := readState(path) == nil
//		if h.CompleteRestart(ctx, valid) == nil {
//			break // restarted from name
//		}
//		// invalid somewhere: the checkpoint is marked failed; try the next older
//	}
//	for step := ...; ; step++ {
//		compute()
//		if need, _ := h.NeedCheckpoint(ctx); need {
//			h.StartOutput(ctx, fmt.Sprintf("ckpt.%d", step), scr.Checkpoint)
//			path, _ := h.Route(fmt.Sprintf("ckpt.%d/rank_%d.ckpt", step, rank))
//			valid := writeState(path) == nil
//			h.Complete(ctx, valid)
//			if exit, _, _ := h.ShouldExit(ctx); exit {
//				break
//			}
//		}
//	}
//	h.Finalize(ctx)
//
// File names given to Route are paths under the prefix (SCR_PREFIX, default
// the working directory; relative names are relative to the prefix). While
// a dataset is open, Route returns a path in this node's cache; after
// Complete the files belong to SCR, which flushes them to those prefix
// paths when due (outputs always, checkpoints every SCR_FLUSH-th, the last
// one at Finalize).
//
// # Collective calls
//
// Init, Finalize, StartOutput, Complete, HaveRestart, StartRestart,
// CompleteRestart, NeedCheckpoint, ShouldExit, Current, Drop and Delete are
// collective: every rank calls them in the same order with the same
// arguments; rank 0 decides and the others follow, and every rank gets the
// same result. Route is local. A Handle is used by one goroutine at a time,
// except Route, which several goroutines of one rank may call at once. The
// application may use its communicator between SCR calls, not during them.
//
// # Restart
//
// Init looks for datasets in the caches of this job (the same allocation):
// node leaders read their cache indexes; ranks agree on what exists
// anywhere; a rank's files move to the node where the rank runs now (a rank
// on a spare node starts empty); each redundancy set rebuilds what its lost
// members held; a file that does not match its size (or its CRC32C, with
// SCR_CRC_ON_COPY=1) counts as lost. HaveRestart offers the newest
// checkpoint that came back whole, an older cached one when the newest
// cannot be rebuilt, else the newest complete, never-failed checkpoint on
// the prefix, fetched into the cache. A restart reported invalid by any
// rank marks that checkpoint failed and HaveRestart offers the next older.
//
// # Errors
//
// Misuse (calls out of order, a file outside the prefix, two ranks writing
// one file, ranks passing different arguments) returns a typed error
// (*StateError, *PathError, *InvalidError wrapping *DuplicateError,
// *MismatchError) that errors.Is matches against ErrState, ErrPath,
// ErrDuplicate, ErrInvalid, ErrMismatch. A dataset that is complete but
// could not be copied to the prefix gives ErrFlush (it stays cached and is
// flushed again at Finalize). A lost peer surfaces as an error wrapping
// comm.ErrPeerLost. With SCR_ENABLE=0 every call returns
// ErrDisabled and Route returns names unchanged.
//
// See doc/library.md for the parameters, the on-node layout and the
// restart logic in detail.
package scr

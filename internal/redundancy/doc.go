// Package redundancy protects a dataset's files across nodes and rebuilds
// what a lost node held: SCR's set formation and its SINGLE, PARTNER, XOR
// and RS schemes, over comm.Comm, with no MPI.
//
// # Lifecycle
//
// Once per run, every rank forms the same sets and joins its own (both
// collective over the world communicator for Join):
//
//	sets, err := redundancy.Sets(redundancy.Hosts(world), setSize) // pure
//	g, err := redundancy.Join(ctx, world, sets)                     // collective
//
// After a rank's files of a dataset are complete (Complete_output), every
// rank calls, with the same Scheme:
//
//	err := redundancy.Encode(ctx, g, scheme, files, rankDir) // collective
//
// A rank that cannot describe its files calls Abstain instead: it takes
// part (no peer waits) and the encode fails on every rank.
//
// files lists the rank's files relative to rankDir (the rank's directory of
// the dataset, see internal/cache), in a fixed order, with size, mode, times
// and, when known, CRC32C (StatFiles fills them in). Encode writes
// .scr/red.data (a header holding this rank's and its left neighbours' file
// lists, then the scheme's payload) and .scr/red.state, which says
// "encoding" until every rank has succeeded and "encoded" after ("damaged"
// once a rebuild found the payload corrupt). State reads it: a dataset
// whose state is not "encoded" on a rank must not be taken for protected.
//
// At restart (Init), every rank calls, for a cached dataset:
//
//	res, err := redundancy.Rebuild(ctx, g, scheme, rankDir) // collective
//
// A rank on a spare node passes an empty (or missing) rankDir. Each rank
// checks its files against its file list (present, recorded size, recorded
// CRC32C) and its redundancy file (header CRC, size, state "encoded"); a
// rank that fails any check is lost. A payload's CRCs are checked as the
// rebuild reads it: damage there fails the rebuild (never a garbage file)
// and marks that rank's redundancy untrusted. If every set lost no
// more than its scheme tolerates, the lost ranks' files (with mode and
// times), red.data and red.state are rebuilt in place, and res.Files is the
// rank's file list (recovered from a neighbour when the rank had nothing).
// Otherwise every rank returns the same *UnrecoverableError (errors.Is
// ErrUnrecoverable) naming the sets, ranks, hosts and reasons, and nothing
// on disk was changed: fetch the dataset from the prefix instead.
//
// # What each scheme tolerates (per set)
//
//	SINGLE   nothing lost (the header only keeps the file list)
//	PARTNER  any members, as long as no two are ring neighbours
//	XOR      one member
//	RS       k = Scheme.Failures members (default 2); needs k < set size <= 255
//
// # Guarantees
//
//   - Memory stays bounded whatever the file sizes: data moves in pieces of
//     Scheme.BufSize bytes; each file byte is read once and each redundancy
//     byte written once by Encode.
//   - No hangs: a rank that fails locally (unreadable file, full disk) keeps
//     taking part in every message, sending zeros, and the failure is agreed
//     on at the end (*EncodeError on every rank). A lost peer ends every
//     blocking call with comm's error (errors.Is comm.ErrPeerLost).
//   - All ranks get the same answer from Encode and Rebuild.
//   - Deterministic files: a rebuilt red.data is byte-identical to the lost
//     one, so a second loss is handled like the first.
//
// Group.Comm is private to this package: do not send on it. A Group is used
// by one goroutine at a time (like a comm.Comm). The on-disk format is in
// doc/redundancy.md.
package redundancy

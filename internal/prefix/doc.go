// Package prefix owns every on-disk format under the prefix directory (the
// shared file system where datasets are flushed): the hidden .scr/ metadata
// directory with the dataset index, halt file, dataset summaries,
// rank-to-file maps, flush state, node count and the recovery timeline.
// The library and the commands (scr_index, scr_halt, scr_postrun, scr_run)
// read and write these files through this package only. Every write is
// atomic (temp file, fsync, rename) or, for the timeline, a single append.
// The formats are documented in doc/formats.md.
package prefix

//go:build !linux

package scr

import "errors"

func spaceHint(string) string { return "" }

// freeBytes is unknown here: the previous checkpoint is not kept beyond
// SCR_CACHE_SIZE (see evict).
func freeBytes(string) (int64, error) { return 0, errors.ErrUnsupported }

package scr

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/scr-go/scr/comm"
	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/config"
	"github.com/scr-go/scr/internal/redundancy"
)

// redCodec runs internal/redundancy for PARTNER, XOR and RS.
type redCodec struct {
	h *Handle
	t redundancy.Type
}

func (h *Handle) redundancyCodec(scheme string) (codec, error) {
	t, err := redundancy.ParseType(scheme)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrConfig)
	}
	return redCodec{h: h, t: t}, nil
}

// group returns this rank's redundancy set for a failure group and set
// size, formed once per run (collective the first time).
func (h *Handle) group(ctx context.Context, name string, size int) (*setsInfo, error) {
	key := fmt.Sprintf("%s/%d", name, size)
	if g := h.groups[key]; g != nil {
		return g, nil
	}
	groups := make([]string, len(h.hosts))
	for r := range groups {
		groups[r] = h.failureGroup(name, h.hosts[r])
	}
	sets, err := redundancy.Sets(groups, size)
	if err != nil {
		return nil, err
	}
	g, err := redundancy.Join(ctx, h.world, sets)
	if err != nil {
		return nil, err
	}
	if h.groups == nil {
		h.groups = map[string]*setsInfo{}
	}
	si := &setsInfo{g: g, sets: sets}
	h.groups[key] = si
	return si, nil
}

// setsInfo is this rank's set and every set of the run (the same on every
// rank, so decisions about all sets need no communication).
type setsInfo struct {
	g    *redundancy.Group
	sets []redundancy.Set
}

// check says, identically on every rank, whether the scheme can protect
// every set; a rank alone with an unusable set must not leave the others
// waiting in the encode.
func (si *setsInfo) check(s redundancy.Scheme) error {
	for _, set := range si.sets {
		if err := s.Check(len(set.Ranks)); err != nil {
			return fmt.Errorf("set %d (ranks %v): %w", set.ID, set.Ranks, err)
		}
	}
	return nil
}

// failureGroup is this rank's failure group under a group name: its node
// (NODE, the default), one for all (WORLD), or its node's value in a
// GROUPS line of the configuration (its node when the node has none).
func (h *Handle) failureGroup(name, host string) string {
	switch strings.ToUpper(name) {
	case "", config.GroupNode:
		return host
	case config.GroupWorld:
		return config.GroupWorld
	}
	for _, g := range h.cfg.Groups {
		if g.Host == host {
			if v, ok := g.Values[strings.ToUpper(name)]; ok {
				return name + "=" + v
			}
			if v, ok := g.Values[name]; ok {
				return name + "=" + v
			}
		}
	}
	return host
}

func (c redCodec) scheme(spec codecSpec) redundancy.Scheme {
	return redundancy.Scheme{Type: c.t, Failures: spec.Failures, BufSize: spec.BufSize}
}

func (c redCodec) Encode(ctx context.Context, world comm.Comm, spec codecSpec, dir string, files []string) error {
	si, err := c.h.group(ctx, spec.Group, spec.SetSize)
	if err != nil {
		return err
	}
	if err := si.check(c.scheme(spec)); err != nil {
		return err
	}
	g := si.g
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = filepath.ToSlash(f)
	}
	infos, err := redundancy.StatFiles(dir, names, false)
	if err != nil {
		// Take part without files, so no peer waits: the encode then fails
		// on every rank with an error naming this rank.
		return redundancy.Abstain(ctx, g, c.scheme(spec), dir,
			fmt.Errorf("dataset %d: rank %d cannot describe its files in %s: %w", spec.Dataset, c.h.rank, dir, err))
	}
	// Reuse the CRCs of the filemap instead of reading the files again.
	if fm, err := cache.ReadFilemap(dir); err == nil {
		crc := map[string]*uint32{}
		for _, f := range fm.Files {
			crc[filepath.ToSlash(f.Rel)] = f.CRC
		}
		for i := range infos {
			infos[i].CRC32C = crc[infos[i].Name]
		}
	}
	return redundancy.Encode(ctx, g, c.scheme(spec), infos, dir)
}

func (c redCodec) Rebuild(ctx context.Context, world comm.Comm, spec codecSpec, dir string, lost bool) (int, error) {
	si, err := c.h.group(ctx, spec.Group, spec.SetSize)
	if err != nil {
		return 0, err
	}
	if err := si.check(c.scheme(spec)); err != nil {
		return 0, fmt.Errorf("dataset %d: %w: %w", spec.Dataset, ErrUnrecoverable, err)
	}
	res, err := redundancy.Rebuild(ctx, si.g, c.scheme(spec), dir)
	if errors.Is(err, redundancy.ErrUnrecoverable) {
		// Too much lost in some set: the same verdict on every rank, which
		// callers branch on through the library's own sentinel.
		return 0, fmt.Errorf("dataset %d: %w: %w", spec.Dataset, ErrUnrecoverable, err)
	}
	if err != nil {
		return 0, fmt.Errorf("dataset %d: %w", spec.Dataset, err)
	}
	return res.Sets, nil
}

// redundancyIntact says whether the redundancy data of a rank directory
// finished encoding.
func redundancyIntact(dir string) bool { return redundancy.State(dir) == "encoded" }

// reservePieces maps the buffers the configured redundancy schemes keep in
// flight, here rather than in the first checkpoint, which would otherwise
// pay for their first touch (doc/performance.md).
func (h *Handle) reservePieces() {
	if h.size < 2 {
		return
	}
	for _, d := range h.cfg.Redundancy {
		if t, err := redundancy.ParseType(d.Type); err == nil && d.Enabled {
			redundancy.Reserve(redundancy.Scheme{Type: t, Failures: d.SetFailures, BufSize: h.cfg.bufSize})
		}
	}
}

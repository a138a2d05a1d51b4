package prefix

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
)

// SummaryFile is the per-dataset summary in <prefix>/.scr/scr.dataset.<id>/.
const (
	SummaryFile    = "summary.json"
	summaryFormat  = "scr-summary"
	SummaryVersion = 1
	rank2fileDir   = "rank2file"
	rank2fileFmt   = "scr-rank2file"
	// Rank2FileVersion is the version of the rank2file part files.
	Rank2FileVersion = 1
	// DefaultRanksPerPart is the suggested rank2file block size: one part
	// file per 256 consecutive ranks (40 files for 10,000 ranks).
	DefaultRanksPerPart = 256
)

// ErrIncomplete is wrapped when a dataset's metadata shows missing parts.
var ErrIncomplete = errors.New("dataset is incomplete")

// Summary describes a dataset in the prefix: its record, whether every file
// arrived, and how its rank2file map is laid out.
type Summary struct {
	Format       string  `json:"format"`
	Version      int     `json:"version"`
	Dataset      Dataset `json:"dataset"`
	Complete     bool    `json:"complete"`       // every rank's files are in the prefix
	Ranks        int     `json:"ranks"`          // number of ranks that wrote the dataset
	RanksPerPart int     `json:"ranks_per_part"` // rank2file block size (see Rank2FilePart)
}

// Parts is the number of rank2file part files of the dataset.
func (s *Summary) Parts() int {
	if s.RanksPerPart <= 0 {
		return 0
	}
	return (s.Ranks + s.RanksPerPart - 1) / s.RanksPerPart
}

// PartOf is the rank2file part holding rank r.
func (s *Summary) PartOf(r int) int { return r / s.RanksPerPart }

// SummaryPath is the summary file of dataset id.
func SummaryPath(prefixDir string, id int64) string {
	return filepath.Join(DatasetDir(prefixDir, id), SummaryFile)
}

// WriteSummary writes the summary of s.Dataset.ID atomically.
func WriteSummary(prefixDir string, s *Summary) error {
	s.Format, s.Version = summaryFormat, SummaryVersion
	if s.Ranks < 0 || (s.Ranks > 0 && s.RanksPerPart <= 0) {
		return fmt.Errorf("summary of dataset %d: bad layout: %d ranks, %d ranks per part", s.Dataset.ID, s.Ranks, s.RanksPerPart)
	}
	return writeJSON(SummaryPath(prefixDir, s.Dataset.ID), s)
}

// ReadSummary reads the summary of dataset id. A missing summary wraps
// os.ErrNotExist; a damaged one is a *CorruptError.
func ReadSummary(prefixDir string, id int64) (*Summary, error) {
	path := SummaryPath(prefixDir, id)
	s := &Summary{}
	ok, err := readJSON(path, summaryFormat, SummaryVersion, s)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("dataset %d has no summary %s: %w", id, path, errNotExist)
	}
	if s.Dataset.ID != id {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("it describes dataset %d", s.Dataset.ID)}
	}
	if s.Ranks < 0 || (s.Ranks > 0 && s.RanksPerPart <= 0) {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("bad rank2file layout: %d ranks, %d per part", s.Ranks, s.RanksPerPart)}
	}
	return s, nil
}

// File is one file a rank wrote, as recorded in rank2file.
type File struct {
	Path string `json:"path"` // relative to the prefix, slash-separated
	Size int64  `json:"size"` // bytes
	// CRC32C is the CRC32C (Castagnoli) of the content as 8 hex digits,
	// computed while the file was flushed (SCR_CRC_ON_FLUSH=1, the
	// default); "" = not computed. Fetch and scr_index --build check it.
	CRC32C string `json:"crc32c,omitempty"`
}

// FormatCRC is a CRC32C as rank2file records it.
func FormatCRC(c uint32) string { return fmt.Sprintf("%08x", c) }

// CRC returns the recorded CRC32C; ok is false when none was recorded. A
// value that is not 8 hex digits is an error (damaged metadata).
func (f File) CRC() (c uint32, ok bool, err error) {
	if f.CRC32C == "" {
		return 0, false, nil
	}
	v, perr := strconv.ParseUint(f.CRC32C, 16, 32)
	if perr != nil || len(f.CRC32C) != 8 {
		return 0, false, fmt.Errorf("file %q: crc32c %q is not 8 hex digits", f.Path, f.CRC32C)
	}
	return uint32(v), true, nil
}

// Rank2FilePart is one block of the rank-to-file map: the files of ranks
// First .. First+len(Ranks)-1. Blocks of consecutive ranks let each block's
// first rank gather and write its block (no single writer for 10,000 ranks,
// no 10,000 tiny files), and let a reader find rank r's block as r/size.
type Rank2FilePart struct {
	Format  string   `json:"format"`
	Version int      `json:"version"`
	Dataset int64    `json:"dataset"`
	First   int      `json:"first"`
	Ranks   [][]File `json:"ranks"` // Ranks[i] = files of rank First+i
	// Lost lists ranks of this block whose file lists are unknown (a
	// scavenge could not recover them); CheckDataset reports them missing.
	Lost []int `json:"lost,omitempty"`
}

// Rank2FilePath is the path of part p of dataset id.
func Rank2FilePath(prefixDir string, id int64, part int) string {
	return filepath.Join(DatasetDir(prefixDir, id), rank2fileDir, "part."+strconv.Itoa(part)+".json")
}

// WriteRank2FilePart writes one block of the map atomically. part is
// p.First / ranksPerPart, as chosen by the summary layout.
func WriteRank2FilePart(prefixDir string, id int64, part int, p *Rank2FilePart) error {
	for _, r := range p.Lost {
		if r < p.First || r >= p.First+len(p.Ranks) {
			return fmt.Errorf("dataset %d rank2file part %d: lost rank %d is outside ranks %d..%d", id, part, r, p.First, p.First+len(p.Ranks)-1)
		}
	}
	if r, err := p.check(); err != nil {
		return fmt.Errorf("dataset %d rank2file part %d: rank %d: %w", id, part, r, err)
	}
	out := *p
	out.Format, out.Version, out.Dataset = rank2fileFmt, Rank2FileVersion, id
	// Write a rank without files as [] rather than null.
	out.Ranks = make([][]File, len(p.Ranks))
	for i, fs := range p.Ranks {
		if fs == nil {
			fs = []File{}
		}
		out.Ranks[i] = fs
	}
	return writeJSON(Rank2FilePath(prefixDir, id, part), &out)
}

// ReadRank2FilePart reads part `part` of dataset id and checks it against
// the summary's layout.
func ReadRank2FilePart(prefixDir string, s *Summary, part int) (*Rank2FilePart, error) {
	id := s.Dataset.ID
	path := Rank2FilePath(prefixDir, id, part)
	p := &Rank2FilePart{}
	ok, err := readJSON(path, rank2fileFmt, Rank2FileVersion, p)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("dataset %d: rank2file part %d (%s) is missing: %w", id, part, path, errNotExist)
	}
	first := part * s.RanksPerPart
	want := min(s.RanksPerPart, s.Ranks-first)
	if p.Dataset != id || p.First != first || len(p.Ranks) != want {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("holds dataset %d ranks %d..%d, want dataset %d ranks %d..%d",
			p.Dataset, p.First, p.First+len(p.Ranks)-1, id, first, first+want-1)}
	}
	for _, r := range p.Lost {
		if r < p.First || r >= p.First+len(p.Ranks) {
			return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("lost rank %d is outside its ranks %d..%d", r, p.First, p.First+len(p.Ranks)-1)}
		}
	}
	if r, err := p.check(); err != nil {
		return nil, &CorruptError{Path: path, Reason: fmt.Sprintf("rank %d", r), Err: err}
	}
	return p, nil
}

// check says which rank lists a file whose path would leave the prefix
// (or enter .scr) or whose CRC32C is malformed: rank2file is metadata,
// and a path in it is used to read, write and delete files.
func (p *Rank2FilePart) check() (int, error) {
	for i, files := range p.Ranks {
		for _, f := range files {
			if _, err := FilePath(f.Path); err != nil {
				return p.First + i, err
			}
			if _, _, err := f.CRC(); err != nil {
				return p.First + i, err
			}
			if f.Size < 0 {
				return p.First + i, fmt.Errorf("file %q: negative size %d", f.Path, f.Size)
			}
		}
	}
	return 0, nil
}

// RankFiles returns the files rank r wrote in the dataset described by s.
func RankFiles(prefixDir string, s *Summary, r int) ([]File, error) {
	if r < 0 || r >= s.Ranks {
		return nil, fmt.Errorf("dataset %d: rank %d out of range (0..%d)", s.Dataset.ID, r, s.Ranks-1)
	}
	p, err := ReadRank2FilePart(prefixDir, s, s.PartOf(r))
	if err != nil {
		return nil, err
	}
	return p.Ranks[r-p.First], nil
}

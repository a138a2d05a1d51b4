// Package jobid names the allocation a process runs in, from its
// environment alone: the job id that keys the node-local cache
// (<base>/<user>/scr.<jobid>, doc/seams.md section 3).
//
// A job's cache identity is its allocation, not the step that runs it:
// every run of one allocation (scr_run's relaunches, or a job script that
// calls the launcher twice) must find the same cache. Each resource manager
// names the allocation differently in a task's environment:
//
//   - Slurm: SLURM_JOB_ID (older SLURM_JOBID) is the allocation in the batch
//     script and in every srun step; the step has SLURM_STEP_ID of its own.
//   - Flux: each `flux run`/`flux submit` inside a `flux batch`/`flux alloc`
//     is a job of its own with its own FLUX_JOB_ID; the allocation is the
//     instance the job runs in. The job shell sets FLUX_JOB_ID_PATH to the
//     ids from the system instance down to the job (/ƒALLOC/ƒJOB), so the
//     allocation is the next-to-last element; a job of the system instance
//     (/ƒJOB) is its own allocation. Without FLUX_JOB_ID_PATH (the batch
//     script, the initial program of the allocation, a command run there by
//     flux exec) the broker's FLUX_ENCLOSING_ID names the allocation.
//   - LSF: LSB_JOBID is the job; jsrun steps share it.
//   - none: SCR_JOB_ID, else "defjobid" (the local launcher, a laptop).
//
// SCR_JOB_ID, when set, wins over all of them (scr_run sets it for the runs
// it launches, so the library and scr_postrun agree with it whatever the
// launcher passes on).
//
// Flux ids are written in several encodings (F58 with a "ƒ" or, outside a
// UTF-8 locale, an "f" prefix; decimal; hex; dotted hex), depending on the
// locale of the process that printed them. Flux returns them all to one
// canonical spelling, F58 with the ASCII prefix "f" ("fVaSC5xK"), so that
// scr_run, the library and scr_postrun name the same directory, in ASCII.
package jobid

import (
	"strconv"
	"strings"
)

// Default is the id used outside any allocation (SCR's name).
const Default = "defjobid"

// Lookup reads one environment variable (os.LookupEnv has this shape).
type Lookup func(key string) (string, bool)

func (l Lookup) get(k string) string {
	if l == nil {
		return ""
	}
	v, _ := l(k)
	return strings.TrimSpace(v)
}

// FromEnv is the cache identity of the process whose environment get
// reads: SCR_JOB_ID, else the allocation the resource manager names
// (Allocation), else Default.
func FromEnv(get Lookup) string {
	if v := get.get("SCR_JOB_ID"); v != "" {
		return v
	}
	if id, _ := Allocation(get); id != "" {
		return id
	}
	return Default
}

// Allocation returns the id of the allocation the environment names and
// the resource manager that named it ("flux", "slurm", "lsf"), or "", ""
// when none does. SCR_RESOURCE_MANAGER, when set, says which manager to
// ask; otherwise Flux comes first (a Flux instance may run inside a Slurm
// job), then Slurm, then LSF: the order of rm.Detect.
func Allocation(get Lookup) (id, manager string) {
	order := []string{"flux", "slurm", "lsf"}
	if m := strings.ToLower(get.get("SCR_RESOURCE_MANAGER")); m != "" {
		order = []string{m}
	}
	for _, m := range order {
		switch m {
		case "flux":
			id = FluxAllocation(get)
		case "slurm":
			id = first(get, "SLURM_JOB_ID", "SLURM_JOBID")
		case "lsf":
			id = get.get("LSB_JOBID")
		}
		if id != "" {
			return id, m
		}
	}
	return "", ""
}

// FluxAllocation is the Flux allocation the environment names (see the
// package doc), canonical, or "".
func FluxAllocation(get Lookup) string {
	switch ids := FluxPath(get.get("FLUX_JOB_ID_PATH")); {
	case len(ids) >= 2:
		return Flux(ids[len(ids)-2])
	case len(ids) == 1:
		return Flux(ids[0])
	}
	if v := get.get("FLUX_ENCLOSING_ID"); v != "" {
		return Flux(v)
	}
	return Flux(get.get("FLUX_JOB_ID"))
}

// FluxPath splits a FLUX_JOB_ID_PATH (/ƒALLOC/ƒJOB) into its ids, outermost
// first; a job of the system instance has one.
func FluxPath(p string) []string {
	var ids []string
	for _, e := range strings.Split(p, "/") {
		if e = strings.TrimSpace(e); e != "" {
			ids = append(ids, e)
		}
	}
	return ids
}

func first(get Lookup, keys ...string) string {
	for _, k := range keys {
		if v := get.get(k); v != "" {
			return v
		}
	}
	return ""
}

// f58Digits is Flux's base-58 alphabet (no 0, O, I or l).
const f58Digits = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// Flux returns a Flux job id in its canonical spelling: F58 with the ASCII
// prefix "f". It reads F58 (prefix "ƒ" or "f"), decimal, 0x-hex and dotted
// hex (xxxx.xxxx.xxxx.xxxx); anything else (a future encoding) is returned
// trimmed but otherwise unchanged, so two equal inputs still agree.
func Flux(id string) string {
	id = strings.TrimSpace(id)
	if n, ok := ParseFlux(id); ok {
		return EncodeF58(n)
	}
	return id
}

// ParseFlux decodes a Flux job id written in one of the encodings Flux
// accepts on its command line (except the mnemonic words).
func ParseFlux(s string) (uint64, bool) {
	switch {
	case s == "":
		return 0, false
	case strings.HasPrefix(s, "ƒ"):
		return decodeF58(strings.TrimPrefix(s, "ƒ"))
	case strings.HasPrefix(s, "f"):
		return decodeF58(s[1:])
	case strings.HasPrefix(s, "0x"):
		n, err := strconv.ParseUint(s[2:], 16, 64)
		return n, err == nil
	case strings.Count(s, ".") == 3:
		var n uint64
		for _, part := range strings.Split(s, ".") {
			if len(part) == 0 || len(part) > 4 {
				return 0, false
			}
			v, err := strconv.ParseUint(part, 16, 16)
			if err != nil {
				return 0, false
			}
			n = n<<16 | v
		}
		return n, true
	default:
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
}

func decodeF58(s string) (uint64, bool) {
	// 2^64 needs 11 base-58 digits.
	if s == "" || len(s) > 11 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(f58Digits, s[i])
		if d < 0 {
			return 0, false
		}
		hi := n * 58
		if hi/58 != n || hi+uint64(d) < hi {
			return 0, false // overflow
		}
		n = hi + uint64(d)
	}
	return n, true
}

// EncodeF58 writes a Flux job id as F58 with the ASCII prefix "f".
func EncodeF58(n uint64) string {
	var b [12]byte
	i := len(b)
	for {
		i--
		b[i] = f58Digits[n%58]
		n /= 58
		if n == 0 {
			break
		}
	}
	return "f" + string(b[i:])
}

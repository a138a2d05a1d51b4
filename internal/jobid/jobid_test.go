package jobid

import (
	"testing"
)

func env(kv ...string) Lookup {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Pairs of decimal ids and their F58 spelling, as flux-core 0.88 printed
// them (shared/fixtures/flux: jobs-json.healthy-job-running.txt has id
// 94774493184 and jobid "\u01923VPu3vw"; run-N2-n2-env-sort.nested-healthy.txt
// has FLUX_KVS_NAMESPACE=job-59559116800 for FLUX_JOB_ID=ƒ2Zk33R9).
func TestFluxEncodings(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ƒ3VPu3vw", "f3VPu3vw"},
		{"f3VPu3vw", "f3VPu3vw"},
		{"94774493184", "f3VPu3vw"},
		{"ƒ2Zk33R9", "f2Zk33R9"},
		{"59559116800", "f2Zk33R9"},
		{"0xdde000000", "f2Zk33R9"},
		{"0000.000d.de00.0000", "f2Zk33R9"},
		{" ƒVaSC5xK\n", "fVaSC5xK"},
		{"0", "f1"},
		{"ƒ1", "f1"},
		{"18446744073709551615", "fjpXCZedGfVQ"},
		{"fjpXCZedGfVQ", "fjpXCZedGfVQ"},
		// Not an id Flux prints: unchanged (trimmed), never mangled.
		{"ƒ0OIl", "ƒ0OIl"},
		{"fjpXCZedGfVR", "fjpXCZedGfVR"}, // 2^64: overflow
		{"apple-banana", "apple-banana"},
		{"", ""},
	}
	for _, c := range cases {
		if got := Flux(c.in); got != c.want {
			t.Errorf("Flux(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// The allocation each resource manager names, in the environments its
// tasks, batch scripts and remote commands really see.
func TestAllocation(t *testing.T) {
	cases := []struct {
		name    string
		env     Lookup
		id, mgr string
	}{
		// Flux: a task of `flux run` inside `flux batch` (nested instance),
		// env captured live (shared/fixtures/flux/run-N2-n2-env-sort.nested-healthy.txt).
		{"flux task in an allocation", env("FLUX_JOB_ID", "ƒ2Zk33R9", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ2Zk33R9",
			"FLUX_ENCLOSING_ID", "ƒVaSC5xK", "FLUX_URI", "local:///var/tmp/flux-Don9tv/local-0"), "fVaSC5xK", "flux"},
		// The same job run again: another FLUX_JOB_ID, the same allocation.
		{"flux second run in the allocation", env("FLUX_JOB_ID", "ƒ3ABcd", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ3ABcd",
			"FLUX_ENCLOSING_ID", "ƒVaSC5xK"), "fVaSC5xK", "flux"},
		// A job submitted through `flux proxy` carries no FLUX_ENCLOSING_ID.
		{"flux task without enclosing id", env("FLUX_JOB_ID", "ƒ3ABcd", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ3ABcd"), "fVaSC5xK", "flux"},
		// A task whose locale printed ASCII prefixes.
		{"flux ascii locale", env("FLUX_JOB_ID", "f3ABcd", "FLUX_JOB_ID_PATH", "/fVaSC5xK/f3ABcd"), "fVaSC5xK", "flux"},
		// Three levels: the innermost instance is the allocation.
		{"flux nested twice", env("FLUX_JOB_ID_PATH", "/ƒA/ƒB/ƒC", "FLUX_JOB_ID", "ƒC", "FLUX_ENCLOSING_ID", "ƒB"), "fB", "flux"},
		// A job of the system instance is its own allocation
		// (shared/fixtures/flux/run-N2-n2-env-sort.healthy.txt), even with a
		// stale FLUX_ENCLOSING_ID from the submitter's shell.
		{"flux system-instance job", env("FLUX_JOB_ID", "ƒ3VPu3vw", "FLUX_JOB_ID_PATH", "/ƒ3VPu3vw", "FLUX_ENCLOSING_ID", "ƒVaSC5xK"), "f3VPu3vw", "flux"},
		// The batch script / initial program (env-sort.nested-initial-program.txt),
		// and what flux exec runs from it.
		{"flux batch script", env("FLUX_ENCLOSING_ID", "ƒVaSC5xK", "FLUX_URI", "local:///var/tmp/flux-Don9tv/local-0"), "fVaSC5xK", "flux"},
		{"flux job id only", env("FLUX_JOB_ID", "94774493184"), "f3VPu3vw", "flux"},
		{"flux system instance outside a job", env("FLUX_URI", "local:///run/flux/local"), "", ""},
		// Slurm: a step and the batch script share SLURM_JOB_ID.
		{"slurm step", env("SLURM_JOB_ID", "42", "SLURM_STEP_ID", "3", "SLURM_JOBID", "42"), "42", "slurm"},
		{"slurm batch script", env("SLURM_JOB_ID", "42"), "42", "slurm"},
		{"slurm old variable", env("SLURM_JOBID", "42"), "42", "slurm"},
		// LSF: jsrun tasks and the batch script share LSB_JOBID.
		{"lsf", env("LSB_JOBID", "1234", "JSM_NAMESPACE_LOCAL_ID", "2"), "1234", "lsf"},
		// Flux inside Slurm: Flux is the allocation (rm.Detect's order).
		{"flux inside slurm", env("SLURM_JOB_ID", "42", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ3ABcd"), "fVaSC5xK", "flux"},
		// SCR_RESOURCE_MANAGER picks the manager.
		{"forced slurm", env("SCR_RESOURCE_MANAGER", "SLURM", "SLURM_JOB_ID", "42", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ3ABcd"), "42", "slurm"},
		{"forced local", env("SCR_RESOURCE_MANAGER", "LOCAL", "SLURM_JOB_ID", "42"), "", ""},
		{"none", env(), "", ""},
	}
	for _, c := range cases {
		id, mgr := Allocation(c.env)
		if id != c.id || mgr != c.mgr {
			t.Errorf("%s: Allocation = %q, %q; want %q, %q", c.name, id, mgr, c.id, c.mgr)
		}
	}
}

func TestFromEnv(t *testing.T) {
	cases := []struct {
		env  Lookup
		want string
	}{
		{env("SCR_JOB_ID", "mine", "SLURM_JOB_ID", "42"), "mine"},
		{env("SCR_JOB_ID", "", "SLURM_JOB_ID", "42"), "42"},
		{env("FLUX_JOB_ID", "ƒ3ABcd", "FLUX_JOB_ID_PATH", "/ƒVaSC5xK/ƒ3ABcd"), "fVaSC5xK"},
		{env("SCR_NODELIST", "a,b"), Default},
		{nil, Default},
	}
	for _, c := range cases {
		if got := FromEnv(c.env); got != c.want {
			t.Errorf("FromEnv = %q, want %q", got, c.want)
		}
	}
}

func FuzzFlux(f *testing.F) {
	for _, s := range []string{"ƒ3VPu3vw", "94774493184", "0x1", "0000.0000.0000.0001", "fzz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Flux(s)
		if Flux(got) != got {
			t.Errorf("Flux not idempotent: %q -> %q -> %q", s, got, Flux(got))
		}
		if n, ok := ParseFlux(s); ok {
			if m, ok2 := ParseFlux(got); !ok2 || m != n {
				t.Errorf("%q -> %q: decodes to %d, want %d", s, got, m, n)
			}
		}
	})
}

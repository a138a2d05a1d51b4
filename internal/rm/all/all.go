// Package all registers every resource-manager adapter with internal/rm, so
// rm.Detect can find them: commands import it for its side effect.
package all

import (
	_ "github.com/scr-go/scr/internal/rm/flux"  // FLUX
	_ "github.com/scr-go/scr/internal/rm/local" // LOCAL
	_ "github.com/scr-go/scr/internal/rm/lsf"   // LSF
	_ "github.com/scr-go/scr/internal/rm/slurm" // SLURM
)

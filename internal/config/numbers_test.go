package config

import (
	"strings"
	"testing"
)

// NaN and infinities are not values a parameter can hold: NaN passed
// SCR_CHECKPOINT_OVERHEAD's 0..100 check (every comparison with NaN is
// false) and became an undefined duration or byte count.
func TestNaNAndInfinityAreNotNumbers(t *testing.T) {
	for _, s := range []string{"NaN", "nan", "+Inf", "-inf", "Infinity"} {
		if _, err := ParseFloat(s); err == nil {
			t.Errorf("ParseFloat(%q) accepted", s)
		}
		if _, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) accepted", s)
		}
		if _, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) accepted", s)
		}
	}
	for _, key := range []string{"SCR_CHECKPOINT_OVERHEAD", "SCR_CHECKPOINT_SECONDS", "SCR_MPI_BUF_SIZE"} {
		opts, _ := setup(t, "", "", key, "NaN")
		c, err := Load(opts)
		if err == nil {
			_, err = c.Settings()
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=NaN: %v", key, err)
		}
	}
}

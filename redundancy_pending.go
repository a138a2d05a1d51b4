package scr

import "fmt"

// redundancyCodec adapts internal/redundancy (being written) to codec.
func redundancyCodec(scheme string) (codec, error) {
	return nil, fmt.Errorf("scr: redundancy scheme %s is not available in this build; set SCR_COPY_TYPE=SINGLE: %w", scheme, ErrConfig)
}

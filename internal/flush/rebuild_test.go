package flush

import (
	"errors"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/redundancy"
)

func TestLossErrorMessage(t *testing.T) {
	many := redundancy.SetLoss{Set: 3}
	for r := range 14 {
		many.Lost = append(many.Lost, 100+r)
		many.Hosts = append(many.Hosts, "h")
		many.Reasons = append(many.Reasons, "no redundancy file")
	}
	for _, tc := range []struct {
		name    string
		e       *redundancy.UnrecoverableError
		want    []string
		notWant []string
	}{
		{"two of one XOR set", &redundancy.UnrecoverableError{Scheme: redundancy.Scheme{Type: redundancy.XOR}, Total: 1,
			Sets: []redundancy.SetLoss{{Set: 0, Lost: []int{1, 2}, Hosts: []string{"a", "b"}, Reasons: []string{"missing", "no redundancy file"}}}},
			[]string{"dataset 7 cannot be rebuilt", "1 redundancy set(s) lost more than XOR", "set 0 lost rank 1 (missing) rank 2 (no redundancy file)", "older checkpoint"},
			[]string{"fetch the dataset from the prefix"}},
		{"ranks in no set", &redundancy.UnrecoverableError{Total: 1,
			Sets: []redundancy.SetLoss{{Set: -1, Lost: []int{0}, Hosts: []string{"a"}, Reasons: []string{"no header"}}}},
			[]string{"ranks in no known set", "rank 0 (no header)"}, []string{"set -1"}},
		{"long list and more sets", &redundancy.UnrecoverableError{Scheme: redundancy.Scheme{Type: redundancy.RS}, Total: 5, Sets: []redundancy.SetLoss{many}},
			[]string{"rank 109 (", "and 4 more", "; and 4 more set(s)"}, []string{"rank 110"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := &LossError{ID: 7, Err: tc.e}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("missing %q in %s", w, msg)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("unexpected %q in %s", w, msg)
				}
			}
			if !errors.Is(err, redundancy.ErrUnrecoverable) {
				t.Error("does not unwrap to ErrUnrecoverable")
			}
		})
	}
}

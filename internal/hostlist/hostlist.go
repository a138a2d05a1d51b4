// Package hostlist reads and writes Slurm-style host lists such as
// "node[1-4,7],login1" or "n[01-10]-ib".
//
// Expand turns a list into host names, in the order written; Compress does
// the reverse and keeps the order, so Expand(Compress(h)) == h for any list
// of valid host names. Minus, Intersect and Dedupe work on expanded lists
// and keep the order of their first argument. Sort orders names naturally
// (node2 before node10).
//
// Padding follows Slurm: in a range "lo-hi" every number is written with at
// least len(lo) digits, so "n[08-10]" is n08,n09,n10 and "n[8-10]" is
// n8,n9,n10.
package hostlist

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxHosts bounds how many names one Expand may produce, so a typo such as
// "n[1-999999999]" fails instead of exhausting memory.
const MaxHosts = 1 << 20

// maxDigits is the longest number a range may hold (fits an int64 safely).
const maxDigits = 18

// ErrSyntax is wrapped by every parse error of Expand.
var ErrSyntax = errors.New("hostlist: syntax error")

// SyntaxError says which list failed to parse, where, and why.
type SyntaxError struct {
	List   string // the whole input
	Offset int    // byte offset of the problem in List
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("hostlist %q: %s at offset %d", e.List, e.Msg, e.Offset)
}

// Unwrap lets errors.Is(err, ErrSyntax) match.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// Expand returns the host names of a list, in the order written. Items are
// separated by commas (or white space) outside brackets; an item may hold
// several bracket groups, whose product is taken left to right
// ("r[1-2]n[1-2]" = r1n1,r1n2,r2n1,r2n2). Duplicates are kept; use Dedupe
// to drop them. An empty or blank list expands to no hosts.
func Expand(list string) ([]string, error) {
	var out []string
	start := 0
	depth := 0
	flush := func(end int) error {
		item := list[start:end]
		if strings.TrimSpace(item) == "" {
			return nil
		}
		var err error
		out, err = expandItem(list, start, item, out)
		return err
	}
	for i := 0; i < len(list); i++ {
		switch c := list[i]; c {
		case '[':
			if depth > 0 {
				return nil, &SyntaxError{list, i, "nested '['"}
			}
			depth++
		case ']':
			if depth == 0 {
				return nil, &SyntaxError{list, i, "']' without '['"}
			}
			depth--
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				if err := flush(i); err != nil {
					return nil, err
				}
				start = i + 1
			} else if c != ',' {
				return nil, &SyntaxError{list, i, "white space inside brackets"}
			}
		}
	}
	if depth != 0 {
		return nil, &SyntaxError{list, len(list), "missing ']'"}
	}
	if err := flush(len(list)); err != nil {
		return nil, err
	}
	return out, nil
}

// MustExpand is Expand for lists known to be valid (tests, constants).
func MustExpand(list string) []string {
	h, err := Expand(list)
	if err != nil {
		panic(err)
	}
	return h
}

// expandItem expands one comma-free item (at offset off of list) and
// appends the names to out.
func expandItem(list string, off int, item string, out []string) ([]string, error) {
	parts := []string{""}
	i := 0
	for i < len(item) {
		j := strings.IndexByte(item[i:], '[')
		if j < 0 {
			for k := range parts {
				parts[k] += item[i:]
			}
			break
		}
		lit := item[i : i+j]
		end := strings.IndexByte(item[i+j:], ']') + i + j
		body := item[i+j+1 : end]
		nums, err := expandRanges(list, off+i+j+1, body)
		if err != nil {
			return nil, err
		}
		if len(parts)*len(nums)+len(out) > MaxHosts {
			return nil, &SyntaxError{list, off + i + j, fmt.Sprintf("expands to more than %d hosts", MaxHosts)}
		}
		next := make([]string, 0, len(parts)*len(nums))
		for _, p := range parts {
			for _, n := range nums {
				next = append(next, p+lit+n)
			}
		}
		parts = next
		i = end + 1
	}
	return append(out, parts...), nil
}

// expandRanges expands the inside of one bracket group: "1-4,7,01-03".
func expandRanges(list string, off int, body string) ([]string, error) {
	if body == "" {
		return nil, &SyntaxError{list, off, "empty brackets"}
	}
	var out []string
	pos := off
	for _, r := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isDigits(lo) || (isRange && !isDigits(hi)) {
			return nil, &SyntaxError{list, pos, fmt.Sprintf("bad range %q (want N or N-M with decimal digits)", r)}
		}
		if len(lo) > maxDigits || len(hi) > maxDigits {
			return nil, &SyntaxError{list, pos, fmt.Sprintf("number too long in %q", r)}
		}
		if !isRange {
			out = append(out, lo)
			pos += len(r) + 1
			continue
		}
		a, _ := strconv.ParseInt(lo, 10, 64)
		b, _ := strconv.ParseInt(hi, 10, 64)
		if b < a {
			return nil, &SyntaxError{list, pos, fmt.Sprintf("range %q goes down", r)}
		}
		if b-a >= MaxHosts || len(out)+int(b-a)+1 > MaxHosts {
			return nil, &SyntaxError{list, pos, fmt.Sprintf("range %q expands to more than %d hosts", r, MaxHosts)}
		}
		w := len(lo)
		for n := a; n <= b; n++ {
			out = append(out, pad(n, w))
		}
		pos += len(r) + 1
	}
	return out, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pad writes n in decimal with at least w digits.
func pad(n int64, w int) string {
	s := strconv.FormatInt(n, 10)
	if len(s) < w {
		s = strings.Repeat("0", w-len(s)) + s
	}
	return s
}

// split cuts a host name into a prefix and its trailing decimal number.
// ok is false when the name does not end in a usable number.
func split(h string) (prefix, digits string, n int64, ok bool) {
	i := len(h)
	for i > 0 && h[i-1] >= '0' && h[i-1] <= '9' {
		i--
	}
	digits = h[i:]
	if digits == "" || len(digits) > maxDigits {
		return h, "", 0, false
	}
	n, _ = strconv.ParseInt(digits, 10, 64)
	return h[:i], digits, n, true
}

// Compress writes hosts as a compact list that Expand turns back into the
// same names in the same order. Consecutive hosts that share a prefix are
// grouped in one bracket ("n[1-3,7]"); runs of +1 with compatible padding
// become ranges. Sort first (Sort) for the most compact form. Names must
// not contain '[', ']', ',' or white space.
func Compress(hosts []string) string {
	var b strings.Builder
	for i := 0; i < len(hosts); {
		pre, dig, _, ok := split(hosts[i])
		j := i + 1
		if ok {
			for j < len(hosts) {
				p2, _, _, ok2 := split(hosts[j])
				if !ok2 || p2 != pre {
					break
				}
				j++
			}
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j-i == 1 {
			b.WriteString(hosts[i])
			i = j
			continue
		}
		_ = dig
		b.WriteString(pre)
		b.WriteByte('[')
		writeRanges(&b, hosts[i:j])
		b.WriteByte(']')
		i = j
	}
	return b.String()
}

// writeRanges writes the numbers of hosts (one prefix) as "a-b,c,...".
func writeRanges(b *strings.Builder, hosts []string) {
	first := true
	for i := 0; i < len(hosts); {
		_, lo, a, _ := split(hosts[i])
		w := len(lo)
		j := i + 1
		last := a
		for j < len(hosts) {
			_, d, n, _ := split(hosts[j])
			if n != last+1 || pad(n, w) != d {
				break
			}
			last = n
			j++
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(lo)
		if j-i > 1 {
			b.WriteByte('-')
			b.WriteString(pad(last, w))
		}
		i = j
	}
}

// Dedupe returns hosts without repeats, keeping the first of each.
func Dedupe(hosts []string) []string {
	seen := make(map[string]struct{}, len(hosts))
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if _, dup := seen[h]; dup {
			continue
		}
		seen[h] = struct{}{}
		out = append(out, h)
	}
	return out
}

// Minus returns the hosts of a that are not in b, in a's order.
func Minus(a, b []string) []string {
	drop := set(b)
	out := make([]string, 0, len(a))
	for _, h := range a {
		if _, ok := drop[h]; !ok {
			out = append(out, h)
		}
	}
	return out
}

// Intersect returns the hosts of a that are also in b, in a's order.
func Intersect(a, b []string) []string {
	keep := set(b)
	out := make([]string, 0, len(a))
	for _, h := range a {
		if _, ok := keep[h]; ok {
			out = append(out, h)
		}
	}
	return out
}

func set(hosts []string) map[string]struct{} {
	m := make(map[string]struct{}, len(hosts))
	for _, h := range hosts {
		m[h] = struct{}{}
	}
	return m
}

// Less orders host names naturally: by prefix, then by trailing number
// (node2 < node10), then by the text itself (n01 vs n1).
func Less(a, b string) bool {
	pa, da, na, oka := split(a)
	pb, db, nb, okb := split(b)
	if oka && okb && pa == pb {
		if na != nb {
			return na < nb
		}
		return da < db
	}
	if pa != pb {
		return pa < pb
	}
	if oka != okb {
		return !oka
	}
	return a < b
}

// Sort sorts hosts in place in natural order (see Less).
func Sort(hosts []string) {
	sort.SliceStable(hosts, func(i, j int) bool { return Less(hosts[i], hosts[j]) })
}

package config

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Lookup returns the value of an environment variable and whether it is
// set, like os.LookupEnv. It is injectable so ranks running as goroutines in
// one process can each see their own environment.
type Lookup func(name string) (string, bool)

// SourceKind says which layer a value came from, highest precedence last.
type SourceKind int

const (
	SourceDefault    SourceKind = iota // built-in default
	SourceSystemFile                   // system config file (SCR_CONFIG_FILE or /etc/scr/scr.conf)
	SourceApp                          // set through the API (Config.Set), or read from <prefix>/.scr/app.conf
	SourceUserFile                     // user config file (SCR_CONF_FILE or <prefix>/.scrconf)
	SourceEnv                          // environment variable
)

// Origin says where a value came from: the layer and, for files, the file
// and line.
type Origin struct {
	Kind SourceKind
	File string // config file path (files and app.conf)
	Line int    // 1-based line in File
}

func (o Origin) String() string {
	switch o.Kind {
	case SourceEnv:
		return "environment"
	case SourceUserFile, SourceSystemFile:
		return fmt.Sprintf("%s line %d", o.File, o.Line)
	case SourceApp:
		if o.File != "" {
			return fmt.Sprintf("%s line %d", o.File, o.Line)
		}
		return "Config call"
	default:
		return "default"
	}
}

// KV is one KEY=VALUE pair.
type KV struct {
	Key   string // upper-cased
	Value string
}

// Entry is one line of a config file (or one Config.Set string): a parent
// pair and the pairs that follow it on the same line, for example
// `STORE=/dev/shm GROUP=NODE COUNT=2` is parent STORE=/dev/shm with
// children GROUP=NODE and COUNT=2.
type Entry struct {
	KV
	Children []KV
	Origin   Origin
}

// Child returns the value of child key k and whether it is present.
func (e *Entry) Child(k string) (string, bool) {
	for i := len(e.Children) - 1; i >= 0; i-- {
		if e.Children[i].Key == k {
			return e.Children[i].Value, true
		}
	}
	return "", false
}

// SyntaxError is a config file line that cannot be parsed.
type SyntaxError struct {
	File   string
	Line   int
	Col    int // 1-based byte column
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("config %s line %d column %d: %s", e.File, e.Line, e.Col, e.Reason)
}

// maxLine bounds a config line; longer lines are an error, not a hang.
const maxLine = 1 << 20

// Parse reads config-file syntax (SCR's; doc/config.md) from r. name is
// used in errors, warnings and origins; kind is the origin layer recorded in
// each entry. `$VAR` and `${VAR}` in values are expanded with env.
//
// What SCR's parser accepts means the same here; where SCR goes on after a
// problem, so does Parse, returning a warning that names the file and line:
// a value using an undefined variable drops that pair (the whole line if it
// is the first pair), as SCR ignores it; quotes and a '#' inside a value are
// kept literally, as SCR keeps them. A line that SCR cannot read either is
// a *SyntaxError with file, line and column.
func Parse(r io.Reader, name string, kind SourceKind, env Lookup) ([]Entry, []string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var out []Entry
	var warns []string
	line := 0
	for sc.Scan() {
		line++
		kvs, ws, err := parseLine(sc.Text(), env)
		if err != nil {
			err.File, err.Line = name, line
			return nil, nil, err
		}
		for _, w := range ws {
			warns = append(warns, fmt.Sprintf("config: %s line %d: %s", name, line, w))
		}
		if len(kvs) == 0 {
			continue
		}
		out = append(out, Entry{KV: kvs[0], Children: kvs[1:], Origin: Origin{Kind: kind, File: name, Line: line}})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, &SyntaxError{File: name, Line: line + 1, Col: 1, Reason: "cannot read line: " + err.Error()}
	}
	return out, warns, nil
}

// ParseLine parses one line of config syntax into its pairs (nil for a
// blank or comment line) and the warnings about it (see Parse).
func ParseLine(s string, env Lookup) ([]KV, []string, error) {
	kvs, warns, err := parseLine(s, env)
	if err != nil {
		return nil, nil, err
	}
	return kvs, warns, nil
}

// isSpace separates tokens. SCR's parser knows only space and tab; the
// other white space (a CR of a file written on Windows) separates here too.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

// parseLine splits a line as SCR's parser does: white space separates
// KEY=VALUE pairs, a '#' where a pair would start begins a comment, keys are
// upper-cased (ASCII, as SCR's toupper), the first pair is the parent of the
// others. Beyond SCR: a backslash also escapes white space (a\ b), a value
// may contain '=' (SCR's parser stops there and reports an error), and
// ${VAR} is expanded (SCR's file parser knows only $VAR).
func parseLine(s string, env Lookup) ([]KV, []string, *SyntaxError) {
	var out []KV
	var warns []string
	dropParent := false
	i := 0
	bad := func(at int, format string, a ...any) *SyntaxError {
		return &SyntaxError{Col: at + 1, Reason: fmt.Sprintf(format, a...)}
	}
	for first := true; ; first = false {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] == '#' {
			break
		}
		start := i
		for i < len(s) && !isSpace(s[i]) && s[i] != '=' {
			if c := s[i]; c < 0x21 || c > 0x7e {
				return nil, nil, bad(i, "byte %q in a key (keys are printable ASCII)", c)
			}
			i++
		}
		if i == start {
			return nil, nil, bad(i, "expected a KEY=VALUE pair, found %q", s[i:i+1])
		}
		key := asciiUpper(s[start:i])
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return nil, nil, bad(i, "key %s has no '=VALUE'", key)
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] == '#' {
			return nil, nil, bad(i, "key %s has an empty value", key)
		}
		val, n, problem, notes := scanValue(s[i:], key, env)
		i += n
		warns = append(warns, notes...)
		if problem != "" {
			if first {
				warns = append(warns, problem+": line ignored, as SCR ignores it")
				dropParent = true
			} else if !dropParent {
				warns = append(warns, problem+": "+key+" ignored, as SCR ignores it")
			}
			continue
		}
		if !dropParent {
			out = append(out, KV{Key: key, Value: val})
		}
	}
	if dropParent {
		return nil, warns, nil
	}
	return out, warns, nil
}

// scanValue reads one value token at the start of s (it ends at unescaped
// white space) and returns the value, the bytes consumed, a problem that
// makes SCR drop the pair ("" if none) and notes (warnings that do not).
// Escapes are SCR's: \a \b \f \n \r \t \v are control characters, a
// backslash before any other byte keeps that byte (\$, \#, \\, \ ); a
// trailing backslash is dropped.
func scanValue(s, key string, env Lookup) (val string, n int, problem string, notes []string) {
	var b strings.Builder
	quote, hash := false, false
	i := 0
	for i < len(s) && !isSpace(s[i]) {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				i++
				continue
			}
			e := s[i+1]
			if j := strings.IndexByte("abfnrtv", e); j >= 0 {
				e = "\a\b\f\n\r\t\v"[j]
			}
			b.WriteByte(e)
			i += 2
		case '$':
			name, m, err := varName(s[i:])
			if err != "" {
				if problem == "" {
					problem = fmt.Sprintf("value of %s: %s", key, err)
				}
				i += max(m, 1)
				continue
			}
			v, ok := env(name)
			if !ok && problem == "" {
				problem = fmt.Sprintf("value of %s uses $%s, which is not set in the environment", key, name)
			}
			b.WriteString(v)
			i += m
		case '"', '\'':
			quote = true
			b.WriteByte(c)
			i++
		case '#':
			hash = true
			b.WriteByte(c)
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	if b.Len() == 0 && problem == "" {
		problem = fmt.Sprintf("value of %s is empty", key)
	}
	if quote {
		notes = append(notes, fmt.Sprintf("value of %s contains quotes: they are part of the value, as in SCR (quotes do not group words; write a\\ b for a space)", key))
	}
	if hash {
		notes = append(notes, fmt.Sprintf("value of %s contains '#': it is part of the value, as SCR's parser reads it; put a space before '#' to start a comment", key))
	}
	return b.String(), i, problem, notes
}

// varName parses "$NAME" or "${NAME}" at the start of s and returns the name,
// the bytes consumed and a problem ("" if none). As in SCR's file parser, a
// name after a bare '$' is letters and underscores (so $A1 is $A then "1").
func varName(s string) (string, int, string) {
	if len(s) >= 2 && s[1] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", len(s), "unterminated ${"
		}
		name := s[2:end]
		if name == "" || !validVar(name) {
			return "", end + 1, fmt.Sprintf("bad variable name %q", name)
		}
		return name, end + 1, ""
	}
	j := 1
	for j < len(s) && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')) {
		j++
	}
	if j == 1 {
		return "", 1, "'$' not followed by a variable name (write \\$ for a literal dollar)"
	}
	return s[1:j], j, ""
}

func validVar(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// expandEnv expands an environment value the way SCR does when it reads a
// parameter from the environment: $NAME and ${NAME} (letters, digits,
// underscores) are replaced by the variable's value, "" when it is not set;
// any other '$' and every backslash stay as they are. It returns the names
// that were not set.
func expandEnv(s string, env Lookup) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	isName := func(c byte) bool {
		return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	}
	var b strings.Builder
	var unset []string
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j, braced := i+1, false
		if j < len(s) && s[j] == '{' {
			braced = true
			j++
		}
		k := j
		for k < len(s) && isName(s[k]) {
			k++
		}
		if k == j || (braced && (k >= len(s) || s[k] != '}')) {
			b.WriteByte('$') // not a variable: kept
			i++
			continue
		}
		name := s[j:k]
		v, ok := env(name)
		if !ok {
			unset = append(unset, name)
		}
		b.WriteString(v)
		if braced {
			k++
		}
		i = k
	}
	return b.String(), unset
}

// Format writes entries in config-file syntax, one line each, escaping
// white space and control characters (\t, \n, ...), '#', '$', quotes and
// backslashes so Parse reads them back.
func Format(entries []Entry) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Key + "=" + escape(e.Value))
		for _, c := range e.Children {
			b.WriteString(" " + c.Key + "=" + escape(c.Value))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func escape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if j := strings.IndexByte("\a\b\f\n\r\t\v", c); j >= 0 {
			b.WriteByte('\\')
			b.WriteByte("abfnrtv"[j])
			continue
		}
		if c == ' ' || c == '#' || c == '$' || c == '\\' || c == '"' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

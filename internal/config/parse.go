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

// Parse reads config-file syntax (reference section 2.2) from r. name is
// used in errors and origins. `$VAR` and `${VAR}` in values are expanded
// with env; an undefined variable is an error. kind is the origin layer
// recorded in each entry.
func Parse(r io.Reader, name string, kind SourceKind, env Lookup) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var out []Entry
	line := 0
	for sc.Scan() {
		line++
		kvs, err := parseLine(sc.Text(), env)
		if err != nil {
			err.File, err.Line = name, line
			return nil, err
		}
		if len(kvs) == 0 {
			continue
		}
		out = append(out, Entry{KV: kvs[0], Children: kvs[1:], Origin: Origin{Kind: kind, File: name, Line: line}})
	}
	if err := sc.Err(); err != nil {
		return nil, &SyntaxError{File: name, Line: line + 1, Col: 1, Reason: "cannot read line: " + err.Error()}
	}
	return out, nil
}

// ParseLine parses one line of config syntax into its pairs (nil for a
// blank or comment line).
func ParseLine(s string, env Lookup) ([]KV, error) {
	kvs, err := parseLine(s, env)
	if err != nil {
		return nil, err
	}
	return kvs, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

func isKeyByte(c byte) bool {
	return c == '_' || c == '-' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func parseLine(s string, env Lookup) ([]KV, *SyntaxError) {
	var out []KV
	i := 0
	bad := func(at int, format string, a ...any) *SyntaxError {
		return &SyntaxError{Col: at + 1, Reason: fmt.Sprintf(format, a...)}
	}
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] == '#' {
			return out, nil
		}
		start := i
		for i < len(s) && isKeyByte(s[i]) {
			i++
		}
		if i == start {
			return nil, bad(i, "expected a KEY=VALUE pair, found %q", s[i:i+1])
		}
		key := strings.ToUpper(s[start:i])
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return nil, bad(i, "key %s has no '=VALUE'", key)
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var val strings.Builder
		vstart := i
		for i < len(s) && !isSpace(s[i]) && s[i] != '#' {
			c := s[i]
			switch c {
			case '\\':
				if i+1 >= len(s) {
					return nil, bad(i, "value of %s ends with a lone backslash", key)
				}
				val.WriteByte(s[i+1])
				i += 2
			case '$':
				name, n, err := varName(s[i:])
				if err != "" {
					return nil, bad(i, "value of %s: %s", key, err)
				}
				v, ok := env(name)
				if !ok {
					return nil, bad(i, "value of %s uses $%s, which is not set in the environment", key, name)
				}
				val.WriteString(v)
				i += n
			case '"', '\'':
				return nil, bad(i, "value of %s: quotes are not supported; escape spaces with a backslash", key)
			default:
				val.WriteByte(c)
				i++
			}
		}
		if i == vstart {
			return nil, bad(i, "key %s has an empty value", key)
		}
		out = append(out, KV{Key: key, Value: val.String()})
	}
}

// varName parses "$NAME" or "${NAME}" at the start of s and returns the name
// and the bytes consumed.
func varName(s string) (string, int, string) {
	if len(s) >= 2 && s[1] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", 0, "unterminated ${"
		}
		name := s[2:end]
		if name == "" || !validVar(name) {
			return "", 0, fmt.Sprintf("bad variable name %q", name)
		}
		return name, end + 1, ""
	}
	j := 1
	for j < len(s) && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') || (j > 1 && s[j] >= '0' && s[j] <= '9')) {
		j++
	}
	if j == 1 {
		return "", 0, "'$' not followed by a variable name (write \\$ for a literal dollar)"
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

// ExpandEnv expands $VAR and ${VAR} in an environment value (reference
// 2.1: values may refer to other variables). An undefined variable is an
// error; a backslash escapes the next byte.
func ExpandEnv(s string, env Lookup) (string, error) {
	if !strings.ContainsAny(s, "$\\") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
			b.WriteByte('\\')
			i++
		case '$':
			name, n, err := varName(s[i:])
			if err != "" {
				return "", fmt.Errorf("%s", err)
			}
			v, ok := env(name)
			if !ok {
				return "", fmt.Errorf("$%s is not set", name)
			}
			b.WriteString(v)
			i += n
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

// Format writes entries in config-file syntax, one line each, escaping
// spaces, '#', '$', quotes and backslashes so Parse reads them back.
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
		if isSpace(c) || c == '#' || c == '$' || c == '\\' || c == '"' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Package pmi speaks the PMI-1 wire protocol ("simple PMI", version 1.1):
// a client for processes started by a PMI-capable launcher (srun
// --mpi=pmi2, flux run, MPICH hydra) and a small server for scr_launch.
//
// The protocol, as documented in Flux RFC 13 "Simple Process Manager
// Interface v1" (github.com/flux-framework/rfc, spec_13.rst, section "Wire
// Protocol") and implemented by MPICH's simple PMI client
// (pmodels/mpich src/pmi), hydra's proxy (pmip_pmi_v1.c) and Slurm's
// src/plugins/mpi/pmi2 (which also answers PMI-1 clients): newline-
// terminated lines of space-separated key=value tuples, sent in lock step
// (one request, one response) over an inherited socket (PMI_FD) or a TCP
// connection (PMI_PORT=host:port, then "cmd=initack pmiid=$PMI_ID").
//
//	cmd=init pmi_version=1 pmi_subversion=1  -> cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1
//	cmd=get_maxes                            -> cmd=maxes rc=0 kvsname_max=K keylen_max=K vallen_max=V
//	cmd=get_appnum                           -> cmd=appnum rc=0 appnum=N
//	cmd=get_my_kvsname                       -> cmd=my_kvsname rc=0 kvsname=NAME
//	cmd=get_universe_size                    -> cmd=universe_size rc=0 size=N
//	cmd=put kvsname=NAME key=K value=V       -> cmd=put_result rc=0
//	cmd=barrier_in                           -> cmd=barrier_out rc=0
//	cmd=get kvsname=NAME key=K               -> cmd=get_result rc=0 value=V   (rc!=0: not found)
//	cmd=finalize                             -> cmd=finalize_ack rc=0
//	cmd=abort                                -> (connection closed)
//
// Values in a get_result are "words": printable, no spaces and no '='; the
// client refuses to put anything else, so a value always reads back intact.
package pmi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// msg is one protocol line: its cmd and the other tuples.
type msg struct {
	cmd  string
	args map[string]string
}

func parseLine(line string) (msg, error) {
	m := msg{args: map[string]string{}}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return m, fmt.Errorf("pmi: malformed tuple %q in line %q", f, line)
		}
		if k == "cmd" || k == "mcmd" {
			m.cmd = v
			continue
		}
		m.args[k] = v
	}
	if m.cmd == "" {
		return m, fmt.Errorf("pmi: line without cmd: %q", line)
	}
	return m, nil
}

// format writes cmd first and the other tuples in the order given.
func format(cmd string, kv ...string) string {
	var b strings.Builder
	b.WriteString("cmd=")
	b.WriteString(cmd)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteByte(' ')
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(kv[i+1])
	}
	b.WriteByte('\n')
	return b.String()
}

func (m msg) int(k string) (int, error) {
	v, ok := m.args[k]
	if !ok {
		return 0, fmt.Errorf("pmi: %s response lacks %s", m.cmd, k)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("pmi: %s response: bad %s=%q", m.cmd, k, v)
	}
	return n, nil
}

// rc is the response's return code; a missing rc means success.
func (m msg) rc() int {
	v, ok := m.args["rc"]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

func (m msg) String() string {
	keys := make([]string, 0, len(m.args))
	for k := range m.args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("cmd=" + m.cmd)
	for _, k := range keys {
		b.WriteString(" " + k + "=" + m.args[k])
	}
	return b.String()
}

// validWord reports whether s can travel as a key or value: non-empty,
// printable ASCII without space or '='.
func validWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '=' {
			return false
		}
	}
	return true
}

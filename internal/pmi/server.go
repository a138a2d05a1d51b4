package pmi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// Server is a PMI-1 server for one job of Size ranks: one KVS and a
// barrier. scr_launch runs one and serves each rank's socket with Serve.
type Server struct {
	Size    int
	KVSName string
	ValMax  int // vallen_max announced; 0 means 1024 (Slurm's value)

	mu      sync.Mutex
	kvs     map[string]string
	waiting []chan struct{} // ranks inside the current barrier
}

// NewServer returns a server for size ranks with the KVS name kvsName.
func NewServer(size int, kvsName string) *Server {
	return &Server{Size: size, KVSName: kvsName, kvs: map[string]string{}}
}

// Serve answers one rank's requests on conn until the rank finalizes, the
// connection ends or ctx ends. A clean finalize or EOF returns nil.
func (s *Server) Serve(ctx context.Context, conn net.Conn, rank int) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r := bufio.NewReader(conn)
	reply := func(cmd string, kv ...string) error {
		_, err := io.WriteString(conn, format(cmd, kv...))
		return err
	}
	valMax := s.ValMax
	if valMax == 0 {
		valMax = 1024
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pmi server: rank %d: %w", rank, err)
		}
		m, err := parseLine(line)
		if err != nil {
			return fmt.Errorf("pmi server: rank %d: %w", rank, err)
		}
		switch m.cmd {
		case "init":
			err = reply("response_to_init", "rc", "0", "pmi_version", "1", "pmi_subversion", "1")
		case "get_maxes":
			err = reply("maxes", "rc", "0", "kvsname_max", "256", "keylen_max", "256", "vallen_max", strconv.Itoa(valMax))
		case "get_appnum":
			err = reply("appnum", "rc", "0", "appnum", "0")
		case "get_my_kvsname":
			err = reply("my_kvsname", "rc", "0", "kvsname", s.KVSName)
		case "get_universe_size":
			err = reply("universe_size", "rc", "0", "size", strconv.Itoa(s.Size))
		case "put":
			if m.args["kvsname"] != s.KVSName {
				err = reply("put_result", "rc", "-1", "msg", "unknown_kvsname")
				break
			}
			s.mu.Lock()
			s.kvs[m.args["key"]] = m.args["value"]
			s.mu.Unlock()
			err = reply("put_result", "rc", "0", "msg", "success")
		case "get":
			s.mu.Lock()
			v, ok := s.kvs[m.args["key"]]
			s.mu.Unlock()
			if !ok || m.args["kvsname"] != s.KVSName {
				err = reply("get_result", "rc", "-1", "msg", "key_"+m.args["key"]+"_not_found")
			} else {
				err = reply("get_result", "rc", "0", "msg", "success", "value", v)
			}
		case "barrier_in":
			if err = s.barrier(ctx); err == nil {
				err = reply("barrier_out", "rc", "0")
			}
		case "finalize":
			reply("finalize_ack", "rc", "0")
			return nil
		case "abort":
			return fmt.Errorf("pmi server: rank %d called abort", rank)
		default:
			err = reply(m.cmd+"_result", "rc", "-1", "msg", "unsupported_command")
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pmi server: rank %d: %w", rank, err)
		}
	}
}

func (s *Server) barrier(ctx context.Context) error {
	ch := make(chan struct{})
	s.mu.Lock()
	s.waiting = append(s.waiting, ch)
	if len(s.waiting) == s.Size {
		for _, w := range s.waiting {
			close(w)
		}
		s.waiting = nil
	}
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

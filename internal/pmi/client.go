package pmi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// ErrNoPMI is returned by Connect when the environment offers no PMI.
var ErrNoPMI = errors.New("pmi: no PMI_FD or PMI_PORT in the environment")

// ErrNotFound is wrapped by Get's error when the key is not in the KVS.
var ErrNotFound = errors.New("pmi: key not found")

// Client is a PMI-1 client. Its methods may be called from several
// goroutines; requests are serialised (the protocol is lock step).
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	broken error // set when a request was interrupted mid-way

	Rank, Size int    // from PMI_RANK / PMI_SIZE (or the PMI_PORT handshake)
	AppNum     int    // get_appnum
	KVS        string // get_my_kvsname
	KeyMax     int    // get_maxes keylen_max
	ValMax     int    // get_maxes vallen_max
}

// Connect opens the PMI connection the launcher offered in the
// environment (PMI_FD, else PMI_PORT with PMI_ID) and initialises it. It
// returns ErrNoPMI when neither is set. getenv is os.Getenv in programs.
func Connect(ctx context.Context, getenv func(string) string) (*Client, error) {
	rank, size := -1, -1
	if v := getenv("PMI_RANK"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("pmi: bad PMI_RANK=%q", v)
		}
		rank = n
	}
	if v := getenv("PMI_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("pmi: bad PMI_SIZE=%q", v)
		}
		size = n
	}
	if v := getenv("PMI_FD"); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 0 {
			return nil, fmt.Errorf("pmi: bad PMI_FD=%q", v)
		}
		f := os.NewFile(uintptr(fd), "PMI_FD")
		conn, err := net.FileConn(f) // dups the descriptor
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("pmi: PMI_FD=%d is not a usable socket: %w", fd, err)
		}
		return NewClient(ctx, conn, rank, size)
	}
	if v := getenv("PMI_PORT"); v != "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", v)
		if err != nil {
			return nil, fmt.Errorf("pmi: connect to PMI_PORT=%s: %w", v, err)
		}
		c := &Client{conn: conn, r: bufio.NewReader(conn), Rank: rank, Size: size}
		if id := getenv("PMI_ID"); id != "" {
			// hydra's PMI_PORT handshake: initack, then the server sets
			// size, rank and debug.
			if _, err := c.call(ctx, format("initack", "pmiid", id), "initack"); err != nil {
				conn.Close()
				return nil, err
			}
			for range 3 {
				m, err := c.read(ctx)
				if err != nil {
					conn.Close()
					return nil, err
				}
				if m.cmd != "set" {
					conn.Close()
					return nil, fmt.Errorf("pmi: expected cmd=set after initack, got %v", m)
				}
				if n, err := m.int("size"); err == nil {
					c.Size = n
				}
				if n, err := m.int("rank"); err == nil {
					c.Rank = n
				}
			}
		}
		if err := c.init(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return c, nil
	}
	return nil, ErrNoPMI
}

// NewClient runs the PMI-1 start-up (init, get_maxes, get_appnum,
// get_my_kvsname) over conn. rank and size come from the launcher's
// environment.
func NewClient(ctx context.Context, conn net.Conn, rank, size int) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReader(conn), Rank: rank, Size: size}
	if err := c.init(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) init(ctx context.Context) error {
	m, err := c.call(ctx, format("init", "pmi_version", "1", "pmi_subversion", "1"), "response_to_init")
	if err != nil {
		return err
	}
	if v, ok := m.args["pmi_version"]; ok && v != "1" {
		return fmt.Errorf("pmi: server answered init with pmi_version=%s, want 1", v)
	}
	if m, err = c.call(ctx, format("get_maxes"), "maxes"); err != nil {
		return err
	}
	c.KeyMax, _ = m.int("keylen_max")
	c.ValMax, _ = m.int("vallen_max")
	if m, err = c.call(ctx, format("get_appnum"), "appnum"); err != nil {
		return err
	}
	c.AppNum, _ = m.int("appnum")
	if m, err = c.call(ctx, format("get_my_kvsname"), "my_kvsname"); err != nil {
		return err
	}
	c.KVS = m.args["kvsname"]
	if c.KVS == "" {
		return errors.New("pmi: server returned an empty kvsname")
	}
	if c.Rank < 0 || c.Size <= 0 {
		// Not in the environment: ask for the universe size at least.
		if m, err := c.call(ctx, format("get_universe_size"), "universe_size"); err == nil && c.Size <= 0 {
			c.Size, _ = m.int("size")
		}
		if c.Rank < 0 || c.Size <= 0 {
			return fmt.Errorf("pmi: rank %d / size %d unknown: the launcher set no PMI_RANK/PMI_SIZE", c.Rank, c.Size)
		}
	}
	return nil
}

// deadline makes blocking I/O on conn end when ctx does.
func (c *Client) deadline(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		c.conn.SetDeadline(time.Time{})
	}
}

func (c *Client) read(ctx context.Context) (msg, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return msg{}, ioErr(ctx, "reading from the launcher", err)
	}
	return parseLine(line)
}

// ioErr names the context's error when the context ended the I/O (the
// connection deadline can fire a moment before the context reports it).
func ioErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("pmi: %w", ctx.Err())
	}
	if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d.Add(-time.Millisecond)) {
		return fmt.Errorf("pmi: %w", context.DeadlineExceeded)
	}
	return fmt.Errorf("pmi: %s: %w", what, err)
}

// call sends one request and reads its response, which must be want.
func (c *Client) call(ctx context.Context, req, want string) (msg, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return msg{}, errors.New("pmi: client finalized")
	}
	if c.broken != nil {
		return msg{}, c.broken
	}
	defer c.deadline(ctx)()
	if _, err := c.conn.Write([]byte(req)); err != nil {
		err = ioErr(ctx, "writing to the launcher", err)
		c.broken = fmt.Errorf("pmi: connection unusable after an interrupted request (%v)", err)
		return msg{}, err
	}
	m, err := c.read(ctx)
	if err != nil {
		// The protocol is lock step: a response still in flight would be
		// taken for the answer to the next request.
		c.broken = fmt.Errorf("pmi: connection unusable after an interrupted request (%v)", err)
		return m, err
	}
	if m.cmd != want {
		return m, fmt.Errorf("pmi: sent %q, got unexpected response %v", req[:len(req)-1], m)
	}
	return m, nil
}

// Put stores key=value in the job's KVS; other ranks see it after the next
// Barrier. Keys and values must be printable without spaces or '='.
func (c *Client) Put(ctx context.Context, key, value string) error {
	if !validWord(key) || !validWord(value) {
		return fmt.Errorf("pmi: put %q=%q: key and value must be printable ASCII without spaces or '='", key, value)
	}
	if c.ValMax > 0 && len(value) >= c.ValMax {
		return fmt.Errorf("pmi: put %q: value of %d bytes exceeds the launcher's limit %d", key, len(value), c.ValMax)
	}
	m, err := c.call(ctx, format("put", "kvsname", c.KVS, "key", key, "value", value), "put_result")
	if err != nil {
		return err
	}
	if m.rc() != 0 {
		return fmt.Errorf("pmi: put %q failed: rc=%d %s", key, m.rc(), m.args["msg"])
	}
	return nil
}

// Get reads a key from the job's KVS; the error wraps ErrNotFound if the key
// is not there.
func (c *Client) Get(ctx context.Context, key string) (string, error) {
	if !validWord(key) {
		return "", fmt.Errorf("pmi: get %q: bad key", key)
	}
	m, err := c.call(ctx, format("get", "kvsname", c.KVS, "key", key), "get_result")
	if err != nil {
		return "", err
	}
	if m.rc() != 0 {
		return "", fmt.Errorf("pmi: get %q: rc=%d %s: %w", key, m.rc(), m.args["msg"], ErrNotFound)
	}
	return m.args["value"], nil
}

// Barrier returns once every rank of the job entered it; puts made before
// it are visible to gets after it.
func (c *Client) Barrier(ctx context.Context) error {
	m, err := c.call(ctx, format("barrier_in"), "barrier_out")
	if err != nil {
		return err
	}
	if m.rc() != 0 {
		return fmt.Errorf("pmi: barrier failed: rc=%d %s", m.rc(), m.args["msg"])
	}
	return nil
}

// Finalize tells the launcher this rank is done with PMI and closes the
// connection.
func (c *Client) Finalize(ctx context.Context) error {
	_, err := c.call(ctx, format("finalize"), "finalize_ack")
	c.Close()
	return err
}

// Close drops the connection without finalize.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

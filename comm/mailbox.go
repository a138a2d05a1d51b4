package comm

import (
	"context"
	"sync"
)

// key names a message stream inside one world: the communicator it belongs
// to, whether it is a collective's internal message (sys) or a user Send,
// and the tag. Collectives number their calls so that two collectives never
// share a stream.
type key struct {
	comm uint64
	sys  bool
	tag  int64
}

// mkey is a key plus the world rank of the sender: one FIFO queue each.
type mkey struct {
	src int
	key
}

type slot struct {
	q    [][]byte
	wake chan struct{} // closed and cleared when q grows or the state changes
}

// mailbox holds the messages that arrived for one rank until it receives
// them. Both transports deliver into one: the local transport directly from
// the sender's goroutine, TCP from the connection readers.
type mailbox struct {
	mu     sync.Mutex
	slots  map[mkey]*slot
	fail   error         // set once: the world is broken (peer lost) or closed
	failCh chan struct{} // closed when fail is set
	gone   map[int]error // senders that closed their communicator
}

func newMailbox() *mailbox {
	return &mailbox{slots: map[mkey]*slot{}, failCh: make(chan struct{}), gone: map[int]error{}}
}

// put queues b (owned by the mailbox from now on) from src under k.
func (m *mailbox) put(src int, k key, b []byte) {
	mk := mkey{src, k}
	m.mu.Lock()
	s := m.slots[mk]
	if s == nil {
		s = &slot{}
		m.slots[mk] = s
	}
	s.q = append(s.q, b)
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
	m.mu.Unlock()
}

// take returns the next message from src under k, waiting for it until ctx
// ends, the world breaks, or src closed its communicator with nothing left
// queued. A message already queued is returned even when the world is broken.
func (m *mailbox) take(ctx context.Context, src int, k key) ([]byte, error) {
	mk := mkey{src, k}
	for {
		m.mu.Lock()
		s := m.slots[mk]
		if s != nil && len(s.q) > 0 {
			b := s.q[0]
			s.q[0] = nil
			s.q = s.q[1:]
			if len(s.q) == 0 && s.wake == nil {
				delete(m.slots, mk)
			}
			m.mu.Unlock()
			return b, nil
		}
		if m.fail != nil {
			err := m.fail
			m.mu.Unlock()
			return nil, err
		}
		if err, ok := m.gone[src]; ok {
			m.mu.Unlock()
			return nil, err
		}
		if s == nil {
			s = &slot{}
			m.slots[mk] = s
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		wake := s.wake
		m.mu.Unlock()

		select {
		case <-wake:
		case <-m.failCh:
		case <-ctx.Done():
			m.mu.Lock()
			if s := m.slots[mk]; s != nil && len(s.q) == 0 {
				if s.wake != nil {
					close(s.wake)
				}
				delete(m.slots, mk)
			}
			m.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// setFail breaks the mailbox: every waiting and future take without a queued
// message returns err. The first error wins.
func (m *mailbox) setFail(err error) {
	m.mu.Lock()
	if m.fail == nil {
		m.fail = err
		close(m.failCh)
	}
	m.mu.Unlock()
}

// failed returns the error the mailbox was broken with, or nil.
func (m *mailbox) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fail
}

// peerGone records that src closed its communicator: takes from src with
// nothing queued return err from now on.
func (m *mailbox) peerGone(src int, err error) {
	m.mu.Lock()
	if _, ok := m.gone[src]; !ok {
		m.gone[src] = err
	}
	for mk, s := range m.slots {
		if mk.src == src && s.wake != nil {
			close(s.wake)
			s.wake = nil
		}
	}
	m.mu.Unlock()
}

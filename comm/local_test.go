package comm

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLocal(t *testing.T) {
	suite(t, func(t *testing.T, hosts []string) []Comm { return NewLocal(hosts) })
}

func TestLocalKill(t *testing.T) {
	const p, victim = 9, 4
	lg := NewLocalGroup(hostsN(p, 3))
	comms := lg.Comms()
	defer closeAll(comms)
	entered := make(chan int, p)
	go func() {
		// Kill once every survivor is inside a blocking call.
		for range p - 1 {
			<-entered
		}
		lg.Kill(victim, "node vanished")
	}()
	errs := runRanks(t, comms, func(ctx context.Context, c Comm) error {
		if err := c.Barrier(ctx); err != nil {
			return err
		}
		if c.Rank() == victim {
			return nil // never enters the next barrier: it "died"
		}
		entered <- c.Rank()
		return c.Barrier(ctx)
	})
	for r, err := range errs {
		if r == victim {
			continue
		}
		var pl *PeerLostError
		if !errors.Is(err, ErrPeerLost) || !errors.As(err, &pl) {
			t.Errorf("rank %d: %v, want a PeerLostError", r, err)
			continue
		}
		if pl.Rank != victim || pl.Host != "node1" || pl.Reason != "node vanished" {
			t.Errorf("rank %d: lost %+v", r, pl)
		}
	}
	ctx := context.Background()
	if err := comms[victim].Barrier(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("killed rank's own call: %v, want ErrClosed", err)
	}
	if err := comms[0].Send(ctx, victim, 0, nil); !errors.Is(err, ErrPeerLost) {
		t.Errorf("send to killed rank: %v, want ErrPeerLost", err)
	}
	if lg.Lost() == nil || lg.Lost().Rank != victim {
		t.Errorf("Lost() = %v", lg.Lost())
	}
}

func TestKillLocalInSubComm(t *testing.T) {
	comms := NewLocal(hostsN(6, 2))
	defer closeAll(comms)
	errs := runRanks(t, comms, func(ctx context.Context, c Comm) error {
		node, err := c.SplitString(ctx, c.Host(c.Rank()))
		if err != nil {
			return err
		}
		if c.Rank() == 5 {
			if !KillLocal(c, "") {
				return errors.New("KillLocal refused a local comm")
			}
			return nil
		}
		// Ranks on other nodes than the victim's are also told.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = node.Allreduce(ctx, OpSum, []int64{1})
		if err == nil {
			err = c.Barrier(ctx)
		}
		return err
	})
	for r := range 5 {
		if !errors.Is(errs[r], ErrPeerLost) {
			t.Errorf("rank %d: %v, want ErrPeerLost", r, errs[r])
		}
	}
	if KillLocal(nil, "") {
		t.Error("KillLocal(nil) = true")
	}
}

func FuzzParts(f *testing.F) {
	f.Add([]byte{2, 1, 'a', 0})
	f.Add(encodeParts([][]byte{[]byte("x"), nil, []byte("yz")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := decodeParts(b)
		if err != nil {
			return
		}
		again, err := decodeParts(encodeParts(parts))
		if err != nil || len(again) != len(parts) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

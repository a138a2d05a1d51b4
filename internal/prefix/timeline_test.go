package prefix

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

func TestTimelineAppendReadWait(t *testing.T) {
	dir := t.TempDir()
	if evs, err := ReadTimeline(dir); err != nil || len(evs) != 0 {
		t.Fatalf("empty timeline: %v %v", evs, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := AppendTimeline(dir, Event{Source: "test", Event: "checkpoint", Run: i, Fields: map[string]any{"name": "ckpt"}}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	evs, err := ReadTimeline(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 20 {
		t.Fatalf("got %d events, want 20", len(evs))
	}
	seen := map[int]bool{}
	for _, ev := range evs {
		if ev.Event != "checkpoint" || ev.Source != "test" || ev.Fields["name"] != "ckpt" || ev.Time.IsZero() {
			t.Fatalf("bad event %+v", ev)
		}
		seen[ev.Run] = true
	}
	if len(seen) != 20 {
		t.Fatalf("runs seen: %v", seen)
	}

	_, off, err := ReadTimelineFrom(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		time.Sleep(30 * time.Millisecond)
		AppendTimeline(dir, Event{Source: "library", Event: "started", Run: 7})
		AppendTimeline(dir, Event{Source: "library", Event: "restart", Run: 7})
	}()
	ev, next, err := WaitTimeline(ctx, dir, off, 5*time.Millisecond, func(e Event) bool { return e.Event == "started" && e.Run == 7 })
	if err != nil || ev.Event != "started" {
		t.Fatalf("wait: %+v %v", ev, err)
	}
	rest, _, err := ReadTimelineFrom(dir, next)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) > 1 || (len(rest) == 1 && rest[0].Event != "restart") {
		t.Fatalf("after started: %+v", rest)
	}
}

func TestTimelineTornLastLineIsNotConsumed(t *testing.T) {
	dir := t.TempDir()
	if err := AppendTimeline(dir, Event{Source: "test", Event: "launch"}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(TimelinePath(dir), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"event":"sta`)
	f.Close()
	evs, off, err := ReadTimelineFrom(dir, 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("got %v %v", evs, err)
	}
	st, _ := os.Stat(TimelinePath(dir))
	if off >= st.Size() {
		t.Fatalf("torn line consumed: off %d size %d", off, st.Size())
	}
}

func TestTimelineWaitHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, _, err := WaitTimeline(ctx, t.TempDir(), 0, time.Millisecond, func(Event) bool { return true })
	if err != context.DeadlineExceeded {
		t.Fatalf("err = %v", err)
	}
}

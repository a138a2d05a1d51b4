package jobrun

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/scr-go/scr/internal/launch"
	"github.com/scr-go/scr/internal/prefix"
)

// watch follows one running step until it ends.
type watch struct {
	r       *runner
	run     int
	step    Step
	off     int64 // timeline offset where this run's events start
	cmd     launch.Command
	healthy []string
	check   bool // the restart check (scr_have_restart), not a run
}

// progressEvents reset the watchdog.
var progressEvents = map[string]bool{"started": true, "checkpoint": true, "flush": true, "restart": true, "rebuilt": true, "finalized": true}

func (w *watch) loop(ctx context.Context) attemptOutcome {
	o := w.r.o
	confirmed := o.LaunchTimeout < 0
	var confirmC <-chan time.Time
	if !confirmed {
		t := time.NewTimer(o.LaunchTimeout)
		defer t.Stop()
		confirmC = t.C
	}
	poll := time.NewTicker(o.Poll)
	defer poll.Stop()
	nodeTick := time.NewTicker(o.WatchInterval)
	defer nodeTick.Stop()

	// Node checks run in their own goroutine (a ping can take a second),
	// at most one at a time. Stop: checkCtx is cancelled and the goroutine
	// waited for when the watch returns.
	var checks sync.WaitGroup
	checkCtx, cancelChecks := context.WithCancel(ctx)
	defer checks.Wait()
	defer cancelChecks()
	checkDone := make(chan map[string]string, 1)
	checking := false

	stepNodes := w.cmd.Nodes
	if len(stepNodes) == 0 {
		stepNodes = w.healthy
	}
	lastProgress := o.Now()
	haltEvery := max(o.Poll, time.Second)
	lastHalt := time.Time{}
	killed := false
	unconfirmed := false
	var finalizedAt time.Time // every rank finished SCR_Finalize
	lingered := false         // killed for running on after that
	var killWait <-chan time.Time

	kill := func(reason string) {
		if killed {
			return
		}
		killed = true
		w.r.logf(w.run, "step_kill", map[string]any{"reason": reason}, "killing the step: %s", reason)
		// The kill (SIGKILL at once, then the resource manager's cancel,
		// which can be slow when the controller is) runs on its own, so
		// the loop sees the launcher end and moves on. Owner: the runner,
		// which waits for it before Run returns; stop: KillTimeout.
		w.r.bg.Add(1)
		go func() {
			defer w.r.bg.Done()
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.KillTimeout)
			defer cancel()
			if err := w.step.Kill(kctx); err != nil {
				w.r.logf(w.run, "", nil, "warning: step kill: %v", err)
			}
		}()
		killWait = time.After(o.KillTimeout)
	}

	ending := false
	// readEvents consumes this run's new timeline events.
	readEvents := func() {
		evs, next, err := prefix.ReadTimelineFrom(o.Prefix, w.off)
		if err != nil {
			w.r.logf(w.run, "", nil, "warning: reading the timeline: %v", err)
		}
		w.off = next
		for _, ev := range evs {
			if ev.Run != w.run || ev.Source == "scr_run" {
				continue
			}
			if progressEvents[ev.Event] {
				lastProgress = o.Now()
			}
			switch ev.Event {
			case "started":
				if !confirmed {
					confirmed = true
					if ns := stringList(ev.Fields["nodes"]); len(ns) > 0 {
						stepNodes = ns
					}
					w.r.logf(w.run, "", nil, "run %d started%s", w.run, startedText(ev.Fields))
				}
			case "finalized":
				if finalizedAt.IsZero() {
					finalizedAt = o.Now()
				}
			case "peer_lost":
				why := fmt.Sprintf("peer lost: rank %v on %v lost rank %v on %v: %v",
					ev.Fields["rank"], ev.Fields["host"], ev.Fields["lost_rank"], ev.Fields["lost_host"], ev.Fields["reason"])
				// Silence (no heartbeat) means the node or its network
				// is gone: take it out now instead of waiting for a ping
				// to time out before the relaunch. A crash of the process
				// alone shows as a reset or close instead. A wrong call
				// is undone by the re-check before "too few nodes".
				host, _ := ev.Fields["lost_host"].(string)
				reason, _ := ev.Fields["reason"].(string)
				if host != "" && strings.Contains(strings.ToLower(reason), "heartbeat") {
					w.r.markDown(host, "lost peer: "+reason, w.run)
				}
				if !ending { // else the step is over anyway
					kill(why)
				}
			}
		}
	}

	for {
		select {
		case <-w.step.Done():
			if !killed {
				ending = true
				readEvents() // the ranks may have reported in just before the end
			}
			code := w.step.ExitCode()
			if lingered {
				// The application had finished: the run ended well.
				w.r.logf(w.run, "", nil, "run %d had finished SCR_Finalize on every rank; exit code %d of the killed step taken as 0", w.run, code)
				code = 0
			}
			if !confirmed && !killed && code != 0 {
				// Ended on its own before the ranks reported in: a
				// failed launch, not a run (retried, bounded).
				unconfirmed = true
			}
			how := "ended"
			if killed {
				how = "ended after the kill"
			}
			if w.check {
				// Not a run: no step_exit event, which watchers take as one.
				w.r.logf(w.run, "", nil, "restart check of attempt %d %s with exit code %d", w.run, how, code)
			} else {
				w.r.logf(w.run, "step_exit", map[string]any{"status": code}, "step of attempt %d %s with exit code %d", w.run, how, code)
			}
			return attemptOutcome{exit: code, unconfirmed: unconfirmed, killed: killed}
		case <-killWait:
			w.r.logf(w.run, "step_exit", map[string]any{"status": -1},
				"step of attempt %d still running %s after SIGKILL; moving on (check for a stuck launcher process)", w.run, o.KillTimeout)
			return attemptOutcome{exit: -1, unconfirmed: unconfirmed, killed: true}
		case <-ctx.Done():
			kill("scr_run interrupted: " + ctx.Err().Error())
		case <-confirmC:
			if !confirmed {
				unconfirmed = true
				kill(fmt.Sprintf("launch not confirmed: no `started` event from run %d within %s (SCR_LAUNCH_TIMEOUT)", w.run, o.LaunchTimeout))
			}
		case <-nodeTick.C:
			if !checking && !killed {
				checking = true
				checks.Add(1)
				nodes := stepNodes
				go func() {
					defer checks.Done()
					checkDone <- w.r.checkNodes(checkCtx, o.WatchDown, nodes, w.run)
				}()
			}
		case fresh := <-checkDone:
			checking = false
			for _, n := range stepNodes {
				if why, ok := fresh[n]; ok {
					kill(fmt.Sprintf("node failure: %s: %s", n, why))
					break
				}
			}
		case <-poll.C:
			if killed {
				continue
			}
			readEvents()
			if killed {
				continue
			}
			now := o.Now()
			if o.Halt != nil && now.Sub(lastHalt) >= haltEvery {
				lastHalt = now
				if h, err := o.Halt.Check(ctx); err == nil && h.Halt && h.Immediate {
					kill("scr_halt --immediate: " + h.Reason)
					continue
				}
			}
			if !finalizedAt.IsZero() && o.FinalizeTimeout > 0 && now.Sub(finalizedAt) > o.FinalizeTimeout {
				lingered = true
				kill(fmt.Sprintf("every rank finished SCR_Finalize %s ago and the step has not ended (SCR_FINALIZE_TIMEOUT %s): hung in MPI_Finalize? (doc/capi.md)",
					now.Sub(finalizedAt).Round(time.Second), o.FinalizeTimeout))
				continue
			}
			if wd := o.Watchdog; wd != nil && wd.Timeout > 0 {
				// The flush state is read only once the normal limit
				// passed, not at every poll.
				if idle := now.Sub(lastProgress); idle > wd.Timeout {
					limit, name := wd.Timeout, "SCR_WATCHDOG_TIMEOUT"
					if wd.TimeoutPFS > 0 && wd.Flushing != nil && wd.Flushing() {
						limit, name = wd.TimeoutPFS, "SCR_WATCHDOG_TIMEOUT_PFS, a flush is in progress"
					}
					if idle > limit {
						kill(fmt.Sprintf("watchdog: no checkpoint progress for %s (%s %s)", idle.Round(time.Second), name, limit))
					}
				}
			}
		}
	}
}

// stringList reads a JSON list of strings (a started event's nodes).
func stringList(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

// startedText describes a started event's ranks and nodes, as far as given.
func startedText(f map[string]any) string {
	var parts []string
	if r, ok := f["ranks"]; ok {
		parts = append(parts, fmt.Sprintf("%v ranks", r))
	}
	if l := stringList(f["nodes"]); l != nil {
		parts = append(parts, fmt.Sprintf("%d nodes (%s)", len(l), strings.Join(l, ",")))
	} else if n, ok := f["nodes"]; ok {
		parts = append(parts, fmt.Sprintf("%v nodes", n))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, " on ")
}

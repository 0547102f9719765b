package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/workflow"
)

// The stream's Updates: pause, resume and stop, acknowledged. Each does
// what the signal of the same name does (the signals keep working) and
// answers once it took effect, with the committed offsets then.
const (
	UpdatePause  = SignalPause
	UpdateResume = SignalResume
	UpdateStop   = SignalStop
)

// PartitionOffset is a partition's committed next offset.
type PartitionOffset struct {
	Partition  int32 `json:"partition"`
	NextOffset int64 `json:"next_offset"`
}

// ControlReply answers a pause, resume or stop Update: the stream's state
// when it took effect, each partition's committed next offset then, and
// what happened.
type ControlReply struct {
	State   string            `json:"state"`
	Offsets []PartitionOffset `json:"offsets"`
	Message string            `json:"message"`
}

// setControlUpdates registers the pause, resume and stop Updates. A
// validator refuses, before anything is written to the history, what the
// stream cannot do in its state. Each handler feeds the state machine the
// same event as the signal, wakes the main loop and waits:
//   - pause until every lease has stopped and committed its open batch;
//   - resume until every lease slot runs a lease again (or is in backoff
//     after a failure, which the reply says);
//   - stop until every partition is drained and the stream stopped.
//
// A handler also returns when the run ends or continues as new.
func (r *streamRun) setControlUpdates(ctx workflow.Context) error {
	controls := []struct {
		name     string
		validate func() error
		apply    func()
		done     func() bool
		message  func() string
	}{
		{UpdatePause,
			func() error {
				if r.m.stopping() {
					return fmt.Errorf("the stream is %s: nothing to pause", r.m.state())
				}
				return nil
			},
			func() {
				if r.m.Phase != phasePaused {
					r.on(ctx, pauseSignal{})
				}
			},
			func() bool { return r.m.Phase != phasePaused || r.leasesIdle() },
			func() string {
				return "every lease stopped after committing its open batch; these offsets are where resume starts"
			}},
		{UpdateResume,
			func() error {
				if r.m.Phase != phasePaused {
					return fmt.Errorf("the stream is %s, not paused: nothing to resume", r.m.state())
				}
				return nil
			},
			func() { r.on(ctx, resumeSignal{}) },
			func() bool { return r.m.Phase != phaseRunning || r.leasesStarted() },
			func() string {
				if r.leasesFailing() {
					return "resumed; a lease slot is failing and retries after its backoff (stream status shows why)"
				}
				return "every lease runs again from these offsets"
			}},
		{UpdateStop,
			func() error {
				if r.m.Phase == phaseStopped {
					return fmt.Errorf("the stream is stopped already")
				}
				return nil
			},
			func() {
				if !r.m.stopping() {
					r.on(ctx, stopSignal{})
				}
			},
			func() bool { return r.m.Phase == phaseStopped },
			func() string {
				return "every partition drained to the end it had when stop arrived; the stream completed"
			}},
	}
	for _, c := range controls {
		err := workflow.SetUpdateHandlerWithOptions(ctx, c.name,
			func(ctx workflow.Context) (ControlReply, error) {
				c.apply()
				r.wake.SendAsync(struct{}{})
				if err := workflow.Await(ctx, func() bool { return r.ending || c.done() }); err != nil {
					return ControlReply{}, err
				}
				msg := c.message()
				if r.ending && !c.done() {
					msg = "the run ended or continued as new before it took effect; stream status shows the state"
				}
				return r.controlReply(msg), nil
			},
			workflow.UpdateHandlerOptions{Validator: func(workflow.Context) error { return c.validate() }})
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *streamRun) controlReply(msg string) ControlReply {
	rep := ControlReply{State: r.m.state(), Message: msg, Offsets: []PartitionOffset{}}
	for _, p := range r.m.sortedParts() {
		rep.Offsets = append(rep.Offsets, PartitionOffset{Partition: p.Partition, NextOffset: p.NextOffset})
	}
	return rep
}

// leasesIdle reports whether no lease runs or is being cancelled.
func (r *streamRun) leasesIdle() bool {
	return !slices.ContainsFunc(r.m.Slots, func(s slot) bool { return s.State == slotRunning || s.State == slotCancelling })
}

// leasesStarted reports whether every slot runs a lease or waits after a
// failure (there is at least one slot).
func (r *streamRun) leasesStarted() bool {
	return len(r.m.Slots) > 0 && !slices.ContainsFunc(r.m.Slots, func(s slot) bool { return s.State != slotRunning && s.Failures == 0 })
}

func (r *streamRun) leasesFailing() bool {
	return slices.ContainsFunc(r.m.Slots, func(s slot) bool { return s.State != slotRunning && s.Failures > 0 })
}

package workflows

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

var (
	machineStart = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	machineNow   = machineStart.Add(time.Minute)
	errBroker    = errors.New("kafka: broker unreachable")
)

// machine is a listed stream of topic "t" in phase with one slot per
// state; slot i holds partition i (high watermark 100·(i+1)). Running and
// cancelling slots hold normal leases, backoff slots retry 2s after
// machineNow.
func machine(phase streamPhase, states ...slotState) streamMachine {
	m := newStreamMachine(StreamInput{Topic: "t", Leases: len(states)}, machineStart)
	m.Phase, m.Listed = phase, true
	for i, st := range states {
		s := slot{Index: i, Partitions: []int32{int32(i)}, State: st, Attempts: 1}
		if st == slotBackoff {
			s.Failures, s.RetryAt, s.LastEnd, s.LastError = 2, machineNow.Add(2*time.Second), leaseEndFailed, "boom"
		}
		m.Slots = append(m.Slots, s)
		hw := int64(100 * (i + 1))
		m.Parts[int32(i)] = activities.PartitionProgress{Partition: int32(i), HighWatermark: hw, Lag: hw}
	}
	m.LeaseAttempts = int64(len(states))
	return m
}

// with is m changed by change, m itself left as it was.
func with(m streamMachine, change func(m *streamMachine)) streamMachine {
	m = cloneMachine(m)
	change(&m)
	return m
}

func cloneMachine(m streamMachine) streamMachine {
	m.Slots = append([]slot(nil), m.Slots...)
	m.Parts = maps.Clone(m.Parts)
	m.DrainTo = maps.Clone(m.DrainTo)
	return m
}

// draining is a stopping stream whose drain targets are fixed (each
// partition's high watermark).
func draining(states ...slotState) streamMachine {
	return with(machine(phaseStopping, states...), func(m *streamMachine) {
		m.DrainTo = map[int32]int64{}
		for p, pp := range m.Parts {
			m.DrainTo[p] = pp.HighWatermark
		}
	})
}

func report(p int32, epoch, next int64) activities.PartitionProgress {
	return activities.PartitionProgress{Partition: p, Epoch: epoch, Consumed: true, NextOffset: next, HighWatermark: 500, Lag: 500 - next}
}

type transitionCase struct {
	name  string
	from  streamMachine
	event streamEvent
	// change turns a copy of from into the expected next state; nil when
	// the state stays as it was.
	change func(m *streamMachine)
	cmds   []command
	logs   []string // messages
}

func runTransitions(t *testing.T, cases []transitionCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := cloneMachine(tc.from)
			want := cloneMachine(tc.from)
			if tc.change != nil {
				tc.change(&want)
			}
			got, cmds, logs := tc.from.on(tc.event, machineNow)
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.cmds, cmds, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
			var msgs []string
			for _, l := range logs {
				msgs = append(msgs, l.Msg)
			}
			if diff := cmp.Diff(tc.logs, msgs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, tc.from, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("on changed the state it was given (-before +after):\n%s", diff)
			}
		})
	}
}

func TestStreamMachineSettle(t *testing.T) {
	t.Parallel()
	fresh := newStreamMachine(StreamInput{Topic: "t", Leases: 3}, machineStart)
	runTransitions(t, []transitionCase{
		{
			name: "a fresh stream lists the partitions", from: fresh, event: settle{},
			change: func(m *streamMachine) { m.List = listRunning },
			cmds:   []command{{Kind: cmdListPartitions}},
		},
		{
			name: "a paused stream lists the partitions too", from: with(fresh, func(m *streamMachine) { m.Phase = phasePaused }), event: settle{},
			change: func(m *streamMachine) { m.List = listRunning },
			cmds:   []command{{Kind: cmdListPartitions}},
		},
		{
			name: "nothing while the listing runs", from: with(fresh, func(m *streamMachine) { m.List = listRunning }), event: settle{},
		},
		{
			name: "nothing while the listing backs off", from: with(fresh, func(m *streamMachine) { m.List = listBackoff }), event: settle{},
		},
		{
			name: "running: a lease for each idle slot only", from: machine(phaseRunning, slotIdle, slotRunning, slotBackoff, slotCancelling, slotIdle), event: settle{},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].Attempts = slotRunning, 2
				m.Slots[4].State, m.Slots[4].Attempts = slotRunning, 2
				m.LeaseAttempts = 7
			},
			cmds: []command{{Kind: cmdStartLease, Slot: 0}, {Kind: cmdStartLease, Slot: 4}},
		},
		{
			name: "paused: no lease", from: machine(phasePaused, slotIdle, slotIdle), event: settle{},
		},
		{
			name: "stopping: the listing for the drain targets", from: machine(phaseStopping, slotIdle, slotCancelling), event: settle{},
			change: func(m *streamMachine) { m.List = listRunningForDrain },
			cmds:   []command{{Kind: cmdListPartitions}},
		},
		{
			name: "stopping: no drain lease while a cancelled lease commits", from: draining(slotIdle, slotCancelling), event: settle{},
		},
		{
			name: "stopping: a drain lease for each idle slot, up to its partitions' targets", from: draining(slotIdle, slotBackoff, slotDrained, slotIdle), event: settle{},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].Drain, m.Slots[0].Attempts = slotRunning, true, 2
				m.Slots[3].State, m.Slots[3].Drain, m.Slots[3].Attempts = slotRunning, true, 2
				m.LeaseAttempts = 6
			},
			cmds: []command{
				{Kind: cmdStartDrainLease, Slot: 0, DrainTo: map[int32]int64{0: 100}},
				{Kind: cmdStartDrainLease, Slot: 3, DrainTo: map[int32]int64{3: 400}},
			},
		},
		{
			name: "drain completion: every slot drained and nothing running", from: draining(slotDrained, slotDrained), event: settle{},
			change: func(m *streamMachine) { m.Phase = phaseStopped },
			cmds:   []command{{Kind: cmdComplete}},
		},
		{
			name: "no completion while a drain lease runs", from: with(draining(slotDrained, slotRunning), func(m *streamMachine) { m.Slots[1].Drain = true }), event: settle{},
		},
		{
			name: "cancelled: ends once nothing runs, backoff timers or not", from: with(machine(phaseRunning, slotIdle, slotBackoff), func(m *streamMachine) { m.Ending = endingCancelled }),
			event: settle{}, cmds: []command{{Kind: cmdEndCancelled}},
		},
		{
			name: "cancelled: waits for the cancelled leases", from: with(machine(phaseRunning, slotIdle, slotCancelling), func(m *streamMachine) { m.Ending = endingCancelled }),
			event: settle{},
		},
		{
			name: "cancelled: waits for the listing", from: with(fresh, func(m *streamMachine) { m.Ending, m.List = endingCancelled, listRunning }),
			event: settle{},
		},
		{
			name: "continuing as new: once nothing runs", from: with(machine(phasePaused, slotIdle, slotIdle), func(m *streamMachine) { m.Ending = endingContinueAsNew }),
			event: settle{}, cmds: []command{{Kind: cmdContinueAsNew}},
		},
		{
			name: "continuing as new: waits for the cancelled leases and starts none", from: with(machine(phaseRunning, slotIdle, slotCancelling), func(m *streamMachine) { m.Ending = endingContinueAsNew }),
			event: settle{},
		},
		{
			name: "cancellation outranks continue-as-new", from: with(machine(phaseRunning, slotIdle), func(m *streamMachine) { m.Ending = endingCancelled }),
			event: settle{}, cmds: []command{{Kind: cmdEndCancelled}},
		},
	})
}

func TestStreamMachineSignals(t *testing.T) {
	t.Parallel()
	runTransitions(t, []transitionCase{
		{
			name: "pause while running cancels the leases and the backoffs", from: machine(phaseRunning, slotRunning, slotBackoff, slotCancelling, slotIdle), event: pauseSignal{},
			change: func(m *streamMachine) {
				m.Phase = phasePaused
				m.Slots[0].State = slotCancelling
				m.Slots[1].State, m.Slots[1].RetryAt = slotIdle, time.Time{}
			},
			cmds: []command{{Kind: cmdCancelLease, Slot: 0}, {Kind: cmdCancelBackoff, Slot: 1}},
			logs: []string{"stream paused"},
		},
		{
			name: "pause while backing off keeps the failure count", from: machine(phaseRunning, slotBackoff), event: pauseSignal{},
			change: func(m *streamMachine) {
				m.Phase, m.Slots[0].State, m.Slots[0].RetryAt = phasePaused, slotIdle, time.Time{}
			},
			cmds: []command{{Kind: cmdCancelBackoff, Slot: 0}},
			logs: []string{"stream paused"},
		},
		{
			name: "pause while paused", from: machine(phasePaused, slotIdle), event: pauseSignal{},
			logs: []string{"stream paused"},
		},
		{
			name: "pause while stopping is ignored", from: draining(slotRunning, slotBackoff), event: pauseSignal{},
			logs: []string{"pause ignored: the stream is stopping"},
		},
		{
			name: "resume runs a paused stream", from: machine(phasePaused, slotIdle, slotCancelling), event: resumeSignal{},
			change: func(m *streamMachine) { m.Phase = phaseRunning },
			logs:   []string{"stream resumed"},
		},
		{
			name: "resume cuts the backoffs short", from: machine(phaseRunning, slotBackoff, slotRunning, slotBackoff), event: resumeSignal{},
			change: func(m *streamMachine) {
				for _, i := range []int{0, 2} {
					m.Slots[i].State, m.Slots[i].RetryAt, m.Slots[i].Failures = slotIdle, time.Time{}, 0
				}
			},
			cmds: []command{{Kind: cmdCancelBackoff, Slot: 0}, {Kind: cmdCancelBackoff, Slot: 2}},
			logs: []string{"stream resumed"},
		},
		{
			name: "resume while stopping is ignored", from: draining(slotBackoff), event: resumeSignal{},
			logs: []string{"resume ignored: the stream is stopping"},
		},
		{
			name: "stop while running cancels everything and resets the failures", from: machine(phaseRunning, slotRunning, slotBackoff), event: stopSignal{},
			change: func(m *streamMachine) {
				m.Phase = phaseStopping
				m.Slots[0].State = slotCancelling
				m.Slots[1].State, m.Slots[1].RetryAt, m.Slots[1].Failures = slotIdle, time.Time{}, 0
			},
			cmds: []command{{Kind: cmdCancelLease, Slot: 0}, {Kind: cmdCancelBackoff, Slot: 1}},
			logs: []string{"stream stopping: ending the leases, then draining"},
		},
		{
			name: "stop while paused remembers the pause", from: machine(phasePaused, slotIdle), event: stopSignal{},
			change: func(m *streamMachine) { m.Phase, m.PausedAtStop = phaseStopping, true },
			logs:   []string{"stream stopping: ending the leases, then draining"},
		},
		{
			name: "stop while stopping", from: draining(slotRunning), event: stopSignal{},
		},
		{
			name: "stop while continuing as new", from: with(machine(phaseRunning, slotCancelling), func(m *streamMachine) { m.Ending = endingContinueAsNew }), event: stopSignal{},
			change: func(m *streamMachine) { m.Phase = phaseStopping },
			logs:   []string{"stream stopping: ending the leases, then draining"},
		},
		{
			name:  "progress: the latest report per partition, stale epochs counted",
			from:  with(machine(phaseRunning, slotRunning), func(m *streamMachine) { m.Parts[0] = report(0, 5, 40) }),
			event: progressReported{Partitions: []activities.PartitionProgress{report(0, 4, 90), report(7, 1, 3)}},
			change: func(m *streamMachine) {
				m.StaleReports = 1
				m.Parts[7] = report(7, 1, 3)
				m.UpdatedAt = machineNow
			},
		},
		{
			name:  "progress: the problem of a running lease is booked",
			from:  machine(phaseRunning, slotRunning),
			event: progressReported{Slot: 0, Problem: "TimescaleDB: commit of 9 records pending for 5s"},
			change: func(m *streamMachine) {
				m.Slots[0].Problem = "TimescaleDB: commit of 9 records pending for 5s"
				m.UpdatedAt = machineNow
			},
			logs: []string{"stream lease held up"},
		},
		{
			name: "progress: a report without a problem clears the problem and the failures before it",
			from: with(machine(phaseRunning, slotRunning), func(m *streamMachine) {
				m.Slots[0].Problem, m.Slots[0].Failures, m.Slots[0].LastError = "Kafka: no answer", 2, "boom"
			}),
			event: progressReported{Slot: 0},
			change: func(m *streamMachine) {
				m.Slots[0].Problem, m.Slots[0].Failures = "", 0
				m.UpdatedAt = machineNow
			},
			logs: []string{"stream lease progressing again"},
		},
		{
			name:   "progress: a slot without a running lease keeps its failures",
			from:   with(machine(phaseRunning, slotBackoff), func(m *streamMachine) { m.Slots[0].Failures = 2 }),
			event:  progressReported{Slot: 0},
			change: func(m *streamMachine) { m.UpdatedAt = machineNow },
		},
	})
}

func TestStreamMachineLeaseEnds(t *testing.T) {
	t.Parallel()
	failed := func(m *streamMachine, i, failures int, delay time.Duration) {
		m.Slots[i].State, m.Slots[i].Drain, m.Slots[i].RetryAt = slotBackoff, false, machineNow.Add(delay)
		m.Slots[i].Failures, m.Slots[i].LastEnd, m.Slots[i].LastError = failures, leaseEndFailed, errBroker.Error()
		m.LeaseFailures++
		m.LastError, m.LastErrorAt = "lease 0 (partitions [0]): kafka: broker unreachable", machineNow
	}
	runTransitions(t, []transitionCase{
		{
			name:  "a clean end books the report and resets the failures",
			from:  with(machine(phaseRunning, slotRunning), func(m *streamMachine) { m.Slots[0].Failures, m.Slots[0].LastError = 3, "boom" }),
			event: leaseEnded{Slot: 0, Result: activities.LeaseResult{End: activities.LeaseEndDuration, Partitions: []activities.PartitionProgress{report(0, 2, 50)}}},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].Failures, m.Slots[0].LastError, m.Slots[0].LastEnd = slotIdle, 0, "", activities.LeaseEndDuration
				m.Parts[0], m.UpdatedAt = report(0, 2, 50), machineNow
			},
		},
		{
			name:  "a drain lease that reached its targets drains the slot",
			from:  with(draining(slotRunning), func(m *streamMachine) { m.Slots[0].Drain = true }),
			event: leaseEnded{Slot: 0, Result: activities.LeaseResult{End: activities.LeaseEndDrained}},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].Drain, m.Slots[0].LastEnd, m.UpdatedAt = slotDrained, false, activities.LeaseEndDrained, machineNow
			},
		},
		{
			name:  "a drain lease that ran out of time leaves the slot to drain again",
			from:  with(draining(slotRunning), func(m *streamMachine) { m.Slots[0].Drain = true }),
			event: leaseEnded{Slot: 0, Result: activities.LeaseResult{End: activities.LeaseEndDuration}},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].Drain, m.Slots[0].LastEnd, m.UpdatedAt = slotIdle, false, activities.LeaseEndDuration, machineNow
			},
		},
		{
			name: "a lease that ends draining without being a drain lease stays idle", from: machine(phaseStopping, slotCancelling),
			event: leaseEnded{Slot: 0, Result: activities.LeaseResult{End: activities.LeaseEndDrained}},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].LastEnd, m.UpdatedAt = slotIdle, activities.LeaseEndDrained, machineNow
			},
		},
		{
			name: "a cancelled lease that returns cancelled", from: with(machine(phasePaused, slotCancelling), func(m *streamMachine) {
				m.Slots[0].Failures, m.Slots[0].LastError = 2, "boom"
			}),
			event: leaseCancelled{Slot: 0, Err: temporal.NewCanceledError()},
			change: func(m *streamMachine) {
				m.Slots[0].State, m.Slots[0].Failures, m.Slots[0].LastEnd = slotIdle, 0, activities.LeaseEndCancelled
			},
		},
		{
			name: "a cancellation the workflow did not ask for is a failure", from: machine(phaseRunning, slotRunning),
			event: leaseCancelled{Slot: 0, Err: temporal.NewCanceledError()},
			change: func(m *streamMachine) {
				failed(m, 0, 1, time.Second)
				m.Slots[0].LastError = "canceled"
				m.LastError = "lease 0 (partitions [0]): canceled"
			},
			cmds: []command{{Kind: cmdStartBackoff, Slot: 0, Delay: time.Second}},
			logs: []string{"stream lease failed"},
		},
		{
			name: "a failure backs off 1s", from: machine(phaseRunning, slotRunning), event: leaseFailed{Slot: 0, Err: errBroker},
			change: func(m *streamMachine) { failed(m, 0, 1, time.Second) },
			cmds:   []command{{Kind: cmdStartBackoff, Slot: 0, Delay: time.Second}},
			logs:   []string{"stream lease failed"},
		},
		{
			name: "the third consecutive failure backs off 4s", from: with(machine(phaseRunning, slotRunning), func(m *streamMachine) { m.Slots[0].Failures = 2 }),
			event:  leaseFailed{Slot: 0, Err: errBroker},
			change: func(m *streamMachine) { failed(m, 0, 3, 4*time.Second) },
			cmds:   []command{{Kind: cmdStartBackoff, Slot: 0, Delay: 4 * time.Second}},
			logs:   []string{"stream lease failed"},
		},
		{
			name: "the backoff stops growing at 30s", from: with(machine(phaseRunning, slotRunning), func(m *streamMachine) { m.Slots[0].Failures = 9 }),
			event:  leaseFailed{Slot: 0, Err: errBroker},
			change: func(m *streamMachine) { failed(m, 0, 10, 30*time.Second) },
			cmds:   []command{{Kind: cmdStartBackoff, Slot: 0, Delay: 30 * time.Second}},
			logs:   []string{"stream lease failed"},
		},
		{
			name: "a lease that fails after a pause cancelled it is not restarted", from: machine(phasePaused, slotCancelling), event: leaseFailed{Slot: 0, Err: errBroker},
			change: func(m *streamMachine) {
				failed(m, 0, 1, 0)
				m.Slots[0].State, m.Slots[0].RetryAt = slotIdle, time.Time{}
			},
			logs: []string{"stream lease failed"},
		},
		{
			name: "a lease that fails after a stop cancelled it backs off", from: machine(phaseStopping, slotCancelling), event: leaseFailed{Slot: 0, Err: errBroker},
			change: func(m *streamMachine) { failed(m, 0, 1, time.Second) },
			cmds:   []command{{Kind: cmdStartBackoff, Slot: 0, Delay: time.Second}},
			logs:   []string{"stream lease failed"},
		},
		{
			name: "a failing drain lease backs off", from: with(draining(slotRunning), func(m *streamMachine) { m.Slots[0].Drain = true }), event: leaseFailed{Slot: 0, Err: errBroker},
			change: func(m *streamMachine) { failed(m, 0, 1, time.Second) },
			cmds:   []command{{Kind: cmdStartBackoff, Slot: 0, Delay: time.Second}},
			logs:   []string{"stream lease failed"},
		},
		{
			name: "the backoff ends", from: machine(phaseRunning, slotBackoff), event: backoffElapsed{Slot: 0},
			change: func(m *streamMachine) { m.Slots[0].State, m.Slots[0].RetryAt = slotIdle, time.Time{} },
		},
	})
}

func TestStreamMachineListing(t *testing.T) {
	t.Parallel()
	fresh := newStreamMachine(StreamInput{Topic: "t", Leases: 3}, machineStart)
	listing := func(n int32) activities.ListPartitionsResult {
		var res activities.ListPartitionsResult
		for p := range n {
			res.Partitions = append(res.Partitions, activities.PartitionProgress{Partition: p, HighWatermark: int64(p) + 1000, Lag: int64(p) + 1000})
		}
		return res
	}
	runTransitions(t, []transitionCase{
		{
			name: "the first listing deals the partitions round-robin", from: with(fresh, func(m *streamMachine) { m.List, m.ListFailures = listRunning, 2 }),
			event: partitionsListed{Result: listing(7)},
			change: func(m *streamMachine) {
				m.List, m.ListFailures, m.Listed, m.UpdatedAt = listIdle, 0, true, machineNow
				m.Slots = []slot{{Index: 0, Partitions: []int32{0, 3, 6}}, {Index: 1, Partitions: []int32{1, 4}}, {Index: 2, Partitions: []int32{2, 5}}}
				for _, p := range listing(7).Partitions {
					m.Parts[p.Partition] = p
				}
			},
		},
		{
			name: "fewer partitions than leases: one slot each", from: with(fresh, func(m *streamMachine) { m.List = listRunning }),
			event: partitionsListed{Result: listing(2)},
			change: func(m *streamMachine) {
				m.List, m.Listed, m.UpdatedAt = listIdle, true, machineNow
				m.Slots = []slot{{Index: 0, Partitions: []int32{0}}, {Index: 1, Partitions: []int32{1}}}
				for _, p := range listing(2).Partitions {
					m.Parts[p.Partition] = p
				}
			},
		},
		{
			name: "the listing at the start of a stop fixes the drain targets", from: with(machine(phaseStopping, slotIdle, slotIdle), func(m *streamMachine) { m.List = listRunningForDrain }),
			event: partitionsListed{Result: listing(2)},
			change: func(m *streamMachine) {
				m.List, m.UpdatedAt, m.DrainTo = listIdle, machineNow, map[int32]int64{0: 1000, 1: 1001}
				m.Parts[0], m.Parts[1] = listing(2).Partitions[0], listing(2).Partitions[1]
			},
			logs: []string{"stream draining"},
		},
		{
			name: "a first listing that ends after a stop fixes no target", from: with(fresh, func(m *streamMachine) { m.Phase, m.List = phaseStopping, listRunning }),
			event: partitionsListed{Result: listing(1)},
			change: func(m *streamMachine) {
				m.List, m.Listed, m.UpdatedAt = listIdle, true, machineNow
				m.Slots = []slot{{Index: 0, Partitions: []int32{0}}}
				m.Parts[0] = listing(1).Partitions[0]
			},
		},
		{
			name: "a failed listing retries after 1s", from: with(fresh, func(m *streamMachine) { m.List = listRunning }), event: listFailed{Err: errBroker},
			change: func(m *streamMachine) {
				m.List, m.ListFailures = listBackoff, 1
				m.LastError, m.LastErrorAt = "list partitions of t: kafka: broker unreachable", machineNow
				m.ListError = m.LastError
			},
			cmds: []command{{Kind: cmdStartListBackoff, Delay: time.Second}},
			logs: []string{"list partitions failed"},
		},
		{
			name: "a second failed listing retries after 2s", from: with(fresh, func(m *streamMachine) { m.List, m.ListFailures = listRunningForDrain, 1 }), event: listFailed{Err: errBroker},
			change: func(m *streamMachine) {
				m.List, m.ListFailures = listBackoff, 2
				m.LastError, m.LastErrorAt = "list partitions of t: kafka: broker unreachable", machineNow
				m.ListError = m.LastError
			},
			cmds: []command{{Kind: cmdStartListBackoff, Delay: 2 * time.Second}},
			logs: []string{"list partitions failed"},
		},
		{
			name: "the listing's backoff ends", from: with(fresh, func(m *streamMachine) { m.List = listBackoff }), event: listBackoffElapsed{},
			change: func(m *streamMachine) { m.List = listIdle },
		},
	})
}

func TestStreamMachineEndings(t *testing.T) {
	t.Parallel()
	runTransitions(t, []transitionCase{
		{
			name: "continue-as-new suggested while running ends the leases", from: machine(phaseRunning, slotRunning, slotBackoff, slotIdle), event: continueAsNewSuggested{},
			change: func(m *streamMachine) {
				m.Ending = endingContinueAsNew
				m.Slots[0].State = slotCancelling
				m.Slots[1].State, m.Slots[1].RetryAt = slotIdle, time.Time{}
			},
			cmds: []command{{Kind: cmdCancelLease, Slot: 0}, {Kind: cmdCancelBackoff, Slot: 1}},
			logs: []string{"continue-as-new suggested: ending the leases"},
		},
		{
			name: "continue-as-new suggested while paused", from: machine(phasePaused, slotIdle), event: continueAsNewSuggested{},
			change: func(m *streamMachine) { m.Ending = endingContinueAsNew },
			logs:   []string{"continue-as-new suggested: ending the leases"},
		},
		{
			name: "continue-as-new suggested while stopping is ignored", from: draining(slotRunning), event: continueAsNewSuggested{},
		},
		{
			name: "continue-as-new suggested again", from: with(machine(phaseRunning, slotCancelling), func(m *streamMachine) { m.Ending = endingContinueAsNew }),
			event: continueAsNewSuggested{},
		},
		{
			name: "continue-as-new suggested after a cancellation is ignored", from: with(machine(phaseRunning, slotCancelling), func(m *streamMachine) { m.Ending = endingCancelled }),
			event: continueAsNewSuggested{},
		},
		{
			name: "a cancellation ends the leases and the backoffs", from: machine(phaseRunning, slotRunning, slotBackoff, slotCancelling), event: workflowCancelled{},
			change: func(m *streamMachine) {
				m.Ending = endingCancelled
				m.Slots[0].State = slotCancelling
				m.Slots[1].State, m.Slots[1].RetryAt = slotIdle, time.Time{}
			},
			cmds: []command{{Kind: cmdCancelLease, Slot: 0}, {Kind: cmdCancelBackoff, Slot: 1}},
			logs: []string{"stream workflow cancelled: ending the leases"},
		},
		{
			name: "a cancellation while continuing as new", from: with(machine(phaseRunning, slotCancelling), func(m *streamMachine) { m.Ending = endingContinueAsNew }),
			event: workflowCancelled{}, change: func(m *streamMachine) { m.Ending = endingCancelled },
			logs: []string{"stream workflow cancelled: ending the leases"},
		},
		{
			name: "a cancellation seen again", from: with(machine(phaseRunning, slotCancelling), func(m *streamMachine) { m.Ending = endingCancelled }),
			event: workflowCancelled{},
		},
		{
			name: "a cancellation while draining", from: with(draining(slotRunning, slotDrained), func(m *streamMachine) { m.Slots[0].Drain = true }), event: workflowCancelled{},
			change: func(m *streamMachine) { m.Ending, m.Slots[0].State = endingCancelled, slotCancelling },
			cmds:   []command{{Kind: cmdCancelLease, Slot: 0}},
			logs:   []string{"stream workflow cancelled: ending the leases"},
		},
	})
}

// TestStreamMachineLifecycle drives one run through the machine alone:
// listing, leases, a failure, stop, the drain and the completion.
func TestStreamMachineLifecycle(t *testing.T) {
	t.Parallel()
	m := newStreamMachine(StreamInput{Topic: "t", Leases: 2}, machineStart)
	steps := []struct {
		event streamEvent
		cmds  []command
	}{
		{settle{}, []command{{Kind: cmdListPartitions}}},
		{partitionsListed{Result: activities.ListPartitionsResult{Partitions: []activities.PartitionProgress{{Partition: 0, HighWatermark: 10}, {Partition: 1, HighWatermark: 20}, {Partition: 2, HighWatermark: 30}}}}, nil},
		{settle{}, []command{{Kind: cmdStartLease, Slot: 0}, {Kind: cmdStartLease, Slot: 1}}},
		{leaseFailed{Slot: 1, Err: errBroker}, []command{{Kind: cmdStartBackoff, Slot: 1, Delay: time.Second}}},
		{settle{}, nil},
		{stopSignal{}, []command{{Kind: cmdCancelLease, Slot: 0}, {Kind: cmdCancelBackoff, Slot: 1}}},
		{settle{}, []command{{Kind: cmdListPartitions}}},
		{partitionsListed{Result: activities.ListPartitionsResult{Partitions: []activities.PartitionProgress{{Partition: 0, HighWatermark: 15}, {Partition: 1, HighWatermark: 25}, {Partition: 2, HighWatermark: 35}}}}, nil},
		{settle{}, nil}, // slot 0's cancelled lease is still committing
		{leaseCancelled{Slot: 0, Err: temporal.NewCanceledError()}, nil},
		{settle{}, []command{{Kind: cmdStartDrainLease, Slot: 0, DrainTo: map[int32]int64{0: 15, 2: 35}}, {Kind: cmdStartDrainLease, Slot: 1, DrainTo: map[int32]int64{1: 25}}}},
		{leaseEnded{Slot: 1, Result: activities.LeaseResult{End: activities.LeaseEndDrained}}, nil},
		{settle{}, nil},
		{leaseEnded{Slot: 0, Result: activities.LeaseResult{End: activities.LeaseEndDrained}}, nil},
		{settle{}, []command{{Kind: cmdComplete}}},
	}
	for i, s := range steps {
		var cmds []command
		m, cmds, _ = m.on(s.event, machineNow)
		if diff := cmp.Diff(s.cmds, cmds, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("step %d (%T) commands (-want +got):\n%s", i, s.event, diff)
		}
	}
	st := m.status("id", StreamInput{Topic: "t"})
	if st.State != StreamStopped || st.LeaseAttempts != 4 || st.LeaseFailures != 1 {
		t.Errorf("final status = %+v", st)
	}
}

func TestStreamMachineCarriesState(t *testing.T) {
	t.Parallel()
	lastErrorAt := machineStart.Add(time.Second)
	tests := []struct {
		name      string
		carried   StreamState
		wantPhase streamPhase
	}{
		{"running", StreamState{}, phaseRunning},
		{"paused", StreamState{Paused: true}, phasePaused},
		{"stopping", StreamState{Stopping: true}, phaseStopping},
		{"stopped while paused", StreamState{Paused: true, Stopping: true}, phaseStopping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			carried := tt.carried
			carried.LeaseAttempts, carried.LeaseFailures, carried.StaleReports, carried.Runs = 9, 2, 1, 4
			carried.LastError, carried.LastErrorAt, carried.StartedAt = "boom", lastErrorAt, machineStart
			carried.Partitions = []activities.PartitionProgress{report(0, 3, 30), report(1, 3, 31)}
			m := newStreamMachine(StreamInput{Topic: "t", Leases: 2, State: &carried}, machineNow)
			if m.Phase != tt.wantPhase || m.Runs != 5 || !m.StartedAt.Equal(machineStart) || !m.UpdatedAt.Equal(machineNow) {
				t.Errorf("phase %v, runs %d, started %v, updated %v", m.Phase, m.Runs, m.StartedAt, m.UpdatedAt)
			}
			want := carried
			want.Runs = 5
			if diff := cmp.Diff(want, m.carry()); diff != "" {
				t.Errorf("carried on (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLeaseOutcome(t *testing.T) {
	t.Parallel()
	res := activities.LeaseResult{Slot: 1, End: activities.LeaseEndDuration}
	canceled := temporal.NewCanceledError()
	tests := []struct {
		name string
		err  error
		want streamEvent
	}{
		{"ended", nil, leaseEnded{Slot: 1, Result: res}},
		{"cancelled", canceled, leaseCancelled{Slot: 1, Err: canceled}},
		{"failed", errBroker, leaseFailed{Slot: 1, Err: errBroker}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, leaseOutcome(1, res, tt.err), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStreamStatusFromMachine(t *testing.T) {
	t.Parallel()
	m := with(machine(phaseStopping, slotRunning, slotCancelling, slotBackoff), func(m *streamMachine) {
		m.Slots[0].Drain = true
		m.Slots[1].Drain = true
		for p := range int32(3) {
			pp := report(p, 1, 100)
			pp.Rate = 10
			m.Parts[p] = pp
		}
	})
	st := m.status("iot-stream-t", StreamInput{Topic: "t", TestMode: true})
	want := []LeaseStatus{
		{Slot: 0, Partitions: []int32{0}, Running: true, Drain: true, Attempts: 1},
		{Slot: 1, Partitions: []int32{1}, Running: true, Drain: true, Attempts: 1},
		{Slot: 2, Partitions: []int32{2}, Attempts: 1, Failures: 2, RetryAt: machineNow.Add(2 * time.Second), LastEnd: leaseEndFailed, LastError: "boom"},
	}
	if diff := cmp.Diff(want, st.Leases); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
	if want := []string{"lease 2 (partitions [2]): 2 failures in a row, last: boom"}; !slices.Equal(st.Problems, want) {
		t.Errorf("problems = %q, want %q", st.Problems, want)
	}
	held := with(m, func(m *streamMachine) {
		m.Slots[0].Problem = "Kafka: no answer"
		m.ListFailures, m.ListError = 1, "list partitions of t: x"
	})
	if got, want := held.status("iot-stream-t", StreamInput{Topic: "t"}).Problems, []string{
		"lease 0 (partitions [0]): Kafka: no answer", "lease 2 (partitions [2]): 2 failures in a row, last: boom",
		"1 listings failed in a row, last: list partitions of t: x",
	}; !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
	// Only partition 0's lease consumes: the cancelled one does not.
	if st.State != StreamStopping || !st.TestMode || st.MessagesPerSecond != 10 || st.Lag != 3*400 || st.Totals != (ingest.Counters{}) {
		t.Errorf("status = %+v", st)
	}
}

func TestStreamInputDefaults(t *testing.T) {
	t.Parallel()
	zero := time.Duration(0)
	tests := []struct {
		name string
		in   StreamInput
		want StreamInput
	}{
		{"zero values", StreamInput{}, StreamInput{Leases: ingest.DefaultLeases, LeaseDuration: ingest.DefaultLeaseDuration,
			HeartbeatTimeout: ingest.DefaultHeartbeatTimeout, AllowedLateness: ptr(ingest.DefaultAllowedLateness), Window: time.Minute}},
		{"negative values", StreamInput{Leases: -1, LeaseDuration: -time.Second, HeartbeatTimeout: -time.Second, Window: -time.Minute},
			StreamInput{Leases: ingest.DefaultLeases, LeaseDuration: ingest.DefaultLeaseDuration,
				HeartbeatTimeout: ingest.DefaultHeartbeatTimeout, AllowedLateness: ptr(ingest.DefaultAllowedLateness), Window: time.Minute}},
		{"set values, no lateness allowed", StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: time.Second, AllowedLateness: &zero, Window: 5 * time.Minute},
			StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: time.Second, AllowedLateness: ptr(time.Duration(0)), Window: 5 * time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, tt.in.withDefaults()); diff != "" {
				t.Errorf("withDefaults (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// relisting is m with periodic listings on and one running.
func relisting(m streamMachine) streamMachine {
	return with(m, func(m *streamMachine) { m.RelistEvery, m.List = partitionRelistInterval, listRunning })
}

// listed is a listing of partitions 0..n-1, partition p at high watermark
// 1000+p.
func listed(n int32) activities.ListPartitionsResult {
	var res activities.ListPartitionsResult
	for p := range n {
		res.Partitions = append(res.Partitions, activities.PartitionProgress{Partition: p, HighWatermark: 1000 + int64(p), Lag: 1000 + int64(p)})
	}
	return res
}

func TestStreamMachineRelist(t *testing.T) {
	t.Parallel()
	every := func(m streamMachine) streamMachine {
		return with(m, func(m *streamMachine) { m.RelistEvery = partitionRelistInterval })
	}
	// the known partitions of machine() after listed(n): the higher high
	// watermark, their offsets kept.
	relisted := func(m *streamMachine, known int32, res activities.ListPartitionsResult) {
		for _, l := range res.Partitions {
			p, ok := m.Parts[l.Partition]
			if !ok || l.Partition >= known {
				m.Parts[l.Partition] = l
				continue
			}
			p.HighWatermark = l.HighWatermark
			p.Lag = l.HighWatermark - p.NextOffset
			m.Parts[l.Partition] = p
		}
		m.List, m.UpdatedAt = listIdle, machineNow
	}
	runTransitions(t, []transitionCase{
		{
			name: "a listed stream arms the relist timer, then starts its leases", from: every(machine(phaseRunning, slotIdle)), event: settle{},
			change: func(m *streamMachine) {
				m.Relist = relistWaiting
				m.Slots[0].State, m.Slots[0].Attempts, m.LeaseAttempts = slotRunning, 2, 2
			},
			cmds: []command{{Kind: cmdStartRelistTimer, Delay: 30 * time.Second}, {Kind: cmdStartLease, Slot: 0}},
		},
		{
			name: "a paused stream arms it too", from: every(machine(phasePaused, slotIdle)), event: settle{},
			change: func(m *streamMachine) { m.Relist = relistWaiting },
			cmds:   []command{{Kind: cmdStartRelistTimer, Delay: 30 * time.Second}},
		},
		{
			name: "not while a listing runs", from: relisting(machine(phaseRunning, slotRunning)), event: settle{},
		},
		{
			name: "not while the timer runs", from: with(every(machine(phaseRunning, slotRunning)), func(m *streamMachine) { m.Relist = relistWaiting }), event: settle{},
		},
		{
			name: "not while stopping", from: every(draining(slotDrained, slotRunning)), event: settle{},
		},
		{
			name: "never without RelistEvery", from: machine(phaseRunning, slotRunning), event: settle{},
		},
		{
			name: "the timer elapses", from: with(every(machine(phaseRunning, slotRunning)), func(m *streamMachine) { m.Relist = relistWaiting }), event: relistElapsed{},
			change: func(m *streamMachine) { m.Relist = relistDue },
		},
		{
			name: "a timer that was not waited for changes nothing", from: every(machine(phaseRunning, slotRunning)), event: relistElapsed{},
		},
		{
			name: "due: the partitions are listed", from: with(every(machine(phaseRunning, slotRunning)), func(m *streamMachine) { m.Relist = relistDue }), event: settle{},
			change: func(m *streamMachine) { m.Relist, m.List = relistIdle, listRunning },
			cmds:   []command{{Kind: cmdListPartitions}},
		},
		{
			name: "due while paused: listed as well", from: with(every(machine(phasePaused, slotIdle)), func(m *streamMachine) { m.Relist = relistDue }), event: settle{},
			change: func(m *streamMachine) { m.Relist, m.List = relistIdle, listRunning },
			cmds:   []command{{Kind: cmdListPartitions}},
		},
		{
			name: "due while draining: no listing", from: with(every(draining(slotRunning)), func(m *streamMachine) { m.Relist, m.Slots[0].Drain = relistDue, true }), event: settle{},
		},
		{
			name: "due while the listing backs off: after the backoff", from: with(every(machine(phaseRunning, slotRunning)), func(m *streamMachine) { m.Relist, m.List = relistDue, listBackoff }), event: settle{},
		},
		{
			name: "same partitions: high watermarks refreshed, offsets and rates kept",
			from: with(relisting(machine(phaseRunning, slotRunning, slotRunning)), func(m *streamMachine) {
				p := report(1, 2, 40)
				p.Rate = 12.5
				m.Parts[1] = p
			}),
			event: partitionsListed{Result: listed(2)},
			change: func(m *streamMachine) {
				relisted(m, 2, listed(2))
			},
		},
		{
			name: "a listing never lowers a high watermark a lease saw",
			from: with(relisting(machine(phaseRunning, slotRunning)), func(m *streamMachine) {
				m.Parts[0] = report(0, 2, 40) // high watermark 500
			}),
			event:  partitionsListed{Result: activities.ListPartitionsResult{Partitions: []activities.PartitionProgress{{Partition: 0, HighWatermark: 450, Lag: 450}}}},
			change: func(m *streamMachine) { m.List, m.UpdatedAt = listIdle, machineNow },
		},
		{
			name: "added partitions go round-robin; the running lease whose set grew is restarted",
			from: relisting(machine(phaseRunning, slotRunning, slotIdle)), event: partitionsListed{Result: listed(4)},
			change: func(m *streamMachine) {
				relisted(m, 2, listed(4))
				m.Slots[0].Partitions, m.Slots[0].State = []int32{0, 2}, slotCancelling
				m.Slots[1].Partitions = []int32{1, 3}
			},
			cmds: []command{{Kind: cmdCancelLease, Slot: 0}},
			logs: []string{"partitions added"},
		},
		{
			name: "more slots, up to Leases: a new slot waits idle for the next settle",
			from: with(relisting(machine(phaseRunning, slotRunning, slotRunning)), func(m *streamMachine) { m.Leases = 3 }), event: partitionsListed{Result: listed(4)},
			change: func(m *streamMachine) {
				relisted(m, 2, listed(4))
				m.Slots[0].Partitions, m.Slots[0].State = []int32{0, 3}, slotCancelling
				m.Slots = append(m.Slots, slot{Index: 2, Partitions: []int32{2}})
			},
			cmds: []command{{Kind: cmdCancelLease, Slot: 0}},
			logs: []string{"partitions added"},
		},
		{
			name: "slots backing off, cancelling or paused get their partitions without a command",
			from: relisting(machine(phaseRunning, slotBackoff, slotCancelling)), event: partitionsListed{Result: listed(4)},
			change: func(m *streamMachine) {
				relisted(m, 2, listed(4))
				m.Slots[0].Partitions, m.Slots[1].Partitions = []int32{0, 2}, []int32{1, 3}
			},
			logs: []string{"partitions added"},
		},
		{
			name: "the drain listing deals added partitions before it fixes the targets",
			from: with(machine(phaseStopping, slotCancelling), func(m *streamMachine) {
				m.RelistEvery, m.List, m.Leases = partitionRelistInterval, listRunningForDrain, 2
			}),
			event: partitionsListed{Result: listed(3)},
			change: func(m *streamMachine) {
				for _, p := range listed(3).Partitions {
					m.Parts[p.Partition] = p
				}
				m.List, m.UpdatedAt = listIdle, machineNow
				m.Slots[0].Partitions = []int32{0, 2}
				m.Slots = append(m.Slots, slot{Index: 1, Partitions: []int32{1}})
				m.DrainTo = map[int32]int64{0: 1000, 1: 1001, 2: 1002}
			},
			logs: []string{"partitions added", "stream draining"},
		},
		{
			name: "a failed periodic listing is due again after its backoff", from: relisting(machine(phaseRunning, slotRunning)), event: listFailed{Err: errBroker},
			change: func(m *streamMachine) {
				m.List, m.ListFailures, m.Relist = listBackoff, 1, relistDue
				m.LastError, m.LastErrorAt = "list partitions of t: kafka: broker unreachable", machineNow
				m.ListError = m.LastError
			},
			cmds: []command{{Kind: cmdStartListBackoff, Delay: time.Second}},
			logs: []string{"list partitions failed"},
		},
	})
}

// TestStreamMachineAddedPartitionsLifecycle: partitions added to the topic
// are dealt by the next periodic listing; the lease whose set grew commits,
// ends and restarts with it, and a new slot starts at once.
func TestStreamMachineAddedPartitionsLifecycle(t *testing.T) {
	t.Parallel()
	m := newStreamMachine(StreamInput{Topic: "t", Leases: 3}, machineStart)
	m.RelistEvery = partitionRelistInterval
	steps := []struct {
		event streamEvent
		cmds  []command
	}{
		{settle{}, []command{{Kind: cmdListPartitions}}},
		{partitionsListed{Result: listed(2)}, nil},
		{settle{}, []command{{Kind: cmdStartRelistTimer, Delay: 30 * time.Second}, {Kind: cmdStartLease, Slot: 0}, {Kind: cmdStartLease, Slot: 1}}},
		{relistElapsed{}, nil},
		{settle{}, []command{{Kind: cmdListPartitions}}},
		{partitionsListed{Result: listed(4)}, []command{{Kind: cmdCancelLease, Slot: 0}}},
		{settle{}, []command{{Kind: cmdStartRelistTimer, Delay: 30 * time.Second}, {Kind: cmdStartLease, Slot: 2}}},
		{leaseCancelled{Slot: 0, Err: temporal.NewCanceledError()}, nil},
		{settle{}, []command{{Kind: cmdStartLease, Slot: 0}}},
	}
	for i, s := range steps {
		var cmds []command
		m, cmds, _ = m.on(s.event, machineNow)
		if diff := cmp.Diff(s.cmds, cmds, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("step %d (%T) commands (-want +got):\n%s", i, s.event, diff)
		}
	}
	st := m.status("id", StreamInput{Topic: "t"})
	want := []LeaseStatus{
		{Slot: 0, Partitions: []int32{0, 3}, Running: true, Attempts: 2, LastEnd: activities.LeaseEndCancelled},
		{Slot: 1, Partitions: []int32{1}, Running: true, Attempts: 1},
		{Slot: 2, Partitions: []int32{2}, Running: true, Attempts: 1},
	}
	if diff := cmp.Diff(want, st.Leases); diff != "" {
		t.Errorf("leases (-want +got):\n%s", diff)
	}
	if len(st.Partitions) != 4 || st.Partitions[3].HighWatermark != 1003 || st.Partitions[3].Consumed {
		t.Errorf("partitions = %+v, want 4, partition 3 not consumed at high watermark 1003", st.Partitions)
	}
}

// TestExtendDealIsTheRoundRobinOfAll: dealing added partitions to the
// slots dealt before gives the round-robin deal of all of them, and no
// partition changes slot.
func TestExtendDealIsTheRoundRobinOfAll(t *testing.T) {
	t.Parallel()
	ids := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(i)
		}
		return out
	}
	for leases := 1; leases <= 4; leases++ {
		for before := 0; before <= 7; before++ {
			for after := before; after <= 9; after++ {
				old := dealPartitions(ids(before), leases)
				oldCopy := slices.Clone(old)
				for i := range oldCopy {
					oldCopy[i].Partitions = slices.Clone(old[i].Partitions)
				}
				got, changed := extendDeal(old, ids(after), leases)
				if diff := cmp.Diff(dealPartitions(ids(after), leases), got, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("leases %d, %d → %d partitions (-round-robin of all +extended):\n%s", leases, before, after, diff)
				}
				if diff := cmp.Diff(oldCopy, old, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("leases %d, %d → %d partitions: the slots given changed:\n%s", leases, before, after, diff)
				}
				var want []int
				for i, s := range got {
					if i >= len(old) || len(s.Partitions) != len(old[i].Partitions) {
						want = append(want, i)
					}
				}
				if !cmp.Equal(want, changed, cmpopts.EquateEmpty()) {
					t.Fatalf("leases %d, %d → %d partitions: changed slots %v, want %v", leases, before, after, changed, want)
				}
			}
		}
	}
}

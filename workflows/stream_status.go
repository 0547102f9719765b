package workflows

import (
	"fmt"
	"slices"
	"sort"

	"github.com/iot-etl/iot-etl/activities"
)

// state is the stream's state as the status query reports it.
func (m streamMachine) state() string {
	switch m.Phase {
	case phaseStopped:
		return StreamStopped
	case phaseStopping:
		return StreamStopping
	case phasePaused:
		return StreamPaused
	}
	return StreamRunning
}

// status is the status query's answer (and the workflow's result) for the
// run workflowID of in.
func (m streamMachine) status(workflowID string, in StreamInput) StreamStatus {
	st := StreamStatus{
		WorkflowID: workflowID, Topic: in.Topic, State: m.state(),
		TestMode: in.TestMode, Debug: in.Debug, Window: in.Window, Partitions: m.sortedParts(), Leases: []LeaseStatus{},
		LeaseAttempts: m.LeaseAttempts, LeaseFailures: m.LeaseFailures,
		LastError: m.LastError, LastErrorAt: m.LastErrorAt, StaleReports: m.StaleReports,
		Runs: m.Runs, StartedAt: m.StartedAt, UpdatedAt: m.UpdatedAt,
	}
	// A partition has a rate only while a lease consumes it: not after its
	// lease was cancelled, whatever the lease last reported.
	consuming := map[int32]bool{}
	for _, s := range m.Slots {
		leased := s.State == slotRunning || s.State == slotCancelling
		st.Leases = append(st.Leases, LeaseStatus{
			Slot: s.Index, Partitions: slices.Clone(s.Partitions), Running: leased, Drain: leased && s.Drain,
			Attempts: s.Attempts, Failures: s.Failures, RetryAt: s.RetryAt, LastEnd: s.LastEnd, LastError: s.LastError,
			Problem: s.Problem,
		})
		switch {
		case s.Problem != "" && leased:
			st.Problems = append(st.Problems, fmt.Sprintf("lease %d (partitions %v): %s", s.Index, s.Partitions, s.Problem))
		case s.Failures > 0:
			st.Problems = append(st.Problems, fmt.Sprintf("lease %d (partitions %v): %d failures in a row, last: %s", s.Index, s.Partitions, s.Failures, s.LastError))
		}
		if s.State == slotRunning {
			for _, p := range s.Partitions {
				consuming[p] = true
			}
		}
	}
	if m.ListFailures > 0 {
		st.Problems = append(st.Problems, fmt.Sprintf("%d listings failed in a row, last: %s", m.ListFailures, m.ListError))
	}
	for i := range st.Partitions {
		p := &st.Partitions[i]
		if !consuming[p.Partition] {
			p.Rate = 0
		}
		st.MessagesPerSecond += p.Rate
		st.Totals.Add(p.Counters)
		st.Lag += p.Lag
	}
	return st
}

func (m streamMachine) sortedParts() []activities.PartitionProgress {
	out := make([]activities.PartitionProgress, 0, len(m.Parts))
	for _, p := range m.Parts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

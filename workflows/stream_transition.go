package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/activities"
)

// transition accumulates the next state and the commands and logs of one
// event.
type transition struct {
	m    streamMachine
	now  time.Time
	cmds []command
	logs []logLine
}

// on is the state after ev at now, with the commands to issue in order and
// what to log. m itself is left unchanged.
func (m streamMachine) on(ev streamEvent, now time.Time) (streamMachine, []command, []logLine) {
	m.Slots = append([]slot(nil), m.Slots...)
	t := &transition{m: m, now: now}
	switch ev := ev.(type) {
	case settle:
		t.settle()
	case workflowCancelled:
		if t.m.Ending != endingCancelled {
			t.info("stream workflow cancelled: ending the leases")
			t.m.Ending = endingCancelled
			t.cancelAll()
		}
	case continueAsNewSuggested:
		if t.m.Ending == endingNone && !t.m.stopping() {
			t.info("continue-as-new suggested: ending the leases")
			t.m.Ending = endingContinueAsNew
			t.cancelAll()
		}
	case stopSignal:
		t.stop()
	case pauseSignal:
		t.pause()
	case resumeSignal:
		t.resume()
	case progressReported:
		t.apply(ev.Partitions)
		t.reported(ev.Slot, ev.Problem)
	case leaseEnded:
		t.leaseEnded(ev.Slot, ev.Result)
	case leaseCancelled:
		t.leaseCancelled(ev.Slot, ev.Err)
	case leaseFailed:
		t.leaseFailed(ev.Slot, ev.Err)
	case backoffElapsed:
		if s := &t.m.Slots[ev.Slot]; s.State == slotBackoff {
			s.State, s.RetryAt = slotIdle, time.Time{}
		}
	case partitionsListed:
		t.partitionsListed(ev.Result)
	case listFailed:
		t.listFailed(ev.Err)
	case listBackoffElapsed:
		if t.m.List == listBackoff {
			t.m.List = listIdle
		}
	case relistElapsed:
		if t.m.Relist == relistWaiting {
			t.m.Relist = relistDue
		}
	default:
		panic(fmt.Sprintf("stream: unknown event %T", ev))
	}
	return t.m, t.cmds, t.logs
}

func (t *transition) issue(c command) { t.cmds = append(t.cmds, c) }

func (t *transition) info(msg string, attrs ...any) {
	t.logs = append(t.logs, logLine{Msg: msg, Attrs: attrs})
}

func (t *transition) warn(msg string, attrs ...any) {
	t.logs = append(t.logs, logLine{Warn: true, Msg: msg, Attrs: attrs})
}

// settle ends the run once nothing is outstanding (cancelled, continuing
// as new, or stopped with every slot drained), and otherwise starts what
// the phase asks for: the listing, leases for idle slots (running), drain
// leases (stopping).
func (t *transition) settle() {
	m := &t.m
	switch {
	case m.Ending == endingCancelled && m.idle():
		t.issue(command{Kind: cmdEndCancelled})
		return
	case m.Ending == endingContinueAsNew && m.idle():
		t.issue(command{Kind: cmdContinueAsNew})
		return
	case m.Ending != endingNone:
		return // wait for the leases to end
	}
	t.schedule()
	if m.stopping() && m.Listed && m.allDrained() && m.idle() {
		m.Phase = phaseStopped
		t.issue(command{Kind: cmdComplete})
	}
}

func (t *transition) schedule() {
	m := &t.m
	needList := !m.Listed || (m.stopping() && m.DrainTo == nil && m.List != listRunningForDrain) ||
		(m.Relist == relistDue && !m.stopping())
	if needList && m.List == listIdle {
		m.List = listRunning
		if m.stopping() {
			m.List = listRunningForDrain
		}
		if m.Relist == relistDue {
			m.Relist = relistIdle
		}
		t.issue(command{Kind: cmdListPartitions})
	}
	if !m.Listed {
		return
	}
	if m.RelistEvery > 0 && m.Relist == relistIdle && m.List == listIdle && !m.stopping() {
		m.Relist = relistWaiting
		t.issue(command{Kind: cmdStartRelistTimer, Delay: m.RelistEvery})
	}
	switch m.Phase {
	case phaseRunning:
		for i := range m.Slots {
			if m.Slots[i].State == slotIdle {
				t.startLease(i, false)
			}
		}
	case phaseStopping:
		if m.DrainTo == nil {
			return
		}
		for _, s := range m.Slots {
			if (s.State == slotRunning || s.State == slotCancelling) && !s.Drain {
				return // wait for the cancelled leases to commit and end
			}
		}
		for i := range m.Slots {
			if m.Slots[i].State == slotIdle {
				t.startLease(i, true)
			}
		}
	}
}

func (t *transition) startLease(i int, drain bool) {
	s := &t.m.Slots[i]
	s.State, s.Drain = slotRunning, drain
	s.Attempts++
	t.m.LeaseAttempts++
	if !drain {
		t.issue(command{Kind: cmdStartLease, Slot: i})
		return
	}
	to := make(map[int32]int64, len(s.Partitions))
	for _, p := range s.Partitions {
		to[p] = t.m.DrainTo[p]
	}
	t.issue(command{Kind: cmdStartDrainLease, Slot: i, DrainTo: to})
}

// cancelAll cancels every running lease (each commits its open batch and
// returns) and every backoff timer.
func (t *transition) cancelAll() {
	for i := range t.m.Slots {
		switch s := &t.m.Slots[i]; s.State {
		case slotRunning:
			s.State = slotCancelling
			t.issue(command{Kind: cmdCancelLease, Slot: i})
		case slotBackoff:
			t.cancelBackoff(i)
		}
	}
}

func (t *transition) cancelBackoff(i int) {
	s := &t.m.Slots[i]
	s.State, s.RetryAt = slotIdle, time.Time{}
	t.issue(command{Kind: cmdCancelBackoff, Slot: i})
}

func (t *transition) stop() {
	if t.m.stopping() {
		return
	}
	t.info("stream stopping: ending the leases, then draining")
	t.m.PausedAtStop = t.m.Phase == phasePaused
	t.m.Phase = phaseStopping
	t.cancelAll()
	for i := range t.m.Slots {
		t.m.Slots[i].Failures = 0
	}
}

func (t *transition) pause() {
	if t.m.stopping() {
		t.info("pause ignored: the stream is stopping")
		return
	}
	t.info("stream paused")
	t.m.Phase = phasePaused
	t.cancelAll()
}

// resume runs the stream again and, as an operator's decision, also cuts
// every backoff short.
func (t *transition) resume() {
	if t.m.stopping() {
		t.info("resume ignored: the stream is stopping")
		return
	}
	t.info("stream resumed")
	t.m.Phase = phaseRunning
	for i := range t.m.Slots {
		if t.m.Slots[i].State == slotBackoff {
			t.cancelBackoff(i)
		}
		t.m.Slots[i].Failures = 0
	}
}

// apply keeps the latest report per partition, ignoring reports of an
// older lease epoch than one already seen (a superseded lease).
func (t *transition) apply(reports []activities.PartitionProgress) {
	if len(reports) > 0 {
		t.m.Parts = maps.Clone(t.m.Parts)
	}
	for _, p := range reports {
		if cur, ok := t.m.Parts[p.Partition]; ok && p.Epoch < cur.Epoch {
			t.m.StaleReports++
			continue
		}
		t.m.Parts[p.Partition] = p
	}
	t.m.UpdatedAt = t.now
}

// reported books what a running lease says holds it up. A report without
// a problem means the slot works again: its failures are behind it.
func (t *transition) reported(i int, problem string) {
	if i < 0 || i >= len(t.m.Slots) || t.m.Slots[i].State != slotRunning {
		return
	}
	s := &t.m.Slots[i]
	if problem != "" && s.Problem == "" {
		t.warn("stream lease held up", "slot", s.Index, "problem", problem)
	}
	if problem == "" && (s.Problem != "" || s.Failures > 0) {
		t.info("stream lease progressing again", "slot", s.Index, "after_failures", s.Failures)
		s.Failures = 0
	}
	s.Problem = problem
}

func (t *transition) leaseEnded(i int, res activities.LeaseResult) {
	s := &t.m.Slots[i]
	drain := s.Drain
	s.State, s.Drain = slotIdle, false
	t.apply(res.Partitions)
	s.LastEnd, s.Failures, s.LastError, s.Problem = res.End, 0, "", ""
	if drain && res.End == activities.LeaseEndDrained {
		s.State = slotDrained
	}
}

// leaseCancelled books the end of a lease the workflow cancelled; any
// other cancellation is a failure.
func (t *transition) leaseCancelled(i int, err error) {
	s := &t.m.Slots[i]
	if s.State != slotCancelling {
		t.leaseFailed(i, err)
		return
	}
	s.State, s.Drain, s.Problem = slotIdle, false, ""
	s.LastEnd, s.Failures = activities.LeaseEndCancelled, 0
}

// leaseFailed books a failure and arms the slot's backoff timer, unless
// the workflow had cancelled the lease to pause or continue as new: then
// nothing is to restart.
func (t *transition) leaseFailed(i int, err error) {
	s := &t.m.Slots[i]
	cancelled := s.State == slotCancelling
	s.State, s.Drain, s.Problem = slotIdle, false, ""
	s.Failures++
	s.LastEnd, s.LastError = leaseEndFailed, causeOf(err)
	t.m.LeaseFailures++
	t.m.LastError = fmt.Sprintf("lease %d (partitions %v): %s", s.Index, s.Partitions, s.LastError)
	t.m.LastErrorAt = t.now
	t.warn("stream lease failed", "slot", s.Index, "partitions", s.Partitions, "consecutive_failures", s.Failures, "error", err)
	if cancelled && !t.m.stopping() {
		return
	}
	delay := leaseBackoff(s.Failures)
	s.State, s.RetryAt = slotBackoff, t.now.Add(delay)
	t.issue(command{Kind: cmdStartBackoff, Slot: i, Delay: delay})
}

// partitionsListed books a listing: the first deals the slots, the one at
// the start of a stop fixes the drain targets, and (RelistEvery set) any
// listing deals the partitions added since.
func (t *transition) partitionsListed(res activities.ListPartitionsResult) {
	m := &t.m
	forDrain := m.List == listRunningForDrain
	m.List, m.ListFailures, m.ListError = listIdle, 0, ""
	ids := make([]int32, 0, len(res.Partitions))
	for _, p := range res.Partitions {
		ids = append(ids, p.Partition)
	}
	switch {
	case !m.Listed:
		t.apply(res.Partitions)
		m.Slots, m.Listed = dealPartitions(ids, m.Leases), true
	case forDrain || m.RelistEvery == 0:
		t.apply(res.Partitions)
	default:
		t.applyListing(res.Partitions)
	}
	if m.Listed && m.RelistEvery > 0 {
		t.dealAdded(ids)
	}
	if forDrain && m.stopping() {
		m.DrainTo = make(map[int32]int64, len(res.Partitions))
		for _, p := range res.Partitions {
			m.DrainTo[p.Partition] = p.HighWatermark
		}
		t.info("stream draining", "to", m.DrainTo)
	}
}

// applyListing books a periodic listing: the high watermarks of the known
// partitions (their offsets and rates come from the leases, fresher), and
// whole the partitions not known yet.
func (t *transition) applyListing(listed []activities.PartitionProgress) {
	t.m.Parts = maps.Clone(t.m.Parts)
	for _, l := range listed {
		p, ok := t.m.Parts[l.Partition]
		if !ok {
			t.m.Parts[l.Partition] = l
			continue
		}
		p.HighWatermark = max(p.HighWatermark, l.HighWatermark)
		p.Lag = max(p.HighWatermark-p.NextOffset, 0)
		t.m.Parts[l.Partition] = p
	}
	t.m.UpdatedAt = t.now
}

// dealAdded deals the listed partitions no slot holds yet (partitions added
// to the topic) and restarts the running leases of the slots that got
// some: each commits its open batch and ends, and the next lease of the
// slot consumes the new set. New partitions start at their committed
// offset, 0 when they have none.
func (t *transition) dealAdded(ids []int32) {
	m := &t.m
	slots, changed := extendDeal(m.Slots, ids, m.Leases)
	if len(changed) == 0 {
		return
	}
	m.Slots = slots
	t.info("partitions added", "slots", changed, "partitions", slotPartitions(slots))
	for _, i := range changed {
		if s := &m.Slots[i]; s.State == slotRunning && !s.Drain {
			s.State = slotCancelling
			t.issue(command{Kind: cmdCancelLease, Slot: i})
		}
	}
}

func slotPartitions(slots []slot) [][]int32 {
	out := make([][]int32, len(slots))
	for i, s := range slots {
		out[i] = s.Partitions
	}
	return out
}

func (t *transition) listFailed(err error) {
	m := &t.m
	if m.Listed && m.List == listRunning {
		m.Relist = relistDue // a periodic listing: again after the backoff
	}
	m.ListFailures++
	m.ListError = fmt.Sprintf("list partitions of %s: %s", m.Topic, causeOf(err))
	m.LastError = m.ListError
	m.LastErrorAt = t.now
	t.warn("list partitions failed", "error", err)
	m.List = listBackoff
	t.issue(command{Kind: cmdStartListBackoff, Delay: leaseBackoff(m.ListFailures)})
}

// dealPartitions deals the (ascending) partitions round-robin to
// min(leases, partitions) slots.
func dealPartitions(ids []int32, leases int) []slot {
	n := min(leases, len(ids))
	slots := make([]slot, n)
	for i := range slots {
		slots[i].Index = i
	}
	for i, p := range ids {
		slots[i%n].Partitions = append(slots[i%n].Partitions, p)
	}
	return slots
}

// extendDeal deals the partitions of ids that no slot holds to the slots,
// continuing the round-robin of dealPartitions over all of them: slots are
// added up to leases, and no partition leaves its slot. Kafka only adds
// partitions, with ids above the existing ones, so the result is the deal
// dealPartitions makes of all of them. It returns the slots (a new slice,
// slots itself unchanged) and the indexes of those that got partitions.
func extendDeal(slots []slot, ids []int32, leases int) ([]slot, []int) {
	held := map[int32]bool{}
	for _, s := range slots {
		for _, p := range s.Partitions {
			held[p] = true
		}
	}
	var added []int32
	for _, p := range ids {
		if !held[p] {
			held[p] = true
			added = append(added, p)
		}
	}
	if len(added) == 0 {
		return slots, nil
	}
	slices.Sort(added)
	dealt := len(held) - len(added)
	n := max(len(slots), min(leases, len(held)))
	out := slices.Clone(slots)
	for len(out) < n {
		out = append(out, slot{Index: len(out)})
	}
	var changed []int
	for k, p := range added {
		i := (dealt + k) % n
		out[i].Partitions = append(slices.Clip(out[i].Partitions), p)
		slices.Sort(out[i].Partitions)
		if !slices.Contains(changed, i) {
			changed = append(changed, i)
		}
	}
	slices.Sort(changed)
	return out, changed
}

// leaseBackoff is 1s, 2s, 4s, … up to 30s for the n-th consecutive failure.
func leaseBackoff(n int) time.Duration {
	d := leaseBackoffInitial
	for i := 1; i < n && d < leaseBackoffMax; i++ {
		d *= 2
	}
	return min(d, leaseBackoffMax)
}

// causeOf is what operators need of an activity failure: its cause, without
// the activity error's envelope of event ids.
func causeOf(err error) string {
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) {
		if cause := errors.Unwrap(actErr); cause != nil {
			return cause.Error()
		}
	}
	return err.Error()
}

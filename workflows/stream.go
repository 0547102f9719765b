package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/store"
)

// Names operators, the starter and the Temporal CLI/UI use.
const (
	StreamWorkflowName  = "StreamIngestWorkflow"
	QueryStatus         = "status"
	SignalPause         = "pause"
	SignalResume        = "resume"
	SignalStop          = "stop"
	SignalLeaseProgress = activities.SignalLeaseProgress
)

// Stream states, as the status query reports them.
const (
	StreamRunning  = "running"
	StreamPaused   = "paused"
	StreamStopping = "stopping"
	StreamStopped  = "stopped"
)

// Defaults of StreamInput's zero values, and the lease supervision policy.
const (
	DefaultLeases                = 3
	DefaultLeaseDuration         = 5 * time.Minute
	DefaultLeaseHeartbeatTimeout = 10 * time.Second
	DefaultAllowedLateness       = 10 * time.Minute

	// leaseMargin is added to the lease duration for StartToClose: the time
	// a lease has to commit its open batch and return after its duration.
	leaseMargin = time.Minute
	// A failed lease slot is restarted after 1s, doubling per consecutive
	// failure up to 30s; a clean end resets it.
	leaseBackoffInitial = time.Second
	leaseBackoffMax     = 30 * time.Second
)

// StreamWorkflowID is the stable workflow id of the stream of a topic: one
// stream per topic.
func StreamWorkflowID(topic string) string { return "iot-stream-" + topic }

// StreamInput is the single input of StreamIngestWorkflow. Zero values mean
// the defaults above (batch bounds: the worker's configuration).
type StreamInput struct {
	Topic string `json:"topic"`
	// Leases is how many consumer leases share the partitions, at most one
	// per partition.
	Leases           int           `json:"leases,omitempty"`
	LeaseDuration    time.Duration `json:"lease_duration,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	MaxBatchRecords  int           `json:"max_batch_records,omitempty"`
	MaxBatchWait     time.Duration `json:"max_batch_wait,omitempty"`
	// AllowedLateness: nil means DefaultAllowedLateness (0 is a valid
	// setting: no lateness allowed).
	AllowedLateness *time.Duration `json:"allowed_lateness,omitempty"`
	// ProgressEvery is the lease-progress interval; 0 means 5s.
	ProgressEvery time.Duration `json:"progress_every,omitempty"`
	// Debug echoes decoded records to the worker log. TestMode decodes and
	// logs but writes nothing and never advances the offsets.
	Debug    bool `json:"debug,omitempty"`
	TestMode bool `json:"test_mode,omitempty"`
	// State is carried over by Continue-As-New; nil for a fresh start.
	State *StreamState `json:"state,omitempty"`
}

// StreamState is what one run hands to the next through Continue-As-New.
type StreamState struct {
	Paused        bool                           `json:"paused"`
	Stopping      bool                           `json:"stopping"`
	LeaseAttempts int64                          `json:"lease_attempts"`
	LeaseFailures int64                          `json:"lease_failures"`
	LastError     string                         `json:"last_error,omitempty"`
	LastErrorAt   time.Time                      `json:"last_error_at,omitzero"`
	Partitions    []activities.PartitionProgress `json:"partitions,omitempty"`
	StaleReports  int64                          `json:"stale_reports"`
	Runs          int                            `json:"runs"` // Continue-As-New generations so far
	StartedAt     time.Time                      `json:"started_at"`
}

// LeaseStatus is one lease slot in the status query.
type LeaseStatus struct {
	Slot       int       `json:"slot"`
	Partitions []int32   `json:"partitions"`
	Running    bool      `json:"running"`
	Drain      bool      `json:"drain,omitempty"`
	Attempts   int64     `json:"attempts"`
	Failures   int       `json:"consecutive_failures"`
	RetryAt    time.Time `json:"retry_at,omitzero"`
	LastEnd    string    `json:"last_end,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
}

// StreamStatus is what the status query (and the workflow result) returns.
type StreamStatus struct {
	WorkflowID string `json:"workflow_id"`
	Topic      string `json:"topic"`
	State      string `json:"state"`
	TestMode   bool   `json:"test_mode,omitempty"`
	Debug      bool   `json:"debug,omitempty"`
	// Partitions are ascending; a partition never consumed has
	// Consumed=false, NextOffset 0 and Lag = its high watermark.
	Partitions        []activities.PartitionProgress `json:"partitions"`
	Leases            []LeaseStatus                  `json:"leases"`
	MessagesPerSecond float64                        `json:"messages_per_second"`
	Totals            store.StreamCounters           `json:"totals"`
	Lag               int64                          `json:"lag"`
	LeaseAttempts     int64                          `json:"lease_attempts"`
	LeaseFailures     int64                          `json:"lease_failures"`
	LastError         string                         `json:"last_error,omitempty"`
	LastErrorAt       time.Time                      `json:"last_error_at,omitzero"`
	StaleReports      int64                          `json:"stale_reports"`
	Runs              int                            `json:"runs"`
	StartedAt         time.Time                      `json:"started_at"`
	UpdatedAt         time.Time                      `json:"updated_at"`
}

// leaseSlot is one lease slot: a fixed set of partitions and the lease (or
// the backoff timer) currently running for it.
type leaseSlot struct {
	index      int
	partitions []int32

	future     workflow.Future
	cancel     workflow.CancelFunc
	cancelling bool
	drain      bool // the running lease is a drain lease

	timer       workflow.Future
	timerCancel workflow.CancelFunc
	retryAt     time.Time

	attempts  int64
	failures  int
	drained   bool
	lastEnd   string
	lastError string
}

// streamRun is the state of one StreamIngestWorkflow execution.
type streamRun struct {
	in    StreamInput
	st    StreamState
	info  *workflow.Info
	parts map[int32]activities.PartitionProgress
	slots []*leaseSlot

	listed       bool // partitions listed and slots dealt
	list         workflow.Future
	listForDrain bool
	listTimer    workflow.Future
	listFailures int
	drainTo      map[int32]int64

	wantContinue bool
	cancelled    bool
	stopped      bool // drained: the workflow completes
	updatedAt    time.Time
}

// StreamIngestWorkflow supervises the consumer leases of one topic: it lists
// the partitions, deals them round-robin to min(Leases, partitions) lease
// slots and keeps one lease running per slot, restarting leases as they end
// or fail. Operators pause, resume and stop it with signals and read its
// status with a query; it continues as new when the history grows large,
// carrying its state. See docs/stream.md.
func StreamIngestWorkflow(ctx workflow.Context, in StreamInput) (*StreamStatus, error) {
	if in.Topic == "" {
		return nil, temporal.NewNonRetryableApplicationError("topic is required", "InvalidInput", nil)
	}
	r := &streamRun{in: in.withDefaults(), info: workflow.GetInfo(ctx), parts: map[int32]activities.PartitionProgress{}}
	if in.State != nil {
		r.st = *in.State
		r.st.Runs++
		for _, p := range in.State.Partitions {
			r.parts[p.Partition] = p
		}
	} else {
		r.st.StartedAt = workflow.Now(ctx)
	}
	r.in.State = nil
	r.updatedAt = workflow.Now(ctx)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (StreamStatus, error) { return r.status(), nil }); err != nil {
		return nil, err
	}
	workflow.GetLogger(ctx).Info("stream started", "topic", r.in.Topic, "leases", r.in.Leases, "paused", r.st.Paused,
		"stopping", r.st.Stopping, "runs", r.st.Runs, "test_mode", r.in.TestMode)
	return r.loop(ctx)
}

func (in StreamInput) withDefaults() StreamInput {
	if in.Leases <= 0 {
		in.Leases = DefaultLeases
	}
	if in.LeaseDuration <= 0 {
		in.LeaseDuration = DefaultLeaseDuration
	}
	if in.HeartbeatTimeout <= 0 {
		in.HeartbeatTimeout = DefaultLeaseHeartbeatTimeout
	}
	if in.AllowedLateness == nil {
		d := DefaultAllowedLateness
		in.AllowedLateness = &d
	}
	return in
}

// signals are the control and progress channels.
type signals struct {
	stop, pause, resume, progress workflow.ReceiveChannel
}

func (r *streamRun) loop(ctx workflow.Context) (*StreamStatus, error) {
	sig := signals{
		stop:     workflow.GetSignalChannel(ctx, SignalStop),
		pause:    workflow.GetSignalChannel(ctx, SignalPause),
		resume:   workflow.GetSignalChannel(ctx, SignalResume),
		progress: workflow.GetSignalChannel(ctx, SignalLeaseProgress),
	}
	selCtx := ctx
	for {
		if ctx.Err() != nil && !r.cancelled {
			// The workflow itself was cancelled: the leases are cancelled
			// with it; wait for them to commit and end, on a context that
			// is not cancelled, then end as cancelled.
			workflow.GetLogger(ctx).Info("stream workflow cancelled: ending the leases")
			r.cancelled = true
			r.cancelAll()
			selCtx, _ = workflow.NewDisconnectedContext(ctx)
		}
		if r.cancelled && r.idle() {
			return nil, temporal.NewCanceledError("stream workflow cancelled")
		}
		if !r.cancelled && !r.wantContinue && !r.st.Stopping && workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			workflow.GetLogger(ctx).Info("continue-as-new suggested: ending the leases")
			r.wantContinue = true
			r.cancelAll()
		}
		if r.wantContinue && r.idle() {
			return nil, r.continueAsNew(ctx, sig)
		}
		r.schedule(ctx)
		if r.st.Stopping && r.listed && r.allDrained() && r.idle() {
			r.stopped = true
			status := r.status()
			workflow.GetLogger(ctx).Info("stream stopped", "records", status.Totals.Records, "inserted", status.Totals.Inserted)
			return &status, nil
		}

		// The order of the cases is the order pending signals are handled
		// in (Temporal does not keep the order across signal names): stop,
		// pause, then resume, so a pause and a resume that arrive together
		// leave the stream running.
		sel := workflow.NewSelector(selCtx)
		if !r.cancelled {
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		}
		sel.AddReceive(sig.stop, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.onStop(ctx) })
		sel.AddReceive(sig.pause, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.onPause(ctx) })
		sel.AddReceive(sig.resume, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.onResume(ctx) })
		sel.AddReceive(sig.progress, func(c workflow.ReceiveChannel, _ bool) {
			var p activities.LeaseProgress
			c.Receive(ctx, &p)
			r.apply(ctx, p.Partitions)
		})
		for _, s := range r.slots {
			s := s
			if s.future != nil {
				sel.AddFuture(s.future, func(f workflow.Future) {
					var res activities.LeaseResult
					err := f.Get(selCtx, &res)
					r.leaseEnded(ctx, s, res, err)
				})
			}
			if s.timer != nil {
				sel.AddFuture(s.timer, func(workflow.Future) { s.timer, s.timerCancel, s.retryAt = nil, nil, time.Time{} })
			}
		}
		if r.list != nil {
			sel.AddFuture(r.list, func(f workflow.Future) {
				var res activities.ListPartitionsResult
				r.partitionsListed(ctx, res, f.Get(selCtx, &res))
			})
		}
		if r.listTimer != nil {
			sel.AddFuture(r.listTimer, func(workflow.Future) { r.listTimer = nil })
		}
		sel.Select(ctx)
	}
}

// idle reports whether no activity of this run is outstanding.
func (r *streamRun) idle() bool {
	if r.list != nil {
		return false
	}
	for _, s := range r.slots {
		if s.future != nil {
			return false
		}
	}
	return true
}

func (r *streamRun) allDrained() bool {
	for _, s := range r.slots {
		if !s.drained {
			return false
		}
	}
	return true
}

// schedule starts what the state asks for: the partition listing, leases
// for idle slots (running), drain leases (stopping).
func (r *streamRun) schedule(ctx workflow.Context) {
	if r.wantContinue || r.cancelled {
		return
	}
	needList := !r.listed || (r.st.Stopping && r.drainTo == nil && !r.listForDrain)
	if needList && r.list == nil && r.listTimer == nil {
		var a *activities.Stream
		r.listForDrain = r.st.Stopping
		r.list = workflow.ExecuteActivity(listOptions(ctx), a.ListPartitions, activities.ListPartitionsInput{Topic: r.in.Topic})
	}
	if !r.listed {
		return
	}
	switch {
	case r.st.Stopping:
		if r.drainTo == nil {
			return
		}
		for _, s := range r.slots {
			if s.future != nil && !s.drain {
				return // wait for the cancelled leases to commit and end
			}
		}
		for _, s := range r.slots {
			if !s.drained && s.future == nil && s.timer == nil {
				r.startLease(ctx, s, true)
			}
		}
	case r.st.Paused:
	default:
		for _, s := range r.slots {
			if s.future == nil && s.timer == nil {
				r.startLease(ctx, s, false)
			}
		}
	}
}

func (r *streamRun) startLease(ctx workflow.Context, s *leaseSlot, drain bool) {
	var a *activities.Stream
	in := activities.LeaseInput{
		Topic: r.in.Topic, Slot: s.index, Partitions: s.partitions, Duration: r.in.LeaseDuration,
		MaxBatchRecords: r.in.MaxBatchRecords, MaxBatchWait: r.in.MaxBatchWait, AllowedLateness: *r.in.AllowedLateness,
		Debug: r.in.Debug, TestMode: r.in.TestMode, ProgressEvery: r.in.ProgressEvery,
	}
	if drain {
		in.DrainTo = map[int32]int64{}
		for _, p := range s.partitions {
			in.DrainTo[p] = r.drainTo[p]
		}
	}
	lctx, cancel := workflow.WithCancel(ctx)
	s.future = workflow.ExecuteActivity(leaseOptions(lctx, r.in), a.ConsumeLease, in)
	s.cancel, s.cancelling, s.drain = cancel, false, drain
	s.attempts++
	r.st.LeaseAttempts++
}

// leaseEnded books the end of a slot's lease and, after a failure that was
// not caused by our own cancellation, arms the slot's backoff timer.
func (r *streamRun) leaseEnded(ctx workflow.Context, s *leaseSlot, res activities.LeaseResult, err error) {
	cancelled, drain := s.cancelling, s.drain
	s.future, s.cancel, s.cancelling, s.drain = nil, nil, false, false
	if err == nil {
		r.apply(ctx, res.Partitions)
		s.lastEnd, s.failures, s.lastError = res.End, 0, ""
		if drain && res.End == activities.LeaseEndDrained {
			s.drained = true
		}
		return
	}
	if cancelled && temporal.IsCanceledError(err) {
		s.lastEnd, s.failures = activities.LeaseEndCancelled, 0
		return
	}
	s.failures++
	s.lastEnd, s.lastError = "failed", causeOf(err)
	r.st.LeaseFailures++
	r.st.LastError = fmt.Sprintf("lease %d (partitions %v): %s", s.index, s.partitions, s.lastError)
	r.st.LastErrorAt = workflow.Now(ctx)
	workflow.GetLogger(ctx).Warn("stream lease failed", "slot", s.index, "partitions", s.partitions, "consecutive_failures", s.failures, "error", err)
	if cancelled && !r.st.Stopping {
		return // paused or continuing as new: nothing to restart
	}
	delay := leaseBackoff(s.failures)
	tctx, tcancel := workflow.WithCancel(ctx)
	s.timer, s.timerCancel, s.retryAt = workflow.NewTimer(tctx, delay), tcancel, workflow.Now(ctx).Add(delay)
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

// leaseBackoff is 1s, 2s, 4s, … up to 30s for the n-th consecutive failure.
func leaseBackoff(n int) time.Duration {
	d := leaseBackoffInitial
	for i := 1; i < n && d < leaseBackoffMax; i++ {
		d *= 2
	}
	return min(d, leaseBackoffMax)
}

// partitionsListed books the partition listing: the first deals the slots, the one
// at the start of a stop fixes the drain targets.
func (r *streamRun) partitionsListed(ctx workflow.Context, res activities.ListPartitionsResult, err error) {
	forDrain := r.listForDrain
	r.list, r.listForDrain = nil, false
	if err != nil {
		r.listFailures++
		r.st.LastError = fmt.Sprintf("list partitions of %s: %s", r.in.Topic, causeOf(err))
		r.st.LastErrorAt = workflow.Now(ctx)
		workflow.GetLogger(ctx).Warn("list partitions failed", "error", err)
		r.listTimer = workflow.NewTimer(ctx, leaseBackoff(r.listFailures))
		return
	}
	r.listFailures = 0
	r.apply(ctx, res.Partitions)
	if !r.listed {
		ids := make([]int32, 0, len(res.Partitions))
		for _, p := range res.Partitions {
			ids = append(ids, p.Partition)
		}
		r.slots = dealPartitions(ids, r.in.Leases)
		r.listed = true
	}
	if forDrain && r.st.Stopping {
		r.drainTo = map[int32]int64{}
		for _, p := range res.Partitions {
			r.drainTo[p.Partition] = p.HighWatermark
		}
		workflow.GetLogger(ctx).Info("stream draining", "to", r.drainTo)
	}
}

// dealPartitions deals the (ascending) partitions round-robin to
// min(leases, partitions) slots.
func dealPartitions(ids []int32, leases int) []*leaseSlot {
	n := min(leases, len(ids))
	slots := make([]*leaseSlot, n)
	for i := range slots {
		slots[i] = &leaseSlot{index: i}
	}
	for i, p := range ids {
		slots[i%n].partitions = append(slots[i%n].partitions, p)
	}
	return slots
}

// apply keeps the latest report per partition, ignoring reports of an
// older lease epoch than one already seen (a superseded lease).
func (r *streamRun) apply(ctx workflow.Context, reports []activities.PartitionProgress) {
	for _, p := range reports {
		if cur, ok := r.parts[p.Partition]; ok && p.Epoch < cur.Epoch {
			r.st.StaleReports++
			continue
		}
		r.parts[p.Partition] = p
	}
	r.updatedAt = workflow.Now(ctx)
}

// cancelAll cancels every running lease (each commits its open batch and
// returns) and every backoff timer.
func (r *streamRun) cancelAll() {
	for _, s := range r.slots {
		if s.future != nil && !s.cancelling {
			s.cancel()
			s.cancelling = true
		}
		if s.timer != nil {
			s.timerCancel()
			s.timer, s.timerCancel, s.retryAt = nil, nil, time.Time{}
		}
	}
}

func (r *streamRun) onPause(ctx workflow.Context) {
	if r.st.Stopping {
		workflow.GetLogger(ctx).Info("pause ignored: the stream is stopping")
		return
	}
	workflow.GetLogger(ctx).Info("stream paused")
	r.st.Paused = true
	r.cancelAll()
}

func (r *streamRun) onResume(ctx workflow.Context) {
	if r.st.Stopping {
		workflow.GetLogger(ctx).Info("resume ignored: the stream is stopping")
		return
	}
	workflow.GetLogger(ctx).Info("stream resumed")
	r.st.Paused = false
	// An operator's resume also cuts every backoff short.
	for _, s := range r.slots {
		if s.timer != nil {
			s.timerCancel()
			s.timer, s.timerCancel, s.retryAt = nil, nil, time.Time{}
		}
		s.failures = 0
	}
}

func (r *streamRun) onStop(ctx workflow.Context) {
	if r.st.Stopping {
		return
	}
	workflow.GetLogger(ctx).Info("stream stopping: ending the leases, then draining")
	r.st.Stopping = true
	r.cancelAll()
	for _, s := range r.slots {
		s.failures = 0
	}
}

// continueAsNew drains every pending signal into the state and continues as
// new with it. The leases have ended, so nothing runs across the boundary.
func (r *streamRun) continueAsNew(ctx workflow.Context, sig signals) error {
	for {
		switch {
		case sig.stop.ReceiveAsync(nil):
			r.onStop(ctx)
		case sig.pause.ReceiveAsync(nil):
			r.onPause(ctx)
		case sig.resume.ReceiveAsync(nil):
			r.onResume(ctx)
		default:
			var p activities.LeaseProgress
			if !sig.progress.ReceiveAsync(&p) {
				next := r.in
				st := r.st
				st.Partitions = r.sortedParts()
				next.State = &st
				workflow.GetLogger(ctx).Info("continuing as new", "paused", st.Paused, "stopping", st.Stopping, "runs", st.Runs+1)
				return workflow.NewContinueAsNewError(ctx, StreamIngestWorkflow, next)
			}
			r.apply(ctx, p.Partitions)
		}
	}
}

func (r *streamRun) sortedParts() []activities.PartitionProgress {
	out := make([]activities.PartitionProgress, 0, len(r.parts))
	for _, p := range r.parts {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

func (r *streamRun) state() string {
	switch {
	case r.stopped:
		return StreamStopped
	case r.st.Stopping:
		return StreamStopping
	case r.st.Paused:
		return StreamPaused
	}
	return StreamRunning
}

// status builds the status query answer from the workflow's state.
func (r *streamRun) status() StreamStatus {
	st := StreamStatus{
		WorkflowID: r.info.WorkflowExecution.ID, Topic: r.in.Topic, State: r.state(),
		TestMode: r.in.TestMode, Debug: r.in.Debug, Partitions: r.sortedParts(), Leases: []LeaseStatus{},
		LeaseAttempts: r.st.LeaseAttempts, LeaseFailures: r.st.LeaseFailures,
		LastError: r.st.LastError, LastErrorAt: r.st.LastErrorAt, StaleReports: r.st.StaleReports,
		Runs: r.st.Runs, StartedAt: r.st.StartedAt, UpdatedAt: r.updatedAt,
	}
	running := map[int32]bool{}
	for _, s := range r.slots {
		st.Leases = append(st.Leases, LeaseStatus{
			Slot: s.index, Partitions: slices.Clone(s.partitions), Running: s.future != nil, Drain: s.future != nil && s.drain,
			Attempts: s.attempts, Failures: s.failures, RetryAt: s.retryAt, LastEnd: s.lastEnd, LastError: s.lastError,
		})
		if s.future != nil && !s.cancelling {
			for _, p := range s.partitions {
				running[p] = true
			}
		}
	}
	for i := range st.Partitions {
		p := &st.Partitions[i]
		if !running[p.Partition] {
			p.Rate = 0
		}
		st.MessagesPerSecond += p.Rate
		st.Totals.Add(p.Counters)
		st.Lag += p.Lag
	}
	return st
}

// leaseOptions: StartToClose is the lease duration plus the time to commit
// and return; the heartbeat timeout notices a dead worker within seconds.
// Temporal does not retry a lease itself: the workflow restarts it with its
// own backoff and counts the attempts. WaitForCancellation lets a cancelled
// lease commit its open batch before the workflow moves on.
func leaseOptions(ctx workflow.Context, in StreamInput) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: in.LeaseDuration + leaseMargin,
		HeartbeatTimeout:    in.HeartbeatTimeout,
		WaitForCancellation: true,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
}

func listOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         retry(3, time.Second, 5*time.Second),
	})
}

package workflows

import (
	"cmp"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/window"
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

// The lease supervision policy.
const (
	// leaseMargin is added to the lease duration for StartToClose: the time
	// a lease has to commit its open batch and return after its duration.
	leaseMargin = time.Minute
	// A failed lease slot is restarted after 1s, doubling per consecutive
	// failure up to 30s; a clean end resets it.
	leaseBackoffInitial = time.Second
	leaseBackoffMax     = 30 * time.Second
	// partitionRelistInterval is how often a running or paused stream
	// lists the topic's partitions again, to consume partitions added to
	// the topic.
	partitionRelistInterval = 30 * time.Second
)

// Change ids of workflow.GetVersion: runs recorded before a change replay
// with the code they ran.
const (
	// changeSignalArrivalOrder: control signals that arrive in one workflow
	// task apply in arrival order, not stop, pause, resume, one per wait.
	changeSignalArrivalOrder = "control-signals-in-arrival-order"
	// changeRelistPartitions: the partitions are listed again every
	// partitionRelistInterval and added partitions are dealt to the slots.
	changeRelistPartitions = "relist-partitions"
)

// StreamWorkflowID is the stable workflow id of the stream of a topic: one
// stream per topic.
func StreamWorkflowID(topic string) string { return "iot-stream-" + topic }

// StreamInput is the single input of StreamIngestWorkflow. Zero values mean
// the ingest.Default* values (batch bounds: the worker's configuration).
type StreamInput struct {
	Topic string `json:"topic"`
	// Leases is how many consumer leases share the partitions, at most one
	// per partition.
	Leases           int           `json:"leases,omitempty"`
	LeaseDuration    time.Duration `json:"lease_duration,omitempty"`
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout,omitempty"`
	MaxBatchRecords  int           `json:"max_batch_records,omitempty"`
	MaxBatchWait     time.Duration `json:"max_batch_wait,omitempty"`
	// AllowedLateness: nil means ingest.DefaultAllowedLateness (0 is a valid
	// setting: no lateness allowed).
	AllowedLateness *time.Duration `json:"allowed_lateness,omitempty"`
	// Window is the length of the tumbling event-time windows (a
	// window.Length); 0 means window.Default. Every lease of the stream,
	// across Continue-As-New, uses this one value.
	Window time.Duration `json:"window,omitempty"`
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
	Problem    string    `json:"problem,omitempty"`
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
	// Window is the length of the stream's windows.
	Window time.Duration `json:"window,omitempty"`
	// Partitions are ascending; a partition never consumed has
	// Consumed=false, NextOffset 0 and Lag = its high watermark.
	Partitions        []activities.PartitionProgress `json:"partitions"`
	Leases            []LeaseStatus                  `json:"leases"`
	MessagesPerSecond float64                        `json:"messages_per_second"`
	Totals            ingest.Counters                `json:"totals"`
	Lag               int64                          `json:"lag"`
	LeaseAttempts     int64                          `json:"lease_attempts"`
	LeaseFailures     int64                          `json:"lease_failures"`
	// Problems are what holds the stream up right now, one line per lease
	// slot or listing in trouble: a lease failing (its last error, until a
	// lease of the slot runs without a problem again), a running lease held
	// up (a commit pending, the brokers silent), the partitions not listed.
	// Empty while the stream makes progress. LastError is history: the
	// most recent failure, however long ago.
	Problems     []string  `json:"problems,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	StaleReports int64     `json:"stale_reports"`
	Runs         int       `json:"runs"`
	StartedAt    time.Time `json:"started_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// streamRun is one StreamIngestWorkflow execution: the state machine and
// the SDK handles of what its commands started.
type streamRun struct {
	in   StreamInput
	info *workflow.Info
	sig  signals
	m    streamMachine

	slots       []slotHandles // by slot index
	list        workflow.Future
	listTimer   workflow.Future
	relistTimer workflow.Future

	// inArrivalOrder: apply the control signals pending at a wait all at
	// once, in arrival order (changeSignalArrivalOrder); arrivals is the
	// record of that order (nil without SignalOrderInterceptor).
	inArrivalOrder bool
	arrivals       *signalArrivals

	// wake wakes the main loop after a control Update changed the state
	// machine; ending is set once the run ends or continues as new, which
	// the Update handlers waiting for their effect then report.
	wake   workflow.Channel
	ending bool
}

// slotHandles are the running lease or backoff timer of a slot.
type slotHandles struct {
	lease         workflow.Future
	cancelLease   workflow.CancelFunc
	backoff       workflow.Future
	cancelBackoff workflow.CancelFunc
}

// signals are the control and progress channels.
type signals struct {
	stop, pause, resume, progress workflow.ReceiveChannel
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
	if err := window.Length(in.Window).Validate(); in.Window > 0 && err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("window %s: %v", in.Window, err), "InvalidInput", nil)
	}
	in = in.withDefaults()
	r := &streamRun{in: in, info: workflow.GetInfo(ctx), m: newStreamMachine(in, workflow.Now(ctx))}
	r.in.State = nil
	r.inArrivalOrder = workflow.GetVersion(ctx, changeSignalArrivalOrder, workflow.DefaultVersion, 1) >= 1
	r.arrivals = arrivalsOf(ctx)
	if workflow.GetVersion(ctx, changeRelistPartitions, workflow.DefaultVersion, 1) >= 1 {
		r.m.RelistEvery = partitionRelistInterval
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (StreamStatus, error) { return r.status(), nil }); err != nil {
		return nil, err
	}
	r.wake = workflow.NewBufferedChannel(ctx, 1)
	if err := r.setControlUpdates(ctx); err != nil {
		return nil, err
	}
	workflow.GetLogger(ctx).Info("stream started", "topic", r.in.Topic, "leases", r.in.Leases, "paused", r.m.pausedFlag(),
		"stopping", r.m.stopping(), "runs", r.m.Runs, "test_mode", r.in.TestMode)
	return r.loop(ctx)
}

func (in StreamInput) withDefaults() StreamInput {
	in.Leases = orDefault(in.Leases, ingest.DefaultLeases)
	in.LeaseDuration = orDefault(in.LeaseDuration, ingest.DefaultLeaseDuration)
	in.HeartbeatTimeout = orDefault(in.HeartbeatTimeout, ingest.DefaultHeartbeatTimeout)
	if in.AllowedLateness == nil {
		d := ingest.DefaultAllowedLateness
		in.AllowedLateness = &d
	}
	in.Window = orDefault(in.Window, window.Default)
	return in
}

// orDefault is v, or def when v is zero (or negative, which is no valid
// count or duration either).
func orDefault[T ~int | ~int64](v, def T) T { return cmp.Or(max(v, 0), def) }

func (r *streamRun) status() StreamStatus { return r.m.status(r.info.WorkflowExecution.ID, r.in) }

// loop feeds the state machine: before each wait what the workflow context
// tells (cancelled, continue-as-new suggested) and a settle, then the
// signal, lease, timer or listing that ends the wait.
func (r *streamRun) loop(ctx workflow.Context) (*StreamStatus, error) {
	r.sig = signals{
		stop:     workflow.GetSignalChannel(ctx, SignalStop),
		pause:    workflow.GetSignalChannel(ctx, SignalPause),
		resume:   workflow.GetSignalChannel(ctx, SignalResume),
		progress: workflow.GetSignalChannel(ctx, SignalLeaseProgress),
	}
	// After a cancellation the leases are waited for on a context that is
	// not cancelled: they commit their open batch and end.
	selCtx, detached := ctx, false
	for {
		if ctx.Err() != nil {
			r.on(ctx, workflowCancelled{})
			if !detached {
				selCtx, _ = workflow.NewDisconnectedContext(ctx)
				detached = true
			}
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			r.on(ctx, continueAsNewSuggested{})
		}
		if end := r.on(ctx, settle{}); end != 0 {
			return r.end(ctx, end)
		}

		sel := workflow.NewSelector(selCtx)
		if !detached {
			sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		}
		if r.inArrivalOrder {
			// Any control signal ready: apply every pending one, in the
			// order they arrived.
			for _, c := range r.controlChannels() {
				sel.AddReceive(c, func(workflow.ReceiveChannel, bool) { r.applyControlSignals(ctx) })
			}
		} else {
			// Runs recorded before changeSignalArrivalOrder: one signal per
			// wait, the order of the cases (stop, pause, resume) among
			// those pending.
			sel.AddReceive(r.sig.stop, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.on(ctx, stopSignal{}) })
			sel.AddReceive(r.sig.pause, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.on(ctx, pauseSignal{}) })
			sel.AddReceive(r.sig.resume, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.on(ctx, resumeSignal{}) })
		}
		sel.AddReceive(r.wake, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddReceive(r.sig.progress, func(c workflow.ReceiveChannel, _ bool) {
			var p activities.LeaseProgress
			c.Receive(ctx, &p)
			r.on(ctx, progressReported{Slot: p.Slot, Partitions: p.Partitions, Problem: p.Problem})
		})
		for i := range r.slots {
			if h := r.slots[i]; h.lease != nil {
				sel.AddFuture(h.lease, func(f workflow.Future) {
					var res activities.LeaseResult
					err := f.Get(selCtx, &res)
					r.slots[i].lease, r.slots[i].cancelLease = nil, nil
					r.on(ctx, leaseOutcome(i, res, err))
				})
			}
			if h := r.slots[i]; h.backoff != nil {
				sel.AddFuture(h.backoff, func(workflow.Future) {
					r.slots[i].backoff, r.slots[i].cancelBackoff = nil, nil
					r.on(ctx, backoffElapsed{Slot: i})
				})
			}
		}
		if r.list != nil {
			sel.AddFuture(r.list, func(f workflow.Future) {
				var res activities.ListPartitionsResult
				err := f.Get(selCtx, &res)
				r.list = nil
				r.on(ctx, listOutcome(res, err))
			})
		}
		if r.listTimer != nil {
			sel.AddFuture(r.listTimer, func(workflow.Future) {
				r.listTimer = nil
				r.on(ctx, listBackoffElapsed{})
			})
		}
		if r.relistTimer != nil {
			sel.AddFuture(r.relistTimer, func(workflow.Future) {
				r.relistTimer = nil
				r.on(ctx, relistElapsed{})
			})
		}
		sel.Select(ctx)
	}
}

// on runs ev through the state machine and issues its commands, in order,
// up to one that ends the run, which it returns (0 when none).
func (r *streamRun) on(ctx workflow.Context, ev streamEvent) commandKind {
	next, cmds, logs := r.m.on(ev, workflow.Now(ctx))
	r.m = next
	logger := workflow.GetLogger(ctx)
	for _, l := range logs {
		if l.Warn {
			logger.Warn(l.Msg, l.Attrs...)
		} else {
			logger.Info(l.Msg, l.Attrs...)
		}
	}
	for len(r.slots) < len(r.m.Slots) {
		r.slots = append(r.slots, slotHandles{})
	}
	var a *activities.Stream
	for _, c := range cmds {
		switch c.Kind {
		case cmdListPartitions:
			r.list = workflow.ExecuteActivity(listOptions(ctx), a.ListPartitions, activities.ListPartitionsInput{Topic: r.in.Topic})
		case cmdStartLease, cmdStartDrainLease:
			lctx, cancel := workflow.WithCancel(ctx)
			r.slots[c.Slot].lease = workflow.ExecuteActivity(leaseOptions(lctx, r.in), a.ConsumeLease, r.leaseInput(c))
			r.slots[c.Slot].cancelLease = cancel
		case cmdCancelLease:
			r.slots[c.Slot].cancelLease()
		case cmdStartBackoff:
			tctx, cancel := workflow.WithCancel(ctx)
			r.slots[c.Slot].backoff, r.slots[c.Slot].cancelBackoff = workflow.NewTimer(tctx, c.Delay), cancel
		case cmdCancelBackoff:
			r.slots[c.Slot].cancelBackoff()
			r.slots[c.Slot].backoff, r.slots[c.Slot].cancelBackoff = nil, nil
		case cmdStartListBackoff:
			r.listTimer = workflow.NewTimer(ctx, c.Delay)
		case cmdStartRelistTimer:
			r.relistTimer = workflow.NewTimer(ctx, c.Delay)
		default:
			if c.Kind.final() {
				return c.Kind
			}
			panic(fmt.Sprintf("stream: unknown command %v", c.Kind))
		}
	}
	return 0
}

func (r *streamRun) leaseInput(c command) activities.LeaseInput {
	return activities.LeaseInput{
		Topic: r.in.Topic, Slot: c.Slot, Partitions: r.m.Slots[c.Slot].Partitions, Duration: r.in.LeaseDuration,
		MaxBatchRecords: r.in.MaxBatchRecords, MaxBatchWait: r.in.MaxBatchWait, AllowedLateness: *r.in.AllowedLateness,
		Window: r.in.Window, Debug: r.in.Debug, TestMode: r.in.TestMode, ProgressEvery: r.in.ProgressEvery, DrainTo: c.DrainTo,
	}
}

// end ends the run as the final command says, once the control Updates
// in progress have answered.
func (r *streamRun) end(ctx workflow.Context, final commandKind) (*StreamStatus, error) {
	r.ending = true
	if ctx.Err() == nil {
		_ = workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) })
	}
	switch final {
	case cmdComplete:
		status := r.status()
		workflow.GetLogger(ctx).Info("stream stopped", "records", status.Totals.Records, "inserted", status.Totals.Inserted)
		return &status, nil
	case cmdContinueAsNew:
		return nil, r.continueAsNew(ctx)
	}
	return nil, temporal.NewCanceledError("stream workflow cancelled")
}

// controlChannels are the control signals' channels, in the order of
// controlSignals.
func (r *streamRun) controlChannels() [len(controlSignals)]workflow.ReceiveChannel {
	return [...]workflow.ReceiveChannel{r.sig.stop, r.sig.pause, r.sig.resume}
}

// applyControlSignals applies every pending control signal in the order
// they arrived (signal_order.go). When signals of more than one name are
// pending, the order is a side effect in the history: a replay applies the
// same order, with or without SignalOrderInterceptor.
func (r *streamRun) applyControlSignals(ctx workflow.Context) {
	var pending [len(controlSignals)]int
	names := 0
	for i, c := range r.controlChannels() {
		for c.ReceiveAsync(nil) {
			pending[i]++
		}
		if pending[i] > 0 {
			names++
		}
	}
	arrived := r.arrivals.take()
	order := arrivalOrder(nil, pending)
	if names > 1 {
		var recorded []string
		v := workflow.SideEffect(ctx, func(workflow.Context) any { return arrivalOrder(arrived, pending) })
		if err := v.Get(&recorded); err != nil {
			workflow.GetLogger(ctx).Warn("control signals: arrival order unreadable, applying stop, pause, resume", "error", err)
		} else {
			order = arrivalOrder(recorded, pending) // the recorded order, checked against what is pending
		}
		workflow.GetLogger(ctx).Info("control signals arrived together", "order", order)
	}
	for _, name := range order {
		switch name {
		case SignalStop:
			r.on(ctx, stopSignal{})
		case SignalPause:
			r.on(ctx, pauseSignal{})
		case SignalResume:
			r.on(ctx, resumeSignal{})
		}
	}
}

// continueAsNew applies every pending signal and continues as new with the
// state. The leases have ended, so nothing runs across the boundary.
func (r *streamRun) continueAsNew(ctx workflow.Context) error {
	if r.inArrivalOrder {
		r.applyControlSignals(ctx)
	}
	for {
		switch {
		case r.sig.stop.ReceiveAsync(nil):
			r.on(ctx, stopSignal{})
		case r.sig.pause.ReceiveAsync(nil):
			r.on(ctx, pauseSignal{})
		case r.sig.resume.ReceiveAsync(nil):
			r.on(ctx, resumeSignal{})
		default:
			var p activities.LeaseProgress
			if !r.sig.progress.ReceiveAsync(&p) {
				next := r.in
				st := r.m.carry()
				next.State = &st
				workflow.GetLogger(ctx).Info("continuing as new", "paused", st.Paused, "stopping", st.Stopping, "runs", st.Runs+1)
				return workflow.NewContinueAsNewError(ctx, StreamIngestWorkflow, next)
			}
			r.on(ctx, progressReported{Slot: p.Slot, Partitions: p.Partitions, Problem: p.Problem})
		}
	}
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

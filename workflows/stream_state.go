package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/iot-etl/iot-etl/activities"
)

// The stream supervisor is a state machine: streamMachine.on takes the
// current state and an event and returns the next state with the commands
// to issue. It is pure (no workflow.Context, no clock of its own: the time
// of an event is an argument), so every decision is tested without Temporal;
// StreamIngestWorkflow turns events into calls of on and commands into SDK
// calls, in the order given.

// streamPhase is where the operator's signals have taken the stream.
type streamPhase int

const (
	phaseRunning  streamPhase = iota // one lease runs per slot
	phasePaused                      // no lease runs until resumed
	phaseStopping                    // the leases end, then drain leases run to the high watermarks
	phaseStopped                     // every slot drained: the workflow completes
)

// ending is how a run ends before its work is done. The phase goes on
// meanwhile: signals still pause, resume and stop, and a continued run
// starts from the phase.
type ending int

const (
	endingNone          ending = iota
	endingContinueAsNew        // the leases end, then the run continues as new with the state
	endingCancelled            // the workflow was cancelled: the leases end, then the run ends cancelled
)

// slotState is where a lease slot is.
type slotState int

const (
	slotIdle       slotState = iota // no lease and no backoff: the next settle may start a lease
	slotRunning                     // a lease runs (a drain lease when slot.Drain)
	slotCancelling                  // its lease was cancelled and is committing its open batch
	slotBackoff                     // its lease failed: a timer runs until the restart
	slotDrained                     // its drain lease reached the drain targets: done for this run
)

// listState is where the partition listing is.
type listState int

const (
	listIdle            listState = iota // no listing runs or waits
	listRunning                          // ListPartitions runs (the first listing deals the slots)
	listRunningForDrain                  // ListPartitions runs while stopping: its high watermarks become the drain targets
	listBackoff                          // the last listing failed: a timer runs until the retry
)

// relistState is where the periodic listing that picks up partitions
// added to the topic is.
type relistState int

const (
	relistIdle    relistState = iota // no timer: the next settle arms one once the listing is idle
	relistWaiting                    // the timer runs
	relistDue                        // the timer elapsed: the next settle lists the partitions
)

// Names of the states and commands, for logs and test failures.
var (
	phaseNames   = [...]string{"running", "paused", "stopping", "stopped"}
	endingNames  = [...]string{"none", "continue-as-new", "cancelled"}
	slotNames    = [...]string{"idle", "running", "cancelling", "backoff", "drained"}
	listNames    = [...]string{"idle", "running", "running-for-drain", "backoff"}
	relistNames  = [...]string{"idle", "waiting", "due"}
	commandNames = [...]string{"", "list-partitions", "start-lease", "start-drain-lease", "cancel-lease",
		"start-backoff", "cancel-backoff", "start-list-backoff", "start-relist-timer", "complete", "continue-as-new", "end-cancelled"}
)

func (p streamPhase) String() string { return phaseNames[p] }
func (e ending) String() string      { return endingNames[e] }
func (s slotState) String() string   { return slotNames[s] }
func (l listState) String() string   { return listNames[l] }
func (r relistState) String() string { return relistNames[r] }
func (k commandKind) String() string { return commandNames[k] }

// leaseEndFailed is a slot's LastEnd after a lease failed.
const leaseEndFailed = "failed"

// slot is one lease slot: a set of partitions and where its lease is.
type slot struct {
	Index int
	// Partitions are dealt by the first listing; a later listing that finds
	// new partitions adds some, never takes one away.
	Partitions []int32
	State      slotState
	Drain      bool      // the lease (running or cancelling) is a drain lease
	RetryAt    time.Time // when the backoff ends (slotBackoff)
	Attempts   int64
	// Failures counts failures since a lease of the slot last ended
	// cleanly or reported progress without a problem.
	Failures  int
	LastEnd   string
	LastError string
	// Problem is what holds the running lease up, as it last reported.
	Problem string
}

// streamMachine is the whole state of one StreamIngestWorkflow run.
type streamMachine struct {
	Topic  string
	Leases int // slots wanted

	Phase  streamPhase
	Ending ending
	// PausedAtStop: the stream was paused when it was stopped. A stop
	// outranks the pause; the carried state keeps both flags.
	PausedAtStop bool

	List         listState
	ListFailures int    // consecutive
	ListError    string // the last listing's error while ListFailures > 0
	Listed       bool
	// RelistEvery is how often the partitions are listed again while the
	// stream runs or is paused, to deal partitions added to the topic; 0:
	// never (runs recorded before changeRelistPartitions).
	RelistEvery time.Duration
	Relist      relistState
	Slots       []slot          // dealt by the first listing, extended by later ones
	DrainTo     map[int32]int64 // fixed by the listing at the start of a stop; never changed after
	// Parts is the latest report per partition. It is copied before it is
	// written, so a state handed out never changes.
	Parts map[int32]activities.PartitionProgress

	LeaseAttempts int64
	LeaseFailures int64
	LastError     string
	LastErrorAt   time.Time
	StaleReports  int64
	Runs          int
	StartedAt     time.Time
	UpdatedAt     time.Time
}

// newStreamMachine is the state at the start of a run of in (with its
// defaults applied), continued from in.State when set.
func newStreamMachine(in StreamInput, now time.Time) streamMachine {
	m := streamMachine{
		Topic: in.Topic, Leases: in.Leases, StartedAt: now, UpdatedAt: now,
		Parts: map[int32]activities.PartitionProgress{},
	}
	st := in.State
	if st == nil {
		return m
	}
	switch {
	case st.Stopping:
		m.Phase, m.PausedAtStop = phaseStopping, st.Paused
	case st.Paused:
		m.Phase = phasePaused
	}
	m.LeaseAttempts, m.LeaseFailures = st.LeaseAttempts, st.LeaseFailures
	m.LastError, m.LastErrorAt, m.StaleReports = st.LastError, st.LastErrorAt, st.StaleReports
	m.Runs, m.StartedAt = st.Runs+1, st.StartedAt
	for _, p := range st.Partitions {
		m.Parts[p.Partition] = p
	}
	return m
}

// carry is the state the next run continues from.
func (m streamMachine) carry() StreamState {
	return StreamState{
		Paused: m.pausedFlag(), Stopping: m.stopping(),
		LeaseAttempts: m.LeaseAttempts, LeaseFailures: m.LeaseFailures,
		LastError: m.LastError, LastErrorAt: m.LastErrorAt, Partitions: m.sortedParts(),
		StaleReports: m.StaleReports, Runs: m.Runs, StartedAt: m.StartedAt,
	}
}

func (m streamMachine) stopping() bool { return m.Phase == phaseStopping || m.Phase == phaseStopped }

// pausedFlag is StreamState.Paused: paused, or stopped while paused.
func (m streamMachine) pausedFlag() bool { return m.Phase == phasePaused || m.PausedAtStop }

// idle reports whether no activity of the run is outstanding (timers do
// not count: a run ends without waiting for them).
func (m streamMachine) idle() bool {
	if m.List == listRunning || m.List == listRunningForDrain {
		return false
	}
	for _, s := range m.Slots {
		if s.State == slotRunning || s.State == slotCancelling {
			return false
		}
	}
	return true
}

func (m streamMachine) allDrained() bool {
	for _, s := range m.Slots {
		if s.State != slotDrained {
			return false
		}
	}
	return true
}

// Events. settle is the workflow loop's own: it has handled everything
// pending and is about to wait, so the run ends or starts what its state
// asks for.
type streamEvent interface{ streamEvent() }

type (
	settle                 struct{}
	workflowCancelled      struct{}
	continueAsNewSuggested struct{}
	stopSignal             struct{}
	pauseSignal            struct{}
	resumeSignal           struct{}
	listBackoffElapsed     struct{}
	relistElapsed          struct{}
	backoffElapsed         struct{ Slot int }
	listFailed             struct{ Err error }
	leaseFailed            struct {
		Slot int
		Err  error
	}
	// leaseCancelled: the lease ended with a cancellation error. It is a
	// failure unless the workflow had cancelled it.
	leaseCancelled struct {
		Slot int
		Err  error
	}
	// leaseEnded: the lease returned a result.
	leaseEnded struct {
		Slot   int
		Result activities.LeaseResult
	}
	partitionsListed struct {
		Result activities.ListPartitionsResult
	}
	progressReported struct {
		Slot       int
		Partitions []activities.PartitionProgress
		Problem    string
	}
)

func (settle) streamEvent()                 {}
func (workflowCancelled) streamEvent()      {}
func (continueAsNewSuggested) streamEvent() {}
func (stopSignal) streamEvent()             {}
func (pauseSignal) streamEvent()            {}
func (resumeSignal) streamEvent()           {}
func (progressReported) streamEvent()       {}
func (leaseEnded) streamEvent()             {}
func (leaseCancelled) streamEvent()         {}
func (leaseFailed) streamEvent()            {}
func (backoffElapsed) streamEvent()         {}
func (partitionsListed) streamEvent()       {}
func (listFailed) streamEvent()             {}
func (listBackoffElapsed) streamEvent()     {}
func (relistElapsed) streamEvent()          {}

// leaseOutcome is the event of a slot's lease ending with res and err.
func leaseOutcome(slot int, res activities.LeaseResult, err error) streamEvent {
	switch {
	case err == nil:
		return leaseEnded{Slot: slot, Result: res}
	case temporal.IsCanceledError(err):
		return leaseCancelled{Slot: slot, Err: err}
	}
	return leaseFailed{Slot: slot, Err: err}
}

// listOutcome is the event of a partition listing ending with res and err.
func listOutcome(res activities.ListPartitionsResult, err error) streamEvent {
	if err != nil {
		return listFailed{Err: err}
	}
	return partitionsListed{Result: res}
}

// commandKind is what the workflow is asked to do.
type commandKind int

const (
	cmdListPartitions   commandKind = iota + 1 // run ListPartitions
	cmdStartLease                              // run a lease for Slot
	cmdStartDrainLease                         // run a drain lease for Slot up to DrainTo
	cmdCancelLease                             // cancel the lease of Slot
	cmdStartBackoff                            // start the backoff timer of Slot for Delay
	cmdCancelBackoff                           // cancel the backoff timer of Slot
	cmdStartListBackoff                        // start the listing's retry timer for Delay
	cmdStartRelistTimer                        // start the timer of the next periodic listing for Delay
	cmdComplete                                // complete with the final status
	cmdContinueAsNew                           // apply the pending signals, then continue as new
	cmdEndCancelled                            // end as cancelled
)

// final reports whether the command ends the run: it is the last one.
func (k commandKind) final() bool {
	return k == cmdComplete || k == cmdContinueAsNew || k == cmdEndCancelled
}

type command struct {
	Kind    commandKind
	Slot    int
	Delay   time.Duration
	DrainTo map[int32]int64 // the slot's partitions only
}

// logLine is a log record of a transition.
type logLine struct {
	Warn  bool
	Msg   string
	Attrs []any
}

package workflows

import (
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// Control signals (pause, resume, stop) that reach the stream in one
// workflow task apply in the order they arrived. The SDK cannot tell that
// order by itself: while it processes a task's history events it sends
// each signal to the buffered channel of its name
// (workflowEnvironmentInterceptor.HandleSignal), and only then runs the
// workflow, whose Selector takes ready channels in the order of its cases.
// What does see every signal in history order is the inbound interceptor's
// HandleSignal, called once per WorkflowExecutionSignaled event as the
// event is processed: SignalOrderInterceptor records the control signals'
// names there, and the workflow reads that record when it applies them.
//
// The order the workflow applies is written into the history (a side
// effect), so a replay yields it whether or not the replaying worker has
// the interceptor. A worker without it applies the signals of one task in
// the fixed order stop, pause, resume.

// signalArrivalsKey is the workflow context key of a run's *signalArrivals.
type signalArrivalsKey struct{}

// signalArrivals are the names of the control signals delivered to one
// workflow run and not yet applied, in history order.
type signalArrivals struct {
	names []string
}

// take returns the recorded names and forgets them; nil-safe.
func (a *signalArrivals) take() []string {
	if a == nil {
		return nil
	}
	names := a.names
	a.names = nil
	return names
}

// arrivalsOf is the record the interceptor put into ctx, or nil.
func arrivalsOf(ctx workflow.Context) *signalArrivals {
	a, _ := ctx.Value(signalArrivalsKey{}).(*signalArrivals)
	return a
}

// controlSignals are the control signal names, in the order that applies
// when the arrival order is unknown: a stop outranks the rest.
var controlSignals = [...]string{SignalStop, SignalPause, SignalResume}

// SignalOrderInterceptor is the worker interceptor that records the order
// in which control signals reach StreamIngestWorkflow, so that pause,
// resume and stop sent back to back apply in that order. Register it in
// worker.Options.Interceptors of every worker that runs the stream; it
// leaves other workflows alone.
func SignalOrderInterceptor() interceptor.WorkerInterceptor { return &signalOrderInterceptor{} }

type signalOrderInterceptor struct {
	interceptor.WorkerInterceptorBase
}

// InterceptWorkflow is called once per workflow execution (and replay),
// before the first history event is processed, so no signal is missed.
func (*signalOrderInterceptor) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	if workflow.GetInfo(ctx).WorkflowType.Name != StreamWorkflowName {
		return next
	}
	in := &signalOrderInbound{arrivals: &signalArrivals{}}
	in.Next = next
	return in
}

type signalOrderInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	arrivals *signalArrivals
}

func (i *signalOrderInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	return i.Next.ExecuteWorkflow(workflow.WithValue(ctx, signalArrivalsKey{}, i.arrivals), in)
}

// HandleSignal records a control signal once its channel holds it, so the
// record and the channels always hold the same signals.
func (i *signalOrderInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	if err := i.Next.HandleSignal(ctx, in); err != nil {
		return err
	}
	for _, name := range controlSignals {
		if in.SignalName == name {
			i.arrivals.names = append(i.arrivals.names, name)
		}
	}
	return nil
}

// arrivalOrder is the order in which to apply the pending control
// signals, pending[i] of controlSignals[i] each: the recorded arrivals
// first, as far as signals of their name are pending, then what the record
// does not cover in the order stop, pause, resume.
func arrivalOrder(arrived []string, pending [len(controlSignals)]int) []string {
	var order []string
	for _, name := range arrived {
		for i, n := range controlSignals {
			if name == n && pending[i] > 0 {
				pending[i]--
				order = append(order, name)
			}
		}
	}
	for i, name := range controlSignals {
		for range pending[i] {
			order = append(order, name)
		}
	}
	return order
}

package temporalx

import (
	"context"
	"fmt"
	"sort"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
)

// Coverage splits a closed workflow's wall time into the time at least one
// of its activities was running and the rest: the orchestration (workflow
// tasks, activity scheduling and dispatch, timers and history writes
// between the steps).
type Coverage struct {
	Wall       time.Duration `json:"wall"`
	Activities time.Duration `json:"activities"` // union of every activity attempt's [started, closed]
	Attempts   int           `json:"attempts"`
	Events     int           `json:"events"`
	// LongestIdle is the longest time no activity was running, and
	// IdleBefore the activity type started when it ended ("" for the end
	// of the run): where the orchestration waited most.
	LongestIdle time.Duration `json:"longest_idle"`
	IdleBefore  string        `json:"idle_before"`
}

// Orchestration is the wall time no activity was running.
func (c Coverage) Orchestration() time.Duration { return c.Wall - c.Activities }

// Share is Orchestration over Wall, 0 for an empty run.
func (c Coverage) Share() float64 {
	if c.Wall <= 0 {
		return 0
	}
	return float64(c.Orchestration()) / float64(c.Wall)
}

// ActivityCoverage reads the history of a closed workflow run and measures
// its Coverage. An activity attempt runs from its ActivityTaskStarted event
// to the event that closed it; the attempts of a retried activity that
// failed before the last are not in the history (only the last attempt's
// start is), so their time counts as orchestration.
func ActivityCoverage(ctx context.Context, c client.Client, workflowID, runID string) (Coverage, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return Coverage{}, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		events = append(events, e)
	}
	return coverage(events)
}

// coverage is ActivityCoverage over the events of one run.
func coverage(events []*historypb.HistoryEvent) (Coverage, error) {
	var cov Coverage
	if len(events) == 0 {
		return cov, fmt.Errorf("empty history")
	}
	cov.Events = len(events)
	start, end := events[0].GetEventTime().AsTime(), events[len(events)-1].GetEventTime().AsTime()
	cov.Wall = end.Sub(start)
	started := map[int64]time.Time{} // by the scheduled event's id
	types := map[int64]string{}      // the activity type, by the scheduled event's id
	type span struct {
		from, to time.Time
		activity string
	}
	var spans []span
	for _, e := range events {
		at := e.GetEventTime().AsTime()
		var scheduled int64
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			types[e.GetEventId()] = e.GetActivityTaskScheduledEventAttributes().GetActivityType().GetName()
			continue
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			started[e.GetActivityTaskStartedEventAttributes().GetScheduledEventId()] = at
			continue
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			scheduled = e.GetActivityTaskCompletedEventAttributes().GetScheduledEventId()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED:
			scheduled = e.GetActivityTaskFailedEventAttributes().GetScheduledEventId()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
			scheduled = e.GetActivityTaskTimedOutEventAttributes().GetScheduledEventId()
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
			scheduled = e.GetActivityTaskCanceledEventAttributes().GetScheduledEventId()
		default:
			continue
		}
		if from, ok := started[scheduled]; ok {
			spans = append(spans, span{from, at, types[scheduled]})
			cov.Attempts++
		}
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	idle := func(from, to time.Time, before string) {
		if d := to.Sub(from); d > cov.LongestIdle {
			cov.LongestIdle, cov.IdleBefore = d, before
		}
	}
	var cur span
	for i, s := range spans {
		switch {
		case i == 0:
			idle(start, s.from, s.activity)
			cur = s
		case !s.from.After(cur.to):
			if s.to.After(cur.to) {
				cur.to = s.to
			}
		default:
			cov.Activities += cur.to.Sub(cur.from)
			idle(cur.to, s.from, s.activity)
			cur = s
		}
	}
	if len(spans) > 0 {
		cov.Activities += cur.to.Sub(cur.from)
		idle(cur.to, end, "")
	}
	return cov, nil
}

package temporalx

import (
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestCoverage(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(s) * time.Second)) }
	ev := func(s int, typ enumspb.EventType) *historypb.HistoryEvent {
		return &historypb.HistoryEvent{EventTime: at(s), EventType: typ}
	}
	started := func(s int, scheduled int64) *historypb.HistoryEvent {
		e := ev(s, enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED)
		e.Attributes = &historypb.HistoryEvent_ActivityTaskStartedEventAttributes{ActivityTaskStartedEventAttributes: &historypb.ActivityTaskStartedEventAttributes{ScheduledEventId: scheduled}}
		return e
	}
	completed := func(s int, scheduled int64) *historypb.HistoryEvent {
		e := ev(s, enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
		e.Attributes = &historypb.HistoryEvent_ActivityTaskCompletedEventAttributes{ActivityTaskCompletedEventAttributes: &historypb.ActivityTaskCompletedEventAttributes{ScheduledEventId: scheduled}}
		return e
	}
	failed := func(s int, scheduled int64) *historypb.HistoryEvent {
		e := ev(s, enumspb.EVENT_TYPE_ACTIVITY_TASK_FAILED)
		e.Attributes = &historypb.HistoryEvent_ActivityTaskFailedEventAttributes{ActivityTaskFailedEventAttributes: &historypb.ActivityTaskFailedEventAttributes{ScheduledEventId: scheduled}}
		return e
	}
	// 0..100 s of wall time: activity 5 runs 10..40, 6 runs 20..50
	// (overlapping: the union is 10..50), 7 runs 60..70 and fails, 8 is
	// scheduled but never starts; 9 runs 80..95.
	events := []*historypb.HistoryEvent{
		ev(0, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
		started(10, 5), started(20, 6), completed(40, 5), completed(50, 6),
		started(60, 7), failed(70, 7),
		completed(75, 8), // no start recorded: not counted
		started(80, 9), completed(95, 9),
		ev(100, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
	}
	cov, err := coverage(events)
	if err != nil {
		t.Fatal(err)
	}
	if cov.Wall != 100*time.Second || cov.Activities != 65*time.Second || cov.Attempts != 4 || cov.Events != len(events) {
		t.Fatalf("coverage %+v; want wall 100s, activities 65s, 4 attempts", cov)
	}
	if cov.Orchestration() != 35*time.Second || cov.Share() != 0.35 {
		t.Fatalf("orchestration %s share %v; want 35s, 0.35", cov.Orchestration(), cov.Share())
	}
	if _, err := coverage(nil); err == nil {
		t.Fatal("empty history: no error")
	}
}

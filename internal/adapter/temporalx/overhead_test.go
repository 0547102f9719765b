package temporalx

import (
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
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
	scheduled := func(s int, id int64, name string) *historypb.HistoryEvent {
		e := ev(s, enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
		e.EventId = id
		e.Attributes = &historypb.HistoryEvent_ActivityTaskScheduledEventAttributes{ActivityTaskScheduledEventAttributes: &historypb.ActivityTaskScheduledEventAttributes{ActivityType: &commonpb.ActivityType{Name: name}}}
		return e
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
	// scheduled but never starts; 9 runs 82..95. Nothing runs in 0..10,
	// 50..60, 70..82 (the longest, before Load) and 95..100.
	events := []*historypb.HistoryEvent{
		ev(0, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
		scheduled(1, 5, "Extract"), scheduled(1, 6, "Extract"),
		started(10, 5), started(20, 6), completed(40, 5), completed(50, 6),
		scheduled(55, 7, "Transform"), started(60, 7), failed(70, 7),
		completed(75, 8), // no start recorded: not counted
		scheduled(71, 9, "Load"), started(82, 9), completed(95, 9),
		ev(100, enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
	}
	cov, err := coverage(events)
	if err != nil {
		t.Fatal(err)
	}
	if cov.Wall != 100*time.Second || cov.Activities != 63*time.Second || cov.Attempts != 4 || cov.Events != len(events) {
		t.Fatalf("coverage %+v; want wall 100s, activities 63s, 4 attempts", cov)
	}
	if cov.Orchestration() != 37*time.Second || cov.Share() != 0.37 {
		t.Fatalf("orchestration %s share %v; want 37s, 0.37", cov.Orchestration(), cov.Share())
	}
	if cov.LongestIdle != 12*time.Second || cov.IdleBefore != "Load" {
		t.Fatalf("longest idle %s before %q; want 12s before Load", cov.LongestIdle, cov.IdleBefore)
	}
	if _, err := coverage(nil); err == nil {
		t.Fatal("empty history: no error")
	}
}

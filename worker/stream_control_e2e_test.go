package main

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestStreamControlSignalsInArrivalOrder stops the worker, sends control
// signals back to back while no worker runs and starts the worker again:
// the signals reach the workflow in one workflow task and apply in the
// order they were sent.
func TestStreamControlSignalsInArrivalOrder(t *testing.T) {
	tests := []struct {
		name    string
		signals []string
		want    string
		history string // recorded with IOT_RECORD_HISTORY
	}{
		{"resume then pause", []string{workflows.SignalResume, workflows.SignalPause}, workflows.StreamPaused, "stream-replay-arrivalorder-0.json"},
		{"pause then resume", []string{workflows.SignalPause, workflows.SignalResume}, workflows.StreamRunning, "stream-replay-arrivalorder-1.json"},
		// Applied stop, pause, resume (the order without the interceptor),
		// these would leave the stream running.
		{"pause then resume then pause", []string{workflows.SignalPause, workflows.SignalResume, workflows.SignalPause}, workflows.StreamPaused, "stream-replay-arrivalorder-2.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e2e.NewStream(t, 2)
			run := s.Start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: 3 * time.Second,
				MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
			s.Produce(500)
			s.WaitConsumed(time.Minute)

			s.Worker.Kill()
			for _, name := range tt.signals {
				s.Signal(name)
			}
			s.StartWorker()
			// Running: the leases the kill failed are restarted. Paused: they
			// end (time out) and stay ended.
			leasesRunning := tt.want == workflows.StreamRunning
			st := s.StatusUntil(tt.want+", leases settled", func(st workflows.StreamStatus) bool {
				for _, l := range st.Leases {
					if l.Running != leasesRunning {
						return false
					}
				}
				return st.State == tt.want
			})
			t.Logf("after %v: %s, %d lease attempts, %d failures", tt.signals, st.State, st.LeaseAttempts, st.LeaseFailures)
			oneWorkflowTask(t, s.TC, run, tt.signals)

			if tt.want == workflows.StreamPaused {
				committed := s.Committed()
				s.Produce(200)
				time.Sleep(3 * time.Second)
				if c := s.Committed(); c != committed {
					t.Fatalf("paused, yet committed %d records (was %d)", c, committed)
				}
				if got := s.Status().State; got != workflows.StreamPaused {
					t.Fatalf("state = %s 3s later, want paused", got)
				}
				s.Signal(workflows.SignalResume)
			} else {
				s.Produce(200)
			}
			s.WaitConsumed(time.Minute)
			s.CheckExact()
			s.Signal(workflows.SignalStop)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var final workflows.StreamStatus
			if err := run.Get(ctx, &final); err != nil {
				t.Fatalf("stream workflow: %v", err)
			}
			if final.State != workflows.StreamStopped || final.Totals.Records != 700 || final.Lag != 0 {
				t.Errorf("final status = %+v", final)
			}
			if os.Getenv("IOT_RECORD_HISTORY") != "" {
				s.RecordHistory(run, "../workflows/testdata/"+tt.history)
			}
		})
	}
}

// oneWorkflowTask asserts that the run's last signals of the given names
// were delivered in that order, with no workflow task started between the
// first and the last: the workflow saw them in one task.
func oneWorkflowTask(t *testing.T, tc client.Client, run client.WorkflowRun, names []string) {
	t.Helper()
	iter := tc.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var seen []string // "signal:<name>" and "task" in history order
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
			if name := ev.GetWorkflowExecutionSignaledEventAttributes().GetSignalName(); slices.Contains([]string{workflows.SignalPause, workflows.SignalResume, workflows.SignalStop}, name) {
				seen = append(seen, "signal:"+name)
			}
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			seen = append(seen, "task")
		}
	}
	var want []string
	for _, n := range names {
		want = append(want, "signal:"+n)
	}
	// The first control signals of the run are the test's; a workflow task
	// (which saw them) follows.
	first := slices.Index(seen, want[0])
	if first < 0 || first+len(want) >= len(seen) || !slices.Equal(seen[first:first+len(want)], want) || seen[first+len(want)] != "task" {
		t.Fatalf("history (control signals and workflow tasks started): %v; want %v together, then a workflow task", seen, want)
	}
}

// TestStreamConsumesAddedPartitions adds partitions to the topic while
// messages are being produced, to the new partitions too: the running
// stream consumes them within a minute of their creation, without a
// restart, and every message lands exactly once.
func TestStreamConsumesAddedPartitions(t *testing.T) {
	// Records round-robin over every partition the producer knows: the 12
	// devices' keys would leave one of the added partitions empty.
	s := e2e.NewStreamWith(t, e2e.StreamOptions{Partitions: 2, ProducerOptions: []kgo.Opt{kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}})
	run := s.Start(workflows.StreamInput{Leases: 3, LeaseDuration: 2 * time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	s.Produce(1000)
	s.WaitConsumed(time.Minute)
	if st := s.StatusUntil("listing 2 partitions on 2 leases", func(st workflows.StreamStatus) bool { return len(st.Partitions) == 2 }); len(st.Leases) != 2 {
		t.Fatalf("status before = %+v, want 2 lease slots", st)
	}

	stopProducing, done := make(chan struct{}), make(chan struct{})
	var produceErr error
	var mu sync.Mutex
	go func() { // about 300 messages/s until told to stop
		defer close(done)
		for {
			select {
			case <-stopProducing:
				return
			default:
			}
			if err := s.ProduceErr(100); err != nil {
				mu.Lock()
				produceErr = err
				mu.Unlock()
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(s.Prod).UpdatePartitions(ctx, 4, s.Topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("add partitions: %v", err)
	}
	added := time.Now()
	// The producer learns of the new partitions from its metadata: records
	// go to all 4 partitions from then on.
	s.Prod.ForceMetadataRefresh()

	// Partitions 2 and 3 get records and are consumed within a minute.
	consumedNew := func() int64 {
		return s.Count(`SELECT count(*) FROM public.stream_offsets WHERE topic = $1 AND partition IN (2, 3) AND next_offset > 0`, s.Topic)
	}
	for consumedNew() < 2 {
		if time.Since(added) > time.Minute {
			t.Fatalf("a minute after partitions 2 and 3 were added, %d of them consumed; status %+v", consumedNew(), s.Status())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("partitions 2 and 3 consumed %s after they were added", time.Since(added).Round(100*time.Millisecond))

	time.Sleep(2 * time.Second)
	close(stopProducing)
	<-done
	mu.Lock()
	if produceErr != nil {
		t.Fatal(produceErr)
	}
	mu.Unlock()
	s.WaitConsumed(time.Minute)
	s.CheckExact()
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	hwms, err := kafka.HighWatermarks(hctx, s.Prod, s.Topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("high watermarks: %v", hwms)
	for _, p := range []int32{2, 3} {
		if hwms[p] == 0 {
			t.Errorf("added partition %d got no record", p)
		}
	}
	produced, _ := s.Counts()
	st := s.StatusUntil("reporting every record of 4 partitions", func(st workflows.StreamStatus) bool {
		return st.Totals.Records == int64(produced) && len(st.Partitions) == 4
	})
	var leased []int32
	for _, l := range st.Leases {
		leased = append(leased, l.Partitions...)
	}
	slices.Sort(leased)
	if !slices.Equal(leased, []int32{0, 1, 2, 3}) || len(st.Leases) != 3 || st.Totals.Duplicates != 0 || st.LeaseFailures != 0 {
		t.Errorf("status after = %+v; want partitions 0-3 on 3 leases, no duplicate, no failure", st)
	}
	for _, p := range st.Partitions {
		if p.Partition >= 2 && (!p.Consumed || p.NextOffset == 0) {
			t.Errorf("new partition %d: %+v, want consumed", p.Partition, p)
		}
	}

	s.Signal(workflows.SignalStop)
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var final workflows.StreamStatus
	if err := run.Get(ctx, &final); err != nil {
		t.Fatalf("stream workflow: %v", err)
	}
	if final.State != workflows.StreamStopped || final.Lag != 0 || final.Totals.Records != int64(produced) {
		t.Errorf("final status = %+v", final)
	}
	s.CheckExact()
	if os.Getenv("IOT_RECORD_HISTORY") != "" {
		s.RecordHistory(run, "../workflows/testdata/stream-replay-addpartitions-0.json")
	}
}

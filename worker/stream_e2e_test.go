package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestStreamEndToEnd runs the stream on the dev server with the worker as a
// subprocess: N messages with K malformed land exactly; while paused no row
// is added; after resume everything catches up; stop drains and completes.
// TestStreamTwoMinuteWindows: a stream started with 2-minute windows lands
// exactly, with every window 2 minutes long and aligned on 2 minutes.
func TestStreamTwoMinuteWindows(t *testing.T) {
	s := e2e.NewStream(t, 2)
	s.Start(workflows.StreamInput{Leases: 1, MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second, Window: 2 * time.Minute})
	s.Produce(1000)
	s.WaitConsumed(time.Minute)
	s.CheckExact()
	if n := s.Count(`SELECT count(*) FROM public.sensor_readings_stream_agg
		WHERE window_end - window_start <> interval '2 minutes' OR extract(epoch FROM window_start)::bigint % 120 <> 0`); n != 0 {
		t.Errorf("%d windows are not 2-minute windows aligned on 2 minutes", n)
	}
	if st := s.Status(); st.Window != 2*time.Minute {
		t.Errorf("status window %s, want 2m0s", st.Window)
	}
}

func TestStreamEndToEnd(t *testing.T) {
	s := e2e.NewStream(t, 4)
	run := s.Start(workflows.StreamInput{Leases: 2, LeaseDuration: 20 * time.Second, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	s.Produce(3000)
	s.WaitConsumed(time.Minute)
	s.CheckExact()
	if _, malformed := s.Counts(); malformed != 81 {
		t.Fatalf("produced %d malformed messages, want 81", malformed)
	}
	st := s.StatusUntil("reporting every record", func(st workflows.StreamStatus) bool { return st.Totals.Records == 3000 })
	if st.State != workflows.StreamRunning || st.Totals.Inserted != 3000-81 || st.Totals.DeadLetters != 81 || st.Lag != 0 || len(st.Partitions) != 4 {
		t.Errorf("running status = %+v", st)
	}

	s.Signal(workflows.SignalPause)
	s.StatusUntil("paused with no lease running", func(st workflows.StreamStatus) bool {
		for _, l := range st.Leases {
			if l.Running {
				return false
			}
		}
		return st.State == workflows.StreamPaused
	})
	rows, committed := s.Count(`SELECT count(*) FROM public.sensor_readings`), s.Committed()
	s.Produce(1000)
	time.Sleep(4 * time.Second)
	if n, c := s.Count(`SELECT count(*) FROM public.sensor_readings`), s.Committed(); n != rows || c != committed {
		t.Fatalf("while paused: %d rows (was %d), %d committed (was %d)", n, rows, c, committed)
	}

	s.Signal(workflows.SignalResume)
	s.WaitConsumed(time.Minute)
	s.CheckExact()

	s.Produce(200)
	s.Signal(workflows.SignalStop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var final workflows.StreamStatus
	if err := run.Get(ctx, &final); err != nil {
		t.Fatalf("stream workflow: %v", err)
	}
	if final.State != workflows.StreamStopped || final.Lag != 0 || final.Totals.Records != 4200 {
		t.Errorf("final status = %+v", final)
	}
	s.CheckExact()
	if os.Getenv("IOT_RECORD_HISTORY") != "" {
		s.RecordHistory(run, "../workflows/testdata/stream-replay-e2e.json")
	}
}

// TestStreamSurvivesWorkerKills SIGKILLs the worker three times while it
// consumes and messages are being produced, and restarts it each time: in
// the end every message landed exactly once.
func TestStreamSurvivesWorkerKills(t *testing.T) {
	s := e2e.NewStream(t, 4)
	run := s.Start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: 4 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	stopProducing, done := make(chan struct{}), make(chan struct{})
	go func() { // about 330 messages/s until told to stop
		defer close(done)
		for {
			select {
			case <-stopProducing:
				return
			default:
			}
			if err := s.ProduceErr(100); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	last := int64(0)
	for i := range 3 {
		// Kill a worker that is consuming: wait until it has committed
		// something since the previous kill, then let it run a moment.
		deadline := time.Now().Add(time.Minute)
		for s.Committed() < last+300 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second)
		last = s.Committed()
		s.Worker.Kill()
		produced, _ := s.Counts()
		t.Logf("kill %d: worker killed with %d records committed, %d produced", i+1, last, produced)
		s.StartWorker()
	}
	time.Sleep(2 * time.Second)
	close(stopProducing)
	<-done
	s.WaitConsumed(2 * time.Minute)
	s.CheckExact()
	produced, _ := s.Counts()
	st := s.StatusUntil("reporting every record", func(st workflows.StreamStatus) bool { return st.Totals.Records == int64(produced) })
	// Each kill hit a worker whose lease had committed since the previous
	// kill, so every kill failed at least one lease.
	if st.LeaseFailures < 3 || st.Totals.Duplicates != 0 {
		t.Errorf("status after the kills = %+v, want at least 3 lease failures and no duplicates", st)
	}
	t.Logf("after 3 kills: %d lease attempts, %d failures, last error %q", st.LeaseAttempts, st.LeaseFailures, st.LastError)
	s.Signal(workflows.SignalStop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("stream workflow: %v", err)
	}
}

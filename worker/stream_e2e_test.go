package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/kafka"
	"github.com/iot-etl/iot-etl/internal/reading"
	"github.com/iot-etl/iot-etl/internal/simulate"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// streamStack is one test's databases and device registry, a Kafka topic
// and task queue of its own, a producer of simulated readings and the
// worker as a subprocess.
type streamStack struct {
	t      *testing.T
	stack  *testenv.Stack
	env    map[string]string
	tc     client.Client
	topic  string
	worker *testenv.Process
	prod   *kgo.Client
	fleet  simulate.Fleet
	gen    *simulate.Generator
	rng    *rand.Rand
	base   time.Time

	mu                  sync.Mutex // guards what follows and the generator
	produced, malformed int
}

func newStreamStack(t *testing.T, partitions int32) *streamStack {
	t.Helper()
	s := testenv.Databases(t)
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	s.Config.Temporal.Address = testenv.Temporal(t)
	s.Config.Temporal.StreamTaskQueue = "stream-" + name
	s.Config.Kafka.Topic = "e2e-" + name
	_, brokers := testenv.Kafka(t, s.Config.Kafka.Topic, partitions)
	s.Config.Kafka.BootstrapServers = brokers
	s.Config.ExportDir = t.TempDir()
	fleet := simulate.NewFleet(7, 12)
	if err := store.ReplaceDevices(context.Background(), s.MySQL, fleet); err != nil {
		t.Fatal(err)
	}
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafka.NewClient(s.Config.Kafka, nil, kafka.ProducerOptions(s.Config.Kafka.Topic)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	st := &streamStack{
		t: t, stack: s, env: testenv.EnvMap(s.Config), tc: testenv.TemporalClient(t), topic: s.Config.Kafka.Topic,
		prod: prod, fleet: fleet, gen: gen, rng: rand.New(rand.NewPCG(7, 11)),
		base: time.Now().UTC().Truncate(time.Minute).Add(-time.Hour),
	}
	st.startWorker()
	return st
}

func (s *streamStack) startWorker() {
	s.worker = testenv.Start(s.t, "worker", testenv.Build(s.t, "./worker"), s.env, "-queues", "stream", "-stop-timeout", "5s")
}

func (s *streamStack) id() string { return workflows.StreamWorkflowID(s.topic) }

func (s *streamStack) start(in workflows.StreamInput) client.WorkflowRun {
	s.t.Helper()
	in.Topic = s.topic
	run, err := s.tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: s.id(), TaskQueue: s.stack.Config.Temporal.StreamTaskQueue, WorkflowExecutionTimeout: 5 * time.Minute,
	}, workflows.StreamWorkflowName, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return run
}

// produce sends n messages: simulated readings of the fleet, one second
// apart per device (so each partition is in event-time order), and every
// 37th a malformed one.
func (s *streamStack) produce(n int) {
	s.t.Helper()
	if err := s.produceErr(n); err != nil {
		s.t.Fatal(err)
	}
}

// produceErr is produce for other goroutines than the test's.
func (s *streamStack) produceErr(n int) error {
	s.mu.Lock()
	recs := make([]*kgo.Record, 0, n)
	for range n {
		i := s.produced
		dev := s.fleet.Devices[i%len(s.fleet.Devices)]
		value := reading.Encode(nil, s.gen.Live(dev, s.base.Add(time.Duration(i/len(s.fleet.Devices))*time.Second), s.rng, 0.02), int64(i))
		if i%37 == 5 {
			value = []byte(fmt.Sprintf(`{"device_id":%q,"time":`, dev.ID))
			s.malformed++
		}
		recs = append(recs, &kgo.Record{Key: []byte(dev.ID), Value: value})
		s.produced++
	}
	s.mu.Unlock()
	return s.prod.ProduceSync(context.Background(), recs...).FirstErr()
}

// counts returns how many messages were produced, and how many of them
// were malformed.
func (s *streamStack) counts() (produced, malformed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.produced, s.malformed
}

func (s *streamStack) count(query string, args ...any) int64 {
	s.t.Helper()
	var n int64
	if err := s.stack.Timescale.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (s *streamStack) committed() int64 {
	return s.count(`SELECT coalesce(sum(next_offset), 0) FROM public.stream_offsets WHERE topic = $1`, s.topic)
}

// waitConsumed waits until every produced record is committed.
func (s *streamStack) waitConsumed(timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	produced, _ := s.counts()
	for time.Now().Before(deadline) {
		if s.committed() == int64(produced) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("committed %d of %d records after %s", s.committed(), produced, timeout)
}

func (s *streamStack) status() workflows.StreamStatus {
	s.t.Helper()
	v, err := s.tc.QueryWorkflow(context.Background(), s.id(), "", workflows.QueryStatus)
	if err != nil {
		s.t.Fatalf("status query: %v", err)
	}
	var st workflows.StreamStatus
	if err := v.Get(&st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

func (s *streamStack) statusUntil(what string, cond func(workflows.StreamStatus) bool) workflows.StreamStatus {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	var st workflows.StreamStatus
	for time.Now().Before(deadline) {
		if st = s.status(); cond(st) {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("status never %s: %+v", what, st)
	return st
}

func (s *streamStack) signal(name string) {
	s.t.Helper()
	if err := s.tc.SignalWorkflow(context.Background(), s.id(), "", name, nil); err != nil {
		s.t.Fatal(err)
	}
}

// checkExact asserts that every produced record landed exactly once: raw
// rows = valid messages, dead letters = malformed ones, the windows equal a
// recomputation from the raw rows, and every partition is committed up to
// its high watermark.
func (s *streamStack) checkExact() {
	s.t.Helper()
	produced, malformed := s.counts()
	valid := int64(produced - malformed)
	if n := s.count(`SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'`); n != valid {
		s.t.Errorf("raw readings = %d, want %d", n, valid)
	}
	if n := s.count(`SELECT count(*) FROM public.stream_dead_letters WHERE reason = 'not_json'`); n != int64(malformed) {
		s.t.Errorf("not_json dead letters = %d, want %d", n, malformed)
	}
	if n := s.count(`SELECT count(*) FROM public.stream_dead_letters`); n != int64(malformed) {
		s.t.Errorf("dead letters = %d, want %d", n, malformed)
	}
	if n := s.count(`SELECT coalesce(sum(reading_count), 0) FROM public.sensor_readings_stream_agg`); n != valid {
		s.t.Errorf("readings in windows = %d, want %d", n, valid)
	}
	mismatched := s.count(`WITH raw AS (
		SELECT device_id, date_bin(interval '1 minute', time, timestamptz '2000-01-01 00:00:00+00') AS w,
		       count(*) AS n, count(value) AS nv, coalesce(sum(value::numeric), 0) AS s,
		       coalesce(sum(value::numeric * value::numeric), 0) AS ss, min(value) AS mn, max(value) AS mx
		FROM public.sensor_readings GROUP BY 1, 2)
		SELECT count(*) FROM raw FULL JOIN public.sensor_readings_stream_agg a ON a.device_id = raw.device_id AND a.window_start = raw.w
		WHERE raw.device_id IS NULL OR a.device_id IS NULL OR a.window_end <> raw.w + interval '1 minute'
		   OR a.reading_count <> raw.n OR a.value_count <> raw.nv OR a.value_sum <> raw.s OR a.value_sum_sq <> raw.ss
		   OR a.value_min IS DISTINCT FROM raw.mn OR a.value_max IS DISTINCT FROM raw.mx`)
	if mismatched != 0 {
		s.t.Errorf("%d windows differ from the recomputation from the raw readings", mismatched)
	}
	if n := s.count(`SELECT count(*) FROM public.stream_anomalies a LEFT JOIN public.sensor_readings r USING (device_id, time) WHERE r.device_id IS NULL`); n != 0 {
		s.t.Errorf("%d anomalies without their reading", n)
	}
	if n := s.count(`SELECT count(*) FROM public.stream_anomalies`) - s.count(`SELECT coalesce(sum(anomaly_count), 0) FROM public.sensor_readings_stream_agg`); n != 0 {
		s.t.Errorf("anomaly rows and window anomaly counts differ by %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hwms, err := kafka.HighWatermarks(ctx, s.prod, s.topic)
	if err != nil {
		s.t.Fatal(err)
	}
	offsets, err := store.StreamOffsets(ctx, s.stack.Timescale, s.topic)
	if err != nil {
		s.t.Fatal(err)
	}
	var counters store.StreamCounters
	for p, hwm := range hwms {
		if o := offsets[p]; o.NextOffset != hwm {
			s.t.Errorf("partition %d: next_offset %d, high watermark %d", p, o.NextOffset, hwm)
		}
		counters.Add(offsets[p].Counters)
	}
	want := store.StreamCounters{Records: int64(produced), Inserted: valid, DeadLetters: int64(malformed), Anomalies: counters.Anomalies}
	if counters != want {
		s.t.Errorf("stream_offsets counters = %+v, want %+v", counters, want)
	}
}

// TestStreamEndToEnd runs the stream on the dev server with the worker as a
// subprocess: N messages with K malformed land exactly; while paused no row
// is added; after resume everything catches up; stop drains and completes.
func TestStreamEndToEnd(t *testing.T) {
	s := newStreamStack(t, 4)
	run := s.start(workflows.StreamInput{Leases: 2, LeaseDuration: 20 * time.Second, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	s.produce(3000)
	s.waitConsumed(time.Minute)
	s.checkExact()
	if _, malformed := s.counts(); malformed != 81 {
		t.Fatalf("produced %d malformed messages, want 81", malformed)
	}
	st := s.statusUntil("reporting every record", func(st workflows.StreamStatus) bool { return st.Totals.Records == 3000 })
	if st.State != workflows.StreamRunning || st.Totals.Inserted != 3000-81 || st.Totals.DeadLetters != 81 || st.Lag != 0 || len(st.Partitions) != 4 {
		t.Errorf("running status = %+v", st)
	}

	s.signal(workflows.SignalPause)
	s.statusUntil("paused with no lease running", func(st workflows.StreamStatus) bool {
		for _, l := range st.Leases {
			if l.Running {
				return false
			}
		}
		return st.State == workflows.StreamPaused
	})
	rows, committed := s.count(`SELECT count(*) FROM public.sensor_readings`), s.committed()
	s.produce(1000)
	time.Sleep(4 * time.Second)
	if n, c := s.count(`SELECT count(*) FROM public.sensor_readings`), s.committed(); n != rows || c != committed {
		t.Fatalf("while paused: %d rows (was %d), %d committed (was %d)", n, rows, c, committed)
	}

	s.signal(workflows.SignalResume)
	s.waitConsumed(time.Minute)
	s.checkExact()

	s.produce(200)
	s.signal(workflows.SignalStop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var final workflows.StreamStatus
	if err := run.Get(ctx, &final); err != nil {
		t.Fatalf("stream workflow: %v", err)
	}
	if final.State != workflows.StreamStopped || final.Lag != 0 || final.Totals.Records != 4200 {
		t.Errorf("final status = %+v", final)
	}
	s.checkExact()
	if os.Getenv("IOT_RECORD_HISTORY") != "" {
		s.recordHistory(run, "../workflows/testdata/stream-replay-e2e.json")
	}
}

// TestStreamSurvivesWorkerKills SIGKILLs the worker three times while it
// consumes and messages are being produced, and restarts it each time: in
// the end every message landed exactly once.
func TestStreamSurvivesWorkerKills(t *testing.T) {
	s := newStreamStack(t, 4)
	run := s.start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: 4 * time.Second,
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
			if err := s.produceErr(100); err != nil {
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
		for s.committed() < last+300 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second)
		last = s.committed()
		s.worker.Kill()
		produced, _ := s.counts()
		t.Logf("kill %d: worker killed with %d records committed, %d produced", i+1, last, produced)
		s.startWorker()
	}
	time.Sleep(2 * time.Second)
	close(stopProducing)
	<-done
	s.waitConsumed(2 * time.Minute)
	s.checkExact()
	produced, _ := s.counts()
	st := s.statusUntil("reporting every record", func(st workflows.StreamStatus) bool { return st.Totals.Records == int64(produced) })
	// Each kill hit a worker whose lease had committed since the previous
	// kill, so every kill failed at least one lease.
	if st.LeaseFailures < 3 || st.Totals.Duplicates != 0 {
		t.Errorf("status after the kills = %+v, want at least 3 lease failures and no duplicates", st)
	}
	t.Logf("after 3 kills: %d lease attempts, %d failures, last error %q", st.LeaseAttempts, st.LeaseFailures, st.LastError)
	s.signal(workflows.SignalStop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("stream workflow: %v", err)
	}
}

// recordHistory writes the run's history as JSON (the format of `temporal
// workflow show --output json`) for the replay test.
func (s *streamStack) recordHistory(run client.WorkflowRun, path string) {
	s.t.Helper()
	iter := s.tc.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h historypb.History
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			s.t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(&h)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Clean(path), b, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("recorded %d events to %s", len(h.Events), path)
}

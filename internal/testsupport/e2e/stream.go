package e2e

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/streamcheck"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// Stream is one test's databases and device registry, a Kafka topic and
// task queue of its own, a producer of simulated readings and a worker
// subprocess.
type Stream struct {
	T      *testing.T
	Stack  *testenv.Stack
	Env    map[string]string // the worker's environment
	TC     client.Client
	Topic  string
	Worker *testenv.Process
	Prod   *kgo.Client
	Fleet  simulate.Fleet

	gen  *simulate.Generator
	rng  *rand.Rand
	base time.Time

	mu                  sync.Mutex // guards what follows and the generator
	produced, malformed int
	window              time.Duration // the started stream's StreamInput.Window
}

// StreamOptions shape NewStreamWith. Zero values are the defaults of
// NewStream.
type StreamOptions struct {
	Partitions int32
	// Topic is the topic's name; empty means "e2e-" and the test's name.
	Topic string
	// Cluster starts the Kafka cluster of the topic and returns the client
	// configuration; nil means testenv.Kafka.
	Cluster func(config.Kafka) config.Kafka
	// Stack is the test's databases; nil means testenv.Databases.
	Stack *testenv.Stack
	// Temporal is the server's address and TC a client of it; empty means
	// the dev server shared by the test binary.
	Temporal string
	TC       client.Client
	// ProducerOptions are added to the producer's.
	ProducerOptions []kgo.Opt
	// NoWorker leaves starting the worker to the test.
	NoWorker bool
}

// NewStream is a stream stack on an in-process kfake cluster with
// partitions partitions, its worker started.
func NewStream(t *testing.T, partitions int32) *Stream {
	t.Helper()
	return NewStreamWith(t, StreamOptions{Partitions: partitions})
}

// NewStreamWith is NewStream as opts say.
func NewStreamWith(t *testing.T, opts StreamOptions) *Stream {
	t.Helper()
	s := opts.Stack
	if s == nil {
		s = testenv.Databases(t)
	}
	tc := opts.TC
	if opts.Temporal == "" {
		s.Config.Temporal.Address, tc = testenv.Temporal(t), testenv.TemporalClient(t)
	} else {
		s.Config.Temporal.Address = opts.Temporal
	}
	name := testName(t)
	s.Config.Temporal.StreamTaskQueue = "stream-" + name
	s.Config.Kafka.Topic = cmp.Or(opts.Topic, "e2e-"+name)
	if opts.Cluster == nil {
		opts.Cluster = func(k config.Kafka) config.Kafka {
			_, k.BootstrapServers = testenv.Kafka(t, k.Topic, opts.Partitions)
			return k
		}
	}
	s.Config.Kafka = opts.Cluster(s.Config.Kafka)
	s.Config.Export.URL = t.TempDir()
	fleet := simulate.NewFleet(7, 12)
	if err := seeder.ReplaceDevices(context.Background(), s.MySQL, fleet); err != nil {
		t.Fatal(err)
	}
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafka.NewClient(s.Config.Kafka, nil, append(kafka.ProducerOptions(s.Config.Kafka.Topic), opts.ProducerOptions...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	st := &Stream{
		T: t, Stack: s, Env: testenv.EnvMap(s.Config), TC: tc, Topic: s.Config.Kafka.Topic,
		Prod: prod, Fleet: fleet, gen: gen, rng: rand.New(rand.NewPCG(7, 11)),
		base: time.Now().UTC().Truncate(time.Minute).Add(-time.Hour),
	}
	if !opts.NoWorker {
		st.StartWorker()
	}
	return st
}

// StartWorker starts a worker process serving the stream queue with Env
// and args; it becomes s.Worker.
func (s *Stream) StartWorker(args ...string) *testenv.Process {
	s.Worker = s.StartNamedWorker("worker", args...)
	return s.Worker
}

// StartNamedWorker starts one more worker process, named name in the
// test's log, without replacing s.Worker.
func (s *Stream) StartNamedWorker(name string, args ...string) *testenv.Process {
	return testenv.Start(s.T, name, testenv.Build(s.T, "./worker"), s.Env, append([]string{"-queues", "stream", "-stop-timeout", "5s"}, args...)...)
}

// ID is the stream workflow's id.
func (s *Stream) ID() string { return workflows.StreamWorkflowID(s.Topic) }

// Start starts the stream workflow of the topic with in.
func (s *Stream) Start(in workflows.StreamInput) client.WorkflowRun {
	s.T.Helper()
	in.Topic = s.Topic
	s.mu.Lock()
	s.window = in.Window
	s.mu.Unlock()
	run, err := s.TC.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID: s.ID(), TaskQueue: s.Stack.Config.Temporal.StreamTaskQueue, WorkflowExecutionTimeout: 30 * time.Minute,
	}, workflows.StreamWorkflowName, in)
	if err != nil {
		s.T.Fatal(err)
	}
	return run
}

// Produce sends n messages: simulated readings of the fleet, one second
// apart per device (so each partition is in event-time order), and every
// 37th a malformed one.
func (s *Stream) Produce(n int) {
	s.T.Helper()
	if err := s.ProduceErr(n); err != nil {
		s.T.Fatal(err)
	}
}

// ProduceErr is Produce for other goroutines than the test's.
func (s *Stream) ProduceErr(n int) error {
	s.mu.Lock()
	recs := make([]*kgo.Record, 0, n)
	for range n {
		i := s.produced
		dev := s.Fleet.Devices[i%len(s.Fleet.Devices)]
		value := reading.Encode(nil, s.gen.Live(dev, s.base.Add(time.Duration(i/len(s.Fleet.Devices))*time.Second), s.rng, 0.02), int64(i))
		if i%37 == 5 {
			value = fmt.Appendf(nil, `{"device_id":%q,"time":`, dev.ID)
			s.malformed++
		}
		recs = append(recs, &kgo.Record{Key: []byte(dev.ID), Value: value})
		s.produced++
	}
	s.mu.Unlock()
	return s.Prod.ProduceSync(context.Background(), recs...).FirstErr()
}

// Counts returns how many messages were produced, and how many of them
// were malformed.
func (s *Stream) Counts() (produced, malformed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.produced, s.malformed
}

// Count runs a count query on the TimescaleDB database.
func (s *Stream) Count(query string, args ...any) int64 {
	s.T.Helper()
	return count(s.T, s.Stack, query, args...)
}

// Committed is the sum of the committed offsets of the topic.
func (s *Stream) Committed() int64 {
	return s.Count(`SELECT coalesce(sum(next_offset), 0) FROM public.stream_offsets WHERE topic = $1`, s.Topic)
}

// WaitConsumed waits until every record Produce produced is committed.
func (s *Stream) WaitConsumed(timeout time.Duration) {
	s.T.Helper()
	produced, _ := s.Counts()
	s.WaitConsumedN(int64(produced), timeout)
}

// WaitConsumedN waits until n records of the topic are committed.
func (s *Stream) WaitConsumedN(n int64, timeout time.Duration) {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.Committed() == n {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.T.Fatalf("committed %d of %d records after %s", s.Committed(), n, timeout)
}

// Status queries the stream's status.
func (s *Stream) Status() workflows.StreamStatus {
	s.T.Helper()
	st, err := s.StatusErr()
	if err != nil {
		s.T.Fatalf("status query: %v", err)
	}
	return st
}

// StatusErr is Status for queries that may fail (while Temporal is down).
func (s *Stream) StatusErr() (workflows.StreamStatus, error) {
	var st workflows.StreamStatus
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := s.TC.QueryWorkflow(ctx, s.ID(), "", workflows.QueryStatus)
	if err == nil {
		err = v.Get(&st)
	}
	return st, err
}

// StatusUntil polls the status until cond holds (a minute at most).
func (s *Stream) StatusUntil(what string, cond func(workflows.StreamStatus) bool) workflows.StreamStatus {
	s.T.Helper()
	deadline := time.Now().Add(time.Minute)
	var st workflows.StreamStatus
	for time.Now().Before(deadline) {
		if st = s.Status(); cond(st) {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.T.Fatalf("status never %s: %+v", what, st)
	return st
}

// Signal sends the stream workflow a signal without payload.
func (s *Stream) Signal(name string) {
	s.T.Helper()
	if err := s.TC.SignalWorkflow(context.Background(), s.ID(), "", name, nil); err != nil {
		s.T.Fatal(err)
	}
}

// CheckExact asserts that every produced record landed exactly once: raw
// rows = valid messages, dead letters = malformed ones, the windows equal a
// recomputation from the raw rows, and every partition is committed up to
// its high watermark. The windows are those of the length the stream was
// started with.
func (s *Stream) CheckExact() {
	s.T.Helper()
	produced, malformed := s.Counts()
	s.mu.Lock()
	win := s.window
	s.mu.Unlock()
	CheckStreamExact(s.T, s.Stack, s.Prod, s.Topic, StreamExpect{Produced: int64(produced), Quarantined: int64(malformed),
		ByReason: map[string]int64{"not_json": int64(malformed)}, Window: win})
}

// StreamExpect is what a topic's stream must have landed.
type StreamExpect = streamcheck.Expect

// CheckStreamExact asserts that the stream of topic landed exactly what
// want says: every problem streamcheck.Check finds (raw rows = produced -
// quarantined, dead letters by reason, windows = a recomputation from the
// raw rows, anomalies with their readings, every partition committed up to
// its high watermark, read with cl, with counters that add up and
// duplicates 0 among them) is an error of t.
func CheckStreamExact(t *testing.T, s *testenv.Stack, cl *kgo.Client, topic string, want StreamExpect) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := streamcheck.Check(ctx, s.Timescale, cl, topic, want)
	for _, p := range res.Problems {
		t.Error(p)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// RecordHistory writes the run's history as JSON (the format of `temporal
// workflow show --output json`) for the replay tests.
func (s *Stream) RecordHistory(run client.WorkflowRun, path string) {
	s.T.Helper()
	iter := s.TC.GetWorkflowHistory(context.Background(), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var h historypb.History
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			s.T.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(&h)
	if err != nil {
		s.T.Fatal(err)
	}
	if err := os.WriteFile(filepath.Clean(path), b, 0o644); err != nil {
		s.T.Fatal(err)
	}
	s.T.Logf("recorded %d events to %s", len(h.Events), path)
}

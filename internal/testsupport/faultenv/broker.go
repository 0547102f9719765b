package faultenv

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// BrokerErrors answers requests of one key with Kafka error codes in place
// of the broker, through kfake's ControlKey: each error of the plan
// answers Times requests in turn, at least Every apart, on every partition
// the request names, and then the broker answers again. A request that
// names no partition (an incremental fetch with nothing to change) goes to
// the broker, and so does a fetch that opens a fetch session, so that the
// client keeps using sessions. Every answer is counted.
type BrokerErrors struct {
	Key kmsg.Key

	mu       sync.Mutex
	plan     []*kerr.Error
	answered map[int16]int   // requests answered, by error code
	records  map[int16]int64 // records in the produce batches answered, by error code
	last     time.Time
	done     chan struct{}
}

// InjectErrors starts answering requests of key with each of errs, times
// requests each, at least every apart.
func InjectErrors(c *kfake.Cluster, key kmsg.Key, times int, every time.Duration, errs ...*kerr.Error) *BrokerErrors {
	b := &BrokerErrors{Key: key, answered: map[int16]int{}, records: map[int16]int64{}, done: make(chan struct{})}
	for _, e := range errs {
		for range times {
			b.plan = append(b.plan, e)
		}
	}
	c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.plan) == 0 {
			c.DropControl()
			return nil, nil, false
		}
		if time.Since(b.last) < every {
			return nil, nil, false
		}
		e := b.plan[0]
		resp, records := errorResponse(req, e.Code)
		if resp == nil {
			return nil, nil, false
		}
		b.plan = b.plan[1:]
		b.last = time.Now()
		b.answered[e.Code]++
		b.records[e.Code] += records
		c.KeepControl()
		if len(b.plan) == 0 {
			c.DropControl()
			close(b.done)
		}
		return resp, nil, true
	})
	return b
}

// Answered is how many requests were answered with err.
func (b *BrokerErrors) Answered(err *kerr.Error) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.answered[err.Code]
}

// Records is how many records the produce batches answered with err held.
func (b *BrokerErrors) Records(err *kerr.Error) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.records[err.Code]
}

// Wait waits until the whole plan was answered.
func (b *BrokerErrors) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.mu.Lock()
		defer b.mu.Unlock()
		t.Fatalf("%s errors: %d of the plan not answered within %s (answered by code: %v)", b.Key.Name(), len(b.plan), timeout, b.answered)
	}
}

// errorResponse is req's response with code on every partition req names,
// and the records of the produce batches it refuses; nil when the request
// names no partition or opens a fetch session.
func errorResponse(req kmsg.Request, code int16) (kmsg.Response, int64) {
	var partitions int
	switch req := req.(type) {
	case *kmsg.FetchRequest:
		if req.SessionEpoch == 0 {
			return nil, 0
		}
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.SessionID = req.SessionID // the session goes on, as with a broker that answers errors
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode, sp.HighWatermark = rp.Partition, code, -1
				st.Partitions = append(st.Partitions, sp)
				partitions++
			}
			resp.Topics = append(resp.Topics, st)
		}
		if partitions == 0 {
			return nil, 0
		}
		return resp, 0
	case *kmsg.ListOffsetsRequest:
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, code
				st.Partitions = append(st.Partitions, sp)
				partitions++
			}
			resp.Topics = append(resp.Topics, st)
		}
		if partitions == 0 {
			return nil, 0
		}
		return resp, 0
	case *kmsg.ProduceRequest:
		if req.Acks == 0 {
			return nil, 0 // no answer to replace
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		var records int64
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition, sp.ErrorCode, sp.BaseOffset = rp.Partition, code, -1
				st.Partitions = append(st.Partitions, sp)
				partitions++
				var batch kmsg.RecordBatch
				if err := batch.ReadFrom(rp.Records); err == nil {
					records += int64(batch.NumRecords)
				}
			}
			resp.Topics = append(resp.Topics, st)
		}
		if partitions == 0 {
			return nil, 0
		}
		return resp, records
	}
	return nil, 0
}

// DevKafka is devstack's Kafka broker (`devstack kafka`): kfake in a
// process of its own, persisting its log under Dir, that a test can stop
// (cleanly or with SIGKILL) and start again on the same port and
// directory.
type DevKafka struct {
	Addr       string
	Dir        string
	Topic      string
	Partitions int

	t      testing.TB
	bin    string
	port   int
	proc   *testenv.Process
	starts int
}

// StartDevKafka starts a broker on a free port with topic of partitions
// partitions, persisted in a directory of the test's.
func StartDevKafka(t testing.TB, topic string, partitions int) *DevKafka {
	t.Helper()
	port, err := temporalx.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	k := &DevKafka{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir(), Topic: topic, Partitions: partitions,
		t: t, bin: testenv.Build(t, "./devstack"), port: port}
	k.Start()
	return k
}

// Start starts the broker process (again) and waits until it listens with
// its topic ready.
func (k *DevKafka) Start() {
	k.t.Helper()
	k.starts++
	env := map[string]string{"KAFKA_BOOTSTRAP_SERVERS": k.Addr, "KAFKA_TOPIC": k.Topic, "KAFKA_PARTITIONS": strconv.Itoa(k.Partitions)}
	k.proc = testenv.Start(k.t, fmt.Sprintf("kafka-%d", k.starts), k.bin, env, "kafka", "--dir", k.Dir,
		"--port", strconv.Itoa(k.port), "--topic", k.Topic, "--partitions", strconv.Itoa(k.Partitions), "--log-level", "info")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(k.proc.Log(), "dev broker (kfake) listening on") {
		if time.Now().After(deadline) {
			k.t.Fatalf("the Kafka broker did not start within 30 s:\n%s", k.proc.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends the broker SIGTERM, on which it saves its state and exits,
// and waits for it; it returns the exit error (nil for a clean exit).
func (k *DevKafka) Stop(timeout time.Duration) error { return k.proc.Stop(timeout) }

// Kill kills the broker with SIGKILL: it saves nothing beyond what it
// wrote as it went.
func (k *DevKafka) Kill() { k.proc.Kill() }

// Log is what the broker process of the last start wrote.
func (k *DevKafka) Log() string { return k.proc.Log() }

// Result waits until the load ends by itself (its limits, or a message
// the publisher failed) and returns its report and error, without failing
// the test: for scenarios in which the broker refuses messages.
func (l *Load) Result() (producer.Report, error) {
	<-l.done
	return l.report, l.err
}

// Ended reports whether the load has ended.
func (l *Load) Ended() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// SumReports adds up the reports of several loads on one topic.
func SumReports(reps ...producer.Report) producer.Report {
	var sum producer.Report
	for _, r := range reps {
		sum.Sent += r.Sent
		sum.Good += r.Good
		sum.Failed += r.Failed
		sum.Elapsed += r.Elapsed
		for k, n := range r.Anomalous {
			if sum.Anomalous == nil {
				sum.Anomalous = map[simulate.Kind]int64{}
			}
			sum.Anomalous[k] += n
		}
		for reason, n := range r.Bad {
			if sum.Bad == nil {
				sum.Bad = map[reading.Reason]int64{}
			}
			sum.Bad[reason] += n
		}
	}
	return sum
}

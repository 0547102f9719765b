//go:build faults

package faults_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
)

const (
	// brokerErrorTimes is how many requests each broker error answers.
	brokerErrorTimes = 3
	// brokerErrorEvery spaces the answers of one request key.
	brokerErrorEvery = 200 * time.Millisecond
	// brokerDown is how long the broker process stays stopped.
	brokerDown = 5 * time.Second
	// brokerRestarts is how many times it is stopped and started again.
	brokerRestarts = 2
)

// brokerErrors are the errors the broker answers with: a leadership move,
// a timeout and an unexpected failure.
var brokerErrors = []*kerr.Error{kerr.NotLeaderForPartition, kerr.RequestTimedOut, kerr.UnknownServerError}

// TestStreamBrokerErrors makes the Kafka broker answer requests with
// errors (kfake ControlKey) while the simulator publishes 2,500 msg/s:
// NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT and UNKNOWN_SERVER_ERROR, 3
// requests each, on the worker's Fetch and ListOffsets requests (its
// consumers and its high-watermark probes), and the first two on the
// producer's Produce requests, which it retries. UNKNOWN_SERVER_ERROR on
// Produce is not retriable: franz-go fails the refused batch and every
// record buffered behind it for its partitions, and the simulator stops
// with that error; a second simulator run (later event times) goes on.
// Under it, REQUEST_TIMED_OUT is answered after the broker appended the
// batch (kfake Fault): the producer sends the batch again and the broker
// recognises it by its producer sequence, so nothing is written twice. The
// stream is exact at the end against every acknowledged message: no
// refused record is in the log, and none twice.
func TestStreamBrokerErrors(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.StartWorker()
	r.start()
	// The second run's readings are 20 minutes of event time after the
	// first's start, far past any reading of the first.
	laterStart := time.Now().UTC().Add(-40 * time.Minute).Truncate(time.Minute)
	first := r.load(loadRate, 0)
	first.WaitSent(5000, time.Minute)
	waitUntil(t, "the stream committing", time.Minute, func() bool { return r.Committed() > 2500 })

	c := r.kafka.Cluster
	began := time.Now()
	fetch := faultenv.InjectErrors(c, kmsg.Fetch, brokerErrorTimes, brokerErrorEvery, brokerErrors...)
	list := faultenv.InjectErrors(c, kmsg.ListOffsets, brokerErrorTimes, brokerErrorEvery, brokerErrors...)
	produce := faultenv.InjectErrors(c, kmsg.Produce, brokerErrorTimes, brokerErrorEvery, kerr.NotLeaderForPartition, kerr.RequestTimedOut)
	for _, b := range []*faultenv.BrokerErrors{fetch, list, produce} {
		b.Wait(t, time.Minute)
	}
	t.Logf("Fetch, ListOffsets and Produce answered with errors within %s", time.Since(began).Round(100*time.Millisecond))
	worst := r.caughtUp(first.Sent(), "the retriable errors")

	// A batch refused with a non-retriable error fails its records and
	// those buffered behind them, and the simulator stops on the first
	// failed message.
	refused := faultenv.InjectErrors(c, kmsg.Produce, 1, 0, kerr.UnknownServerError)
	refused.Wait(t, time.Minute)
	rep1, err := first.Result()
	if !errors.Is(err, kerr.UnknownServerError) {
		t.Fatalf("the simulator under a refused batch ended with %v, want UNKNOWN_SERVER_ERROR", err)
	}
	batch := refused.Records(kerr.UnknownServerError)
	if batch == 0 || rep1.Failed < batch {
		t.Errorf("the simulator reports %d failed messages, the refused batch held %d", rep1.Failed, batch)
	}
	t.Logf("UNKNOWN_SERVER_ERROR on Produce: a batch of %d records refused; the simulator reports %d failed and stopped after %d acknowledged: %v",
		batch, rep1.Failed, rep1.Sent, err)
	second := faultenv.StartLoad(t, r.Prod, producer.Options{Seed: 7, Devices: len(r.Fleet.Devices), Rate: loadRate,
		AnomalyRatio: 0.02, BadRatio: loadBadRatio, Start: laterStart})
	second.WaitSent(5000, time.Minute)

	// A timeout answered after the append: the retry is a duplicate the
	// broker must drop. It comes after the refusal: had the refused batch
	// been the retry of one the broker appended, its records would be
	// reported failed and still be in the log, which Kafka allows (a
	// failed produce may have been written).
	appended := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: brokerErrorTimes})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err = appended.Wait(ctx, brokerErrorTimes)
	cancel()
	if err != nil {
		t.Fatalf("REQUEST_TIMED_OUT after the append: %d of %d produce requests answered: %v", appended.Hits(), brokerErrorTimes, err)
	}
	worst = max(worst, r.caughtUp(rep1.Sent+second.Sent(), "REQUEST_TIMED_OUT after the append"))

	faults := int(appended.Hits())
	for _, b := range []*faultenv.BrokerErrors{fetch, list, produce, refused} {
		for _, e := range brokerErrors {
			faults += b.Answered(e)
		}
	}
	for _, b := range []*faultenv.BrokerErrors{fetch, list, produce} {
		for _, e := range brokerErrors {
			want := brokerErrorTimes
			if b == produce && e == kerr.UnknownServerError {
				want = 0
			}
			if got := b.Answered(e); got != want {
				t.Errorf("%s answered with %s %d times, want %d", b.Key.Name(), e.Message, got, want)
			}
		}
	}
	if n := refused.Answered(kerr.UnknownServerError); n != 1 {
		t.Errorf("Produce answered with UNKNOWN_SERVER_ERROR %d times, want 1", n)
	}
	if l := lineWith(r.Worker.Log(), "fetch error"); l != "" {
		t.Logf("the worker saw: %s", strings.TrimSpace(l))
	}

	rep2 := second.Stop()
	rep := faultenv.SumReports(rep1, rep2)
	lost, dup := r.settle(rep, 3*time.Minute)
	st := r.stop()
	t.Logf("final: %d messages acknowledged in two simulator runs, %d failed; %d lease attempts, %d failures, last error %q",
		rep.Sent, rep.Failed, st.LeaseAttempts, st.LeaseFailures, st.LastError)
	faultenv.Record(t, faultenv.Figures{Scenario: "broker errors: stream", Faults: faults, Messages: rep.Sent, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT, UNKNOWN_SERVER_ERROR x3 on Fetch and ListOffsets, the first two x3 on Produce, " +
			"UNKNOWN_SERVER_ERROR on one Produce (franz-go fails the batch and the records buffered behind it; the simulator stops and runs again), " +
			"REQUEST_TIMED_OUT after the append x3 (the retries are deduplicated by the broker); recovery: end of the errors to every message acknowledged by then committed"})
}

// caughtUp waits until the n messages acknowledged so far are committed
// and returns how long that took.
func (r *rig) caughtUp(n int64, after string) time.Duration {
	r.t.Helper()
	d := waitUntil(r.t, "the stream caught up after "+after, 2*time.Minute, func() bool { return r.Committed() >= n })
	r.t.Logf("after %s: the %d messages acknowledged by then committed %s later", after, n, d.Round(100*time.Millisecond))
	return d
}

// TestStreamBrokerRestart runs the stream on devstack's Kafka broker, a
// kfake process that persists its log in a directory, and stops it twice
// (SIGTERM, on which it saves its state) while the simulator publishes
// 2,500 msg/s; 5 s later it starts again on the same port and directory
// each time. The producer keeps what it publishes meanwhile and delivers
// it after the restart, the worker's leases reconnect, and the stream is
// exact at the end: every acknowledged record survived the restarts, once.
func TestStreamBrokerRestart(t *testing.T) {
	const partitions = 4
	var broker *faultenv.DevKafka
	s := e2e.NewStreamWith(t, e2e.StreamOptions{Partitions: partitions, Topic: "faults-" + strings.ToLower(t.Name()), NoWorker: true,
		Cluster: func(k config.Kafka) config.Kafka {
			broker = faultenv.StartDevKafka(t, k.Topic, partitions)
			k.BootstrapServers = []string{broker.Addr}
			return k
		}})
	r := &rig{Stream: s, t: t}
	r.StartWorker()
	r.start()
	load := r.load(loadRate, 0)
	var worst time.Duration
	for i := range brokerRestarts {
		before := load.Sent()
		load.WaitSent(before+7500, time.Minute) // 3 s of load
		waitUntil(t, "commits before the stop", time.Minute, func() bool { return r.Committed() > before })
		committed := r.Committed()
		if err := broker.Stop(30 * time.Second); err != nil {
			t.Fatalf("the broker did not stop cleanly on SIGTERM: %v\n%s", err, broker.Log())
		}
		if !strings.Contains(broker.Log(), "state saved") {
			t.Fatalf("the broker did not save its state on SIGTERM:\n%s", broker.Log())
		}
		time.Sleep(brokerDown)
		acked := load.Sent() // the producer's last acknowledgements arrived while the broker was down
		broker.Start()
		// Every acknowledged record is in the restarted broker's log.
		if logged := r.logged(); logged < acked {
			t.Errorf("stop %d: the restarted broker's log holds %d records, %d were acknowledged before the stop", i+1, logged, acked)
		}
		// Recovered: the stream commits records published after the
		// restart.
		rec := waitUntil(t, "commits after the restart", 2*time.Minute, func() bool { return r.Committed() > acked+1000 })
		worst = max(worst, rec)
		t.Logf("stop %d (SIGTERM) with %d committed and %d acknowledged; started again after %s; committing records published after the restart %s later",
			i+1, committed, acked, brokerDown, rec.Round(100*time.Millisecond))
	}
	load.WaitSent(load.Sent()+7500, time.Minute)

	rep := load.Stop()
	lost, dup := r.settle(rep, 3*time.Minute)
	st := r.stop()
	t.Logf("final: %d lease attempts, %d failures, last error %q", st.LeaseAttempts, st.LeaseFailures, st.LastError)
	faultenv.Record(t, faultenv.Figures{Scenario: "broker restart: stream", Faults: brokerRestarts, Messages: rep.Sent, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "devstack's kfake broker process stopped with SIGTERM (state saved in its data directory) and started again 5 s later on the same port and directory, twice; recovery: start to records published after it committed"})
}

// logged is the sum of the high watermarks of the topic: how many records
// the broker's log holds.
func (r *rig) logged() int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hwms, err := kafka.HighWatermarks(ctx, r.Prod, r.Topic)
	if err != nil {
		r.t.Fatal(err)
	}
	var n int64
	for _, hwm := range hwms {
		n += hwm
	}
	return n
}

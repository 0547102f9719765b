package faultenv

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
)

// Load is the project's simulator publishing to a topic in the
// background, at a steady rate, through the same idempotent franz-go
// producer `starter simulate` uses.
type Load struct {
	t      testing.TB
	cancel context.CancelFunc
	done   chan struct{}
	sent   atomic.Int64
	report producer.Report
	err    error
}

// StartLoad runs the simulator of opts on cl (a client made with
// kafka.ProducerOptions). Progress is sampled every 200 ms; opts.Progress
// is replaced.
func StartLoad(t testing.TB, cl *kgo.Client, opts producer.Options) *Load {
	t.Helper()
	l := &Load{t: t, done: make(chan struct{})}
	opts.ProgressEvery = 200 * time.Millisecond
	opts.Progress = func(r producer.Report) { l.sent.Store(r.Sent) }
	sim, err := producer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(l.done)
		l.report, l.err = sim.Run(ctx, producer.KafkaPublisher{Client: cl})
		l.sent.Store(l.report.Sent)
	}()
	t.Cleanup(func() { l.cancel(); <-l.done })
	return l
}

// Sent is about how many messages were acknowledged so far.
func (l *Load) Sent() int64 { return l.sent.Load() }

// WaitSent waits until at least n messages were acknowledged.
func (l *Load) WaitSent(n int64, timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for l.Sent() < n {
		if time.Now().After(deadline) {
			l.t.Fatalf("the load sent %d messages in %s, want %d", l.Sent(), timeout, n)
		}
		select {
		case <-l.done:
			if l.Sent() < n {
				l.t.Fatalf("the load ended after %d messages, want %d: %v", l.Sent(), n, l.err)
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the load (if its limits did not) and returns what it
// published; a publisher error fails the test.
func (l *Load) Stop() producer.Report {
	l.t.Helper()
	l.cancel()
	return l.Wait()
}

// Wait waits until the load reaches its limits and returns its report.
func (l *Load) Wait() producer.Report {
	l.t.Helper()
	<-l.done
	if l.err != nil {
		l.t.Fatalf("load: %v", l.err)
	}
	if l.report.Failed != 0 {
		l.t.Fatalf("load: %d messages failed to publish", l.report.Failed)
	}
	return l.report
}

// Expect is what a stream must land for the messages of r.
func Expect(r producer.Report) e2e.StreamExpect {
	by := map[string]int64{}
	for reason, n := range r.Bad {
		by[string(reason)] = n
	}
	return e2e.StreamExpect{Produced: r.Sent, Quarantined: r.BadTotal(), ByReason: by}
}

package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/health"
	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/metrics"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Defaults of the lease loop.
const (
	defaultHeartbeatEvery = time.Second
	defaultProgressEvery  = 5 * time.Second
	// idlePoll bounds one poll of an empty batch, so the loop checks its
	// stop conditions at least this often.
	idlePoll = time.Second
	// dbTimeout bounds one database step of a lease (claim, commit).
	dbTimeout = 2 * time.Minute
	// refusedConnections is how many connection attempts in a row the
	// brokers may refuse (TLS, SASL) before the lease fails and says why.
	refusedConnections = 3
	// probeEvery is how often a lease asks the brokers for the high
	// watermarks of its partitions (a request every broker answers at
	// once, idle or not), each ask bounded by probeTimeout.
	probeEvery   = 2 * time.Second
	probeTimeout = 5 * time.Second
	// stallAfter is how long a commit may be pending, or the brokers
	// silent, before the lease reports it as its problem.
	stallAfter = 5 * time.Second
)

// leaseHooks connect a lease to Temporal. ConsumeLease fills them with the
// client; tests with stubs.
type leaseHooks struct {
	owner      string
	heartbeat  func(ctx context.Context, hb LeaseHeartbeat) error
	progress   func(ctx context.Context, p LeaseProgress) error
	workerStop <-chan struct{}
	log        *slog.Logger
}

// lease is one run of ConsumeLease: Kafka in, the ingest core in the
// middle, the stream sink out, and the heartbeats and progress signals
// that keep Temporal informed.
type lease struct {
	s     *Stream
	in    LeaseInput
	hooks leaseHooks
	// logp is the lease's logger; start adds the claimed epochs to it
	// while the heartbeat goroutine may already log.
	logp atomic.Pointer[slog.Logger]

	batcher *ingest.Batcher
	conn    *kafka.ConnWatch // the consumer's connection attempts

	// Shared with the heartbeat, progress and probe goroutines.
	mu            sync.Mutex
	snapshot      []PartitionProgress
	batches       int64
	commitSince   time.Time // when the pending commit began; zero when none
	commitRecords int
	kafkaOK       time.Time // when the brokers last answered a probe
	kafkaErr      error     // the last failed probe's error
	probedHWMs    map[int32]int64

	stopOnce   sync.Once
	stopReason string
	stopFetch  context.CancelFunc
	stopped    chan struct{}
}

// log is the lease's logger.
func (l *lease) log() *slog.Logger { return l.logp.Load() }

// stop ends fetching; the first reason wins.
func (l *lease) stop(reason string) {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.stopReason = reason
		l.mu.Unlock()
		l.stopFetch()
		close(l.stopped)
	})
}

func (l *lease) isStopped() bool {
	select {
	case <-l.stopped:
		return true
	default:
		return false
	}
}

// runLease is ConsumeLease without Temporal.
func (s *Stream) runLease(ctx context.Context, in LeaseInput, hooks leaseHooks) (LeaseResult, error) {
	if len(in.Partitions) == 0 {
		return LeaseResult{Slot: in.Slot, End: LeaseEndDrained}, nil
	}
	l := &lease{s: s, in: in, hooks: hooks, stopped: make(chan struct{})}
	l.logp.Store(cmp.Or(hooks.log, s.logger()))
	// Database and Kafka work runs on a context the activity's cancellation
	// does not reach: a cancelled lease still commits its open batch.
	work := context.WithoutCancel(ctx)
	fetchCtx, stopFetch := context.WithCancel(work)
	l.stopFetch = stopFetch
	defer stopFetch()

	// Heartbeats start first: opening the sink and claiming the partitions
	// take several round trips to the database, which a slow link makes
	// longer than the heartbeat timeout.
	var bg sync.WaitGroup
	done := make(chan struct{})
	defer func() { close(done); bg.Wait() }()
	bg.Add(1)
	go func() { defer bg.Done(); l.heartbeatLoop(work, done) }()

	// A lease that Temporal gave up on while it started (stop cancels
	// fetchCtx) claims nothing.
	sk, err := l.start(fetchCtx)
	if err != nil {
		return LeaseResult{Slot: in.Slot}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(work, 10*time.Second)
		defer cancel()
		_ = sk.Close(cctx)
	}()

	offsets := l.batcher.Positions()
	l.conn = kafka.NewConnWatch(s.Kafka)
	cl, err := kafka.NewPartitionConsumer(s.Kafka, nil, in.Topic, offsets, 0, l.conn.Opt(),
		s.Metrics.LeaseKafkaClient(in.Slot))
	if err != nil {
		return LeaseResult{Slot: in.Slot}, err
	}
	defer cl.Close()
	l.probe(work, cl)
	l.observeProbed()
	l.publish()

	l.log().Info("stream lease started", "owner", hooks.owner, "offsets", offsets,
		"duration", in.Duration, "drain", in.DrainTo != nil, "test_mode", in.TestMode, "debug", in.Debug)

	// Stop conditions that are not part of the fetch loop: the activity's
	// own cancellation, the worker stopping, the lease duration.
	bg.Add(3)
	go func() {
		defer bg.Done()
		var timeout <-chan time.Time
		if in.Duration > 0 {
			t := time.NewTimer(in.Duration)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ctx.Done():
			l.stop(LeaseEndCancelled)
		case <-hooks.workerStop:
			l.stop(LeaseEndWorkerStop)
		case <-timeout:
			l.stop(LeaseEndDuration)
		case <-done:
		}
	}()
	go func() { defer bg.Done(); l.progressLoop(work, done) }()
	go func() {
		defer bg.Done()
		tick(done, probeEvery, func(time.Time) bool { l.probe(work, cl); return true })
	}()

	if l.batcher.Drained() {
		l.stop(LeaseEndDrained)
	}
	if err := l.consume(work, fetchCtx, cl); err != nil {
		l.stop("failed")
		return l.result(), err
	}
	res := l.result()
	l.log().Info("stream lease ended", "end", res.End, "batches", res.Batches, "offsets", l.committedOffsets())
	return res, nil
}

// start opens the sink, loads the registry, claims the partitions (test
// mode: reads their committed state, claiming nothing) and starts the
// ingest core from that state.
func (l *lease) start(ctx context.Context) (*sink.Sink, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	win := l.s.windowLength(l.in.Window)
	sk, err := sink.Open(ctx, l.s.Timescale, l.in.Topic, win)
	if err != nil {
		return nil, err
	}
	registry := func(ctx context.Context) (map[string]ingest.Device, error) {
		return sink.Registry(ctx, l.s.MySQL)
	}
	devices, err := registry(ctx)
	if err != nil {
		_ = sk.Close(ctx)
		return nil, err
	}
	var claimed map[int32]ingest.Offset
	if l.in.TestMode {
		claimed, err = sk.Offsets(ctx)
	} else {
		claimed, err = sk.Claim(ctx, l.in.Partitions, l.hooks.owner)
	}
	if err != nil {
		_ = sk.Close(ctx)
		return nil, err
	}
	// From here on every line of the lease names the epoch of each of its
	// partitions (the fence its commits carry).
	epochs := make(map[int32]int64, len(claimed))
	for p, o := range claimed {
		epochs[p] = o.Epoch
	}
	l.logp.Store(l.log().With("epochs", epochs))
	l.batcher = ingest.New(ingest.Options{
		MaxRecords:      cmp.Or(l.in.MaxBatchRecords, l.s.Config.MaxBatchRecords),
		MaxWait:         cmp.Or(l.in.MaxBatchWait, l.s.Config.MaxBatchWait),
		Window:          win,
		AllowedLateness: l.in.AllowedLateness,
		Params:          l.s.Params,
		RegistryRefresh: l.s.RegistryRefresh,
		TestMode:        l.in.TestMode,
		Echo:            l.in.Debug || l.in.TestMode,
		DrainTo:         l.in.DrainTo,
		Log:             l.log(),
	}, timedSink{sk, l.in.Topic, l.s.Metrics}, registry, devices, claimed, l.in.Partitions)
	return sk, nil
}

// timedSink bounds each database step of the ingest core and records the
// commits' latency and size.
type timedSink struct {
	s       *sink.Sink
	topic   string
	metrics *metrics.Stream
}

func (t timedSink) Commit(ctx context.Context, b *ingest.Batch) (map[int32]ingest.Counters, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	start := time.Now()
	out, err := t.s.Commit(ctx, b)
	if err == nil {
		var records int64
		for _, o := range b.Offsets {
			records += o.Counters.Records
		}
		t.metrics.Committed(t.topic, time.Since(start), int(records))
	}
	return out, err
}

func (t timedSink) RecentReadings(ctx context.Context, devices []string, until time.Time, window time.Duration) ([]reading.Reading, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	return t.s.RecentReadings(ctx, devices, until, window)
}

// consume is the fetch loop: records go to the ingest core, and its open
// batch is committed when it is full, when it is MaxBatchWait old, or when
// the lease stops.
func (l *lease) consume(ctx, fetchCtx context.Context, cl *kgo.Client) error {
	var batch []ingest.Record
	for {
		if l.isStopped() {
			if l.batcher.Open() > 0 {
				return l.commit(ctx)
			}
			return nil
		}
		if l.batcher.Due() {
			if err := l.commit(ctx); err != nil {
				return err
			}
			continue
		}
		l.observeProbed()
		pctx, cancel := context.WithTimeout(fetchCtx, l.batcher.Wait(idlePoll))
		fetches := cl.PollRecords(pctx, l.batcher.Room())
		cancel()
		if fetches.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fatal := l.fetchErrors(fetches)
		batch = batch[:0]
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			l.batcher.ObserveHighWatermark(fp.Partition, fp.HighWatermark)
			for _, r := range fp.Records {
				batch = append(batch, ingest.Record{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp})
			}
		})
		if len(batch) > 0 {
			if err := l.batcher.Take(ctx, batch); err != nil {
				return err
			}
		}
		if fatal != nil {
			if l.batcher.Open() > 0 {
				if err := l.commit(ctx); err != nil {
					return errors.Join(fatal, err)
				}
			}
			return fatal
		}
		if l.batcher.Drained() {
			l.stop(LeaseEndDrained)
		}
	}
}

// fetchErrors logs what the client retries on its own and returns the
// first error that retrying cannot fix (a refused certificate, revoked
// credentials, a missing ACL): the lease then ends once what was fetched is
// committed, and the workflow shows the error and restarts the lease with
// a growing backoff. franz-go retries a refused connection without
// surfacing it in the fetches, so the connection watch is asked too.
func (l *lease) fetchErrors(fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(topic string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if d := health.Diagnose(err, health.KafkaSettings); health.LayerOf(d) != "" {
			if fatal == nil {
				fatal = fmt.Errorf("kafka fetch of %s/%d: %w", topic, p, d)
			}
			return
		}
		l.log().Warn("stream lease: fetch error", "topic", topic, "partition", p, "error", err)
	})
	if n, err := l.conn.Last(); fatal == nil && n >= refusedConnections {
		if d := health.Diagnose(err, health.KafkaSettings); health.LayerOf(d) != "" {
			fatal = fmt.Errorf("kafka refused %d connections in a row: %w", n, d)
		}
	}
	return fatal
}

// commit commits the open batch and publishes the new committed state.
func (l *lease) commit(ctx context.Context) error {
	l.mu.Lock()
	l.commitSince, l.commitRecords = time.Now(), l.batcher.Open()
	l.mu.Unlock()
	err := l.batcher.Commit(ctx)
	l.mu.Lock()
	l.commitSince = time.Time{}
	l.batches = l.batcher.Batches()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	l.publish()
	return nil
}

// publish copies the committed state for the heartbeat and progress loops.
func (l *lease) publish() {
	committed := l.batcher.Committed()
	snap := make([]PartitionProgress, 0, len(committed))
	for _, p := range committed {
		snap = append(snap, PartitionProgress{
			Partition: p.Partition, Epoch: p.Epoch, Consumed: p.Consumed, NextOffset: p.NextOffset,
			HighWatermark: p.HighWatermark, Lag: p.Lag(), Watermark: p.Watermark, Counters: p.Counters,
		})
	}
	l.mu.Lock()
	l.snapshot = snap
	l.mu.Unlock()
}

// probe asks the brokers for the high watermarks of the topic: the lag of
// an idle lease stays current, and silent brokers are noticed even when no
// record is due.
func (l *lease) probe(ctx context.Context, cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	hwms, err := kafka.HighWatermarks(ctx, cl, l.in.Topic)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.kafkaErr = err
		return
	}
	l.kafkaOK, l.kafkaErr = time.Now(), nil
	if l.probedHWMs == nil {
		l.probedHWMs = map[int32]int64{}
	}
	for _, p := range l.in.Partitions {
		if hwm, ok := hwms[p]; ok {
			l.probedHWMs[p] = hwm
		}
	}
}

// observeProbed hands the probed high watermarks to the ingest core (on
// the fetch loop's goroutine, which owns it).
func (l *lease) observeProbed() {
	l.mu.Lock()
	hwms := l.probedHWMs
	l.probedHWMs = nil
	l.mu.Unlock()
	for p, hwm := range hwms {
		l.batcher.ObserveHighWatermark(p, hwm)
	}
}

// problem is what holds the lease up at now: a commit pending for longer
// than stallAfter, brokers that have not answered a probe for as long, or
// brokers that never answered one.
func (l *lease) problem(now time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	if !l.commitSince.IsZero() && now.Sub(l.commitSince) >= stallAfter {
		out = append(out, fmt.Sprintf("TimescaleDB: commit of %d records pending for %s", l.commitRecords, now.Sub(l.commitSince).Truncate(time.Second)))
	}
	switch silent := now.Sub(l.kafkaOK); {
	case l.kafkaErr == nil:
	case l.kafkaOK.IsZero():
		// Never answered (refused credentials, a wrong address): a
		// problem from the first report, so that a lease that cannot
		// start does not look healthy and clear its slot's failures.
		out = append(out, fmt.Sprintf("Kafka: no answer from the brokers since the lease started: %v", l.kafkaErr))
	case silent >= stallAfter:
		out = append(out, fmt.Sprintf("Kafka: no answer from the brokers for %s: %v", silent.Truncate(time.Second), l.kafkaErr))
	}
	return strings.Join(out, "; ")
}

func (l *lease) current() []PartitionProgress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.snapshot)
}

func (l *lease) committedOffsets() map[int32]int64 {
	out := map[int32]int64{}
	for _, p := range l.current() {
		out[p.Partition] = p.NextOffset
	}
	return out
}

// heartbeatLoop heartbeats every second until done; a cancellation or a
// lost activity in the response stops the lease.
func (l *lease) heartbeatLoop(ctx context.Context, done <-chan struct{}) {
	if l.hooks.heartbeat == nil {
		return
	}
	tick(done, cmp.Or(max(l.s.HeartbeatEvery, 0), defaultHeartbeatEvery), func(time.Time) bool {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.hooks.heartbeat(hctx, LeaseHeartbeat{Offsets: l.committedOffsets()})
		cancel()
		if reason := leaseStopReason(err); reason != "" {
			l.stop(reason)
			return false
		} else if err != nil {
			l.log().Warn("stream lease: heartbeat failed", "error", err)
		}
		return true
	})
}

// progressLoop sends a lease-progress signal every ProgressEvery when the
// progress changed, with the rate since the previous signal; going idle is
// a change too (the rate drops to 0).
func (l *lease) progressLoop(ctx context.Context, done <-chan struct{}) {
	if l.hooks.progress == nil {
		return
	}
	var last []PartitionProgress
	var lastProblem string
	lastAt := time.Now()
	tick(done, cmp.Or(max(l.in.ProgressEvery, 0), defaultProgressEvery), func(now time.Time) bool {
		cur := l.current()
		elapsed := now.Sub(lastAt).Seconds()
		prev := map[int32]PartitionProgress{}
		for _, p := range last {
			prev[p.Partition] = p
		}
		problem := l.problem(now)
		changed := len(last) != len(cur) || problem != lastProblem
		for i := range cur {
			p := &cur[i]
			before, seen := prev[p.Partition]
			if seen && elapsed > 0 {
				p.Rate = float64(p.Counters.Records-before.Counters.Records) / elapsed
			}
			p.At = now.UTC()
			if !seen || p.NextOffset != before.NextOffset || p.HighWatermark != before.HighWatermark || p.Rate != before.Rate || p.Epoch != before.Epoch {
				changed = true
			}
		}
		if !changed {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.hooks.progress(pctx, LeaseProgress{Slot: l.in.Slot, Partitions: cur, At: now.UTC(), Problem: problem})
		cancel()
		if err != nil {
			l.log().Warn("stream lease: progress signal failed", "error", err)
			return true
		}
		switch {
		case problem != "" && lastProblem == "":
			l.log().Warn("stream lease: held up", "problem", problem)
		case problem == "" && lastProblem != "":
			l.log().Info("stream lease: progressing again", "was", lastProblem)
		}
		last, lastAt, lastProblem = cur, now, problem
		return true
	})
}

func (l *lease) result() LeaseResult {
	l.mu.Lock()
	end, batches := l.stopReason, l.batches
	l.mu.Unlock()
	parts := l.current()
	now := time.Now().UTC()
	for i := range parts {
		parts[i].At = now
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Partition < parts[j].Partition })
	return LeaseResult{Slot: l.in.Slot, Partitions: parts, End: end, Batches: batches}
}

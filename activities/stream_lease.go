package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/kafka"
	"github.com/iot-etl/iot-etl/internal/reading"
	"github.com/iot-etl/iot-etl/internal/store"
	"github.com/iot-etl/iot-etl/internal/transform"
	"github.com/iot-etl/iot-etl/internal/window"
)

// Defaults of the lease loop.
const (
	defaultHeartbeatEvery  = time.Second
	defaultProgressEvery   = 5 * time.Second
	defaultRegistryRefresh = 30 * time.Second
	// idlePoll bounds one poll of an empty batch, so the loop checks its
	// stop conditions at least this often.
	idlePoll = time.Second
	// dbTimeout bounds one database step of a lease (claim, commit).
	dbTimeout = 2 * time.Minute
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

// partitionState is a lease's view of one owned partition.
type partitionState struct {
	id       int32
	epoch    int64
	consumed bool
	// committed is the committed next offset (test mode: the position).
	committed int64
	// claimWatermark is the watermark committed before this lease: stored
	// readings up to it warm the transform state of devices.
	claimWatermark time.Time
	watermark      window.Watermark // includes the open batch
	committedWM    window.Watermark
	counters       store.StreamCounters // committed totals
	hwm            int64
	drainTo        int64
	draining       bool

	// The open batch.
	next    int64 // offset after the last record taken into the batch
	pending store.StreamCounters
}

func (p *partitionState) reachedDrain() bool { return p.draining && p.next >= p.drainTo }

type readingKey struct {
	device string
	micros int64
}

// openBatch is the micro-batch being assembled.
type openBatch struct {
	records  int
	started  time.Time
	readings []store.StreamReading
	dead     []store.DeadLetter
	seen     map[readingKey]struct{}
}

func (b *openBatch) reset() {
	b.records, b.started = 0, time.Time{}
	b.readings, b.dead = b.readings[:0], b.dead[:0]
	clear(b.seen)
}

// decoded is a record accepted by the decoder and the window stage, waiting
// for the transform (which may need its device's state warmed first).
type decoded struct {
	partition int32
	offset    int64
	r         reading.Reading
}

// lease is one run of ConsumeLease.
type lease struct {
	s     *Stream
	in    LeaseInput
	hooks leaseHooks
	log   *slog.Logger

	maxRecords int
	maxWait    time.Duration
	params     transform.Params

	sink       *store.StreamSink
	registry   map[string]store.StreamDevice
	devices    *reading.DeviceSet
	registryAt time.Time
	states     map[string]*transform.DeviceState

	parts map[int32]*partitionState
	order []int32
	batch openBatch

	// Shared with the heartbeat and progress goroutines.
	mu       sync.Mutex
	snapshot []PartitionProgress
	batches  int64

	stopOnce   sync.Once
	stopReason string
	stopFetch  context.CancelFunc
	stopped    chan struct{}
}

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
	l := &lease{
		s: s, in: in, hooks: hooks, log: hooks.log,
		maxRecords: in.MaxBatchRecords, maxWait: in.MaxBatchWait, params: s.Params,
		states: map[string]*transform.DeviceState{}, parts: map[int32]*partitionState{},
		batch:   openBatch{seen: map[readingKey]struct{}{}},
		stopped: make(chan struct{}),
	}
	if l.log == nil {
		l.log = s.logger()
	}
	if l.maxRecords <= 0 {
		l.maxRecords = s.Config.MaxBatchRecords
	}
	if l.maxRecords <= 0 {
		l.maxRecords = 5000
	}
	if l.maxWait <= 0 {
		l.maxWait = s.Config.MaxBatchWait
	}
	if l.maxWait <= 0 {
		l.maxWait = 200 * time.Millisecond
	}
	if l.params == (transform.Params{}) {
		l.params = transform.DefaultParams()
	}
	// Database and Kafka work runs on a context the activity's cancellation
	// does not reach: a cancelled lease still commits its open batch.
	work := context.WithoutCancel(ctx)
	fetchCtx, stopFetch := context.WithCancel(work)
	l.stopFetch = stopFetch
	defer stopFetch()

	if err := l.start(work); err != nil {
		return LeaseResult{Slot: in.Slot}, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(work, 10*time.Second)
		defer cancel()
		_ = l.sink.Close(cctx)
	}()

	offsets := make(map[int32]int64, len(l.order))
	for _, p := range l.order {
		offsets[p] = l.parts[p].committed
	}
	cl, err := kafka.NewPartitionConsumer(s.Kafka, nil, in.Topic, offsets, 0)
	if err != nil {
		return LeaseResult{Slot: in.Slot}, err
	}
	defer cl.Close()
	hctx, hcancel := context.WithTimeout(work, 10*time.Second)
	if hwms, err := kafka.HighWatermarks(hctx, cl, in.Topic); err == nil {
		for _, p := range l.order {
			l.parts[p].hwm = max(hwms[p], l.parts[p].committed)
		}
	} else {
		l.log.Warn("stream lease: high watermarks unavailable", "error", err)
	}
	hcancel()
	l.publish()

	l.log.Info("stream lease started", "partitions", in.Partitions, "owner", hooks.owner, "offsets", offsets,
		"duration", in.Duration, "drain", in.DrainTo != nil, "test_mode", in.TestMode, "debug", in.Debug)

	// Stop conditions that are not part of the fetch loop: the activity's
	// own cancellation, the worker stopping, the lease duration.
	var bg sync.WaitGroup
	done := make(chan struct{})
	defer func() { close(done); bg.Wait() }()
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
	go func() { defer bg.Done(); l.heartbeatLoop(work, done) }()
	go func() { defer bg.Done(); l.progressLoop(work, done) }()

	if l.drainReached() {
		l.stop(LeaseEndDrained)
	}
	if err := l.consume(work, fetchCtx, cl); err != nil {
		l.stop("failed")
		return l.result(), err
	}
	res := l.result()
	l.log.Info("stream lease ended", "end", res.End, "batches", res.Batches, "offsets", l.committedOffsets())
	return res, nil
}

// start opens the sink, loads the registry and claims the partitions.
func (l *lease) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	sink, err := store.OpenStreamSink(ctx, l.s.Timescale, l.in.Topic)
	if err != nil {
		return err
	}
	l.sink = sink
	if err := l.loadRegistry(ctx); err != nil {
		_ = sink.Close(ctx)
		return err
	}
	var claimed map[int32]store.StreamOffset
	if l.in.TestMode {
		claimed, err = sink.Offsets(ctx) // read only: test mode writes nothing
	} else {
		claimed, err = sink.Claim(ctx, l.in.Partitions, l.hooks.owner)
	}
	if err != nil {
		_ = sink.Close(ctx)
		return err
	}
	for _, p := range l.in.Partitions {
		o, ok := claimed[p]
		ps := &partitionState{
			id: p, epoch: o.Epoch, consumed: ok, committed: o.NextOffset, next: o.NextOffset,
			claimWatermark: o.Watermark, watermark: window.RestoreWatermark(o.Watermark), counters: o.Counters,
		}
		ps.committedWM = ps.watermark
		if l.in.DrainTo != nil {
			// A partition missing from DrainTo has nothing to drain.
			ps.draining, ps.drainTo = true, l.in.DrainTo[p]
		}
		l.parts[p] = ps
		l.order = append(l.order, p)
	}
	slices.Sort(l.order)
	return nil
}

func (l *lease) loadRegistry(ctx context.Context) error {
	reg, err := store.StreamRegistry(ctx, l.s.MySQL)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(reg))
	for id := range reg {
		ids = append(ids, id)
	}
	l.registry, l.devices, l.registryAt = reg, reading.NewDeviceSet(ids), time.Now()
	return nil
}

// maybeRefreshRegistry reloads the registry after an unknown device id, at
// most every RegistryRefresh, and reports whether it did.
func (l *lease) maybeRefreshRegistry(ctx context.Context) bool {
	every := l.s.RegistryRefresh
	if every <= 0 {
		every = defaultRegistryRefresh
	}
	if time.Since(l.registryAt) < every {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := l.loadRegistry(ctx); err != nil {
		l.registryAt = time.Now() // keep the old registry, try again later
		l.log.Warn("stream lease: device registry reload failed", "error", err)
		return false
	}
	l.log.Info("stream lease: device registry reloaded", "devices", l.devices.Len())
	return true
}

func (l *lease) drainReached() bool {
	if l.in.DrainTo == nil {
		return false
	}
	for _, p := range l.order {
		if !l.parts[p].reachedDrain() {
			return false
		}
	}
	return true
}

// consume is the fetch loop: assemble micro-batches and commit each when it
// is full, when it is MaxBatchWait old, or when the lease stops.
func (l *lease) consume(ctx, fetchCtx context.Context, cl *kgo.Client) error {
	for {
		if l.isStopped() {
			if l.batch.records > 0 {
				return l.commit(ctx)
			}
			return nil
		}
		if l.batch.records >= l.maxRecords || (l.batch.records > 0 && time.Since(l.batch.started) >= l.maxWait) {
			if err := l.commit(ctx); err != nil {
				return err
			}
			continue
		}
		wait := idlePoll
		if l.batch.records > 0 {
			wait = max(l.maxWait-time.Since(l.batch.started), time.Millisecond)
		}
		pctx, cancel := context.WithTimeout(fetchCtx, wait)
		fetches := cl.PollRecords(pctx, l.maxRecords-l.batch.records)
		cancel()
		if fetches.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			l.log.Warn("stream lease: fetch error", "topic", topic, "partition", p, "error", err)
		})
		var polled []*kgo.Record
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if ps, ok := l.parts[fp.Partition]; ok && fp.HighWatermark > ps.hwm {
				ps.hwm = fp.HighWatermark
			}
			polled = append(polled, fp.Records...)
		})
		if len(polled) > 0 {
			if err := l.take(ctx, polled); err != nil {
				return err
			}
		}
		if l.drainReached() {
			l.stop(LeaseEndDrained)
		}
	}
}

// take validates polled records into the open batch: decode (quarantine),
// lateness (quarantine), repeats within the batch (duplicates), then the
// shared transform for the anomaly flags.
func (l *lease) take(ctx context.Context, records []*kgo.Record) error {
	if l.batch.records == 0 {
		l.batch.started = time.Now()
	}
	lim := reading.Limits{Devices: l.devices}
	var accepted []decoded
	var cold map[int32][]string // devices without transform state, per partition
	for _, rec := range records {
		ps, ok := l.parts[rec.Partition]
		if !ok {
			continue
		}
		if ps.draining && rec.Offset >= ps.drainTo {
			continue // beyond the drain target: left for the next start
		}
		l.batch.records++
		ps.pending.Records++
		ps.next = rec.Offset + 1

		r, _, err := reading.Decode(rec.Value, rec.Timestamp, lim)
		if reason, ok := reading.RejectionReason(err); ok && reason == reading.ReasonUnknownDevice && l.maybeRefreshRegistry(ctx) {
			lim.Devices = l.devices
			r, _, err = reading.Decode(rec.Value, rec.Timestamp, lim)
		}
		if err != nil {
			reason, _ := reading.RejectionReason(err)
			l.deadLetter(ps, rec, string(reason), err.Error())
			continue
		}
		if !ps.watermark.Accept(r.Time, l.in.AllowedLateness) {
			l.deadLetter(ps, rec, string(window.ReasonLate), fmt.Sprintf(
				"window [%s, %s) closed: partition watermark %s, allowed lateness %s",
				window.Start(r.Time).Format(time.RFC3339), window.End(r.Time).Format(time.RFC3339),
				ps.watermark.Time().Format(time.RFC3339Nano), l.in.AllowedLateness))
			continue
		}
		key := readingKey{r.DeviceID, r.Time.UnixMicro()}
		if _, dup := l.batch.seen[key]; dup {
			ps.pending.Duplicates++
			if l.in.Debug || l.in.TestMode {
				l.log.Info("stream duplicate", "partition", rec.Partition, "offset", rec.Offset, "device_id", r.DeviceID, "time", r.Time)
			}
			continue
		}
		l.batch.seen[key] = struct{}{}
		if _, warm := l.states[r.DeviceID]; !warm {
			if cold == nil {
				cold = map[int32][]string{}
			}
			if !slices.Contains(cold[ps.id], r.DeviceID) {
				cold[ps.id] = append(cold[ps.id], r.DeviceID)
			}
		}
		accepted = append(accepted, decoded{partition: rec.Partition, offset: rec.Offset, r: r})
	}
	if err := l.warm(ctx, cold); err != nil {
		return err
	}
	for _, d := range accepted {
		e := l.states[d.r.DeviceID].Push(d.r)
		var reasons []string
		if e.Anomaly {
			reasons = e.Reasons
		}
		l.batch.readings = append(l.batch.readings, store.StreamReading{Partition: d.partition, Offset: d.offset, Reading: d.r, Reasons: reasons})
		if l.in.Debug || l.in.TestMode {
			attrs := []any{"partition", d.partition, "offset", d.offset, "device_id", d.r.DeviceID, "time", d.r.Time,
				"battery", d.r.Battery, "rssi", d.r.RSSI}
			if d.r.ValueValid {
				attrs = append(attrs, "value", d.r.Value)
			} else {
				attrs = append(attrs, "value", nil)
			}
			if reasons != nil {
				attrs = append(attrs, "anomaly", reasons)
			}
			l.log.Info("stream record", attrs...)
		}
	}
	return nil
}

func (l *lease) deadLetter(ps *partitionState, rec *kgo.Record, reason, detail string) {
	ps.pending.DeadLetters++
	l.batch.dead = append(l.batch.dead, store.DeadLetter{
		Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Raw: rec.Value,
		Reason: reason, Error: detail, RecordTime: rec.Timestamp,
	})
	if l.in.Debug || l.in.TestMode {
		l.log.Info("stream dead letter", "partition", rec.Partition, "offset", rec.Offset, "reason", reason, "error", detail)
	}
}

// warm creates the transform state of devices seen for the first time in
// this lease and pushes their stored readings of the last Params.Window up
// to the partition's watermark at claim time, so that a restarted lease
// flags readings as an uninterrupted one would.
func (l *lease) warm(ctx context.Context, cold map[int32][]string) error {
	parts := make([]int32, 0, len(cold))
	for p := range cold {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		ids := cold[p]
		for _, id := range ids {
			d := l.registry[id]
			l.states[id] = transform.NewDeviceState(d.Device, d.Type, reading.Location{ID: d.Device.LocationID}, l.params)
		}
		until := l.parts[p].claimWatermark
		if until.IsZero() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, dbTimeout)
		history, err := l.sink.RecentReadings(qctx, ids, until, l.params.Window)
		cancel()
		if err != nil {
			return err
		}
		for _, r := range history {
			l.states[r.DeviceID].Push(r)
		}
	}
	return nil
}

// commit writes the open batch (test mode: only logs it) and advances the
// lease's committed state.
func (l *lease) commit(ctx context.Context) error {
	b := &store.StreamBatch{Readings: l.batch.readings, DeadLetters: l.batch.dead}
	for _, p := range l.order {
		ps := l.parts[p]
		if ps.pending.Records == 0 {
			continue
		}
		b.Offsets = append(b.Offsets, store.OffsetAdvance{
			Partition: p, Epoch: ps.epoch, Expected: ps.committed, Next: ps.next,
			Watermark: ps.watermark.Time(), Counters: ps.pending,
		})
	}
	began := time.Now()
	var added map[int32]store.StreamCounters
	if l.in.TestMode {
		added = map[int32]store.StreamCounters{}
		for _, r := range b.Readings {
			c := added[r.Partition]
			c.Inserted++
			added[r.Partition] = c
		}
		for _, o := range b.Offsets {
			c := added[o.Partition]
			c.Records, c.DeadLetters, c.Duplicates = o.Counters.Records, o.Counters.DeadLetters, o.Counters.Duplicates
			added[o.Partition] = c
		}
	} else {
		cctx, cancel := context.WithTimeout(ctx, dbTimeout)
		var err error
		added, err = l.sink.Commit(cctx, b)
		cancel()
		if err != nil {
			return err
		}
	}
	for _, o := range b.Offsets {
		ps := l.parts[o.Partition]
		ps.committed, ps.committedWM, ps.consumed = ps.next, ps.watermark, true
		ps.counters.Add(added[o.Partition])
		ps.pending = store.StreamCounters{}
	}
	if l.in.Debug || l.in.TestMode {
		l.log.Info("stream batch", "test_mode", l.in.TestMode, "records", l.batch.records, "readings", len(b.Readings),
			"dead_letters", len(b.DeadLetters), "elapsed", time.Since(began))
	}
	l.batch.reset()
	l.mu.Lock()
	l.batches++
	l.mu.Unlock()
	l.publish()
	return nil
}

// publish copies the committed state for the heartbeat and progress loops.
func (l *lease) publish() {
	snap := make([]PartitionProgress, 0, len(l.order))
	for _, p := range l.order {
		ps := l.parts[p]
		hwm := max(ps.hwm, ps.committed)
		snap = append(snap, PartitionProgress{
			Partition: p, Epoch: ps.epoch, Consumed: ps.consumed, NextOffset: ps.committed,
			HighWatermark: hwm, Lag: hwm - ps.committed, Watermark: ps.committedWM.Time(), Counters: ps.counters,
		})
	}
	l.mu.Lock()
	l.snapshot = snap
	l.mu.Unlock()
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
	every := l.s.HeartbeatEvery
	if every <= 0 {
		every = defaultHeartbeatEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.hooks.heartbeat(hctx, LeaseHeartbeat{Offsets: l.committedOffsets()})
		cancel()
		if reason := leaseStopReason(err); reason != "" {
			l.stop(reason)
			return
		} else if err != nil {
			l.log.Warn("stream lease: heartbeat failed", "error", err)
		}
	}
}

// progressLoop sends a lease-progress signal every ProgressEvery when the
// progress changed, with the rate since the previous signal; going idle is
// a change too (the rate drops to 0).
func (l *lease) progressLoop(ctx context.Context, done <-chan struct{}) {
	if l.hooks.progress == nil {
		return
	}
	every := l.in.ProgressEvery
	if every <= 0 {
		every = defaultProgressEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var last []PartitionProgress
	lastAt := time.Now()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		now := time.Now()
		cur := l.current()
		elapsed := now.Sub(lastAt).Seconds()
		prev := map[int32]PartitionProgress{}
		for _, p := range last {
			prev[p.Partition] = p
		}
		changed := len(last) != len(cur)
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
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.hooks.progress(pctx, LeaseProgress{Slot: l.in.Slot, Partitions: cur, At: now.UTC()})
		cancel()
		if err != nil {
			l.log.Warn("stream lease: progress signal failed", "error", err)
			continue
		}
		last, lastAt = cur, now
	}
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

package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// Options tune a Batcher. Zero values mean the defaults.
type Options struct {
	// MaxRecords and MaxWait bound a micro-batch: it is due when it holds
	// MaxRecords records or its first record is MaxWait old.
	MaxRecords int
	MaxWait    time.Duration
	// Window is the length of the stream's windows; zero means
	// window.Default.
	Window window.Length
	// AllowedLateness: a reading whose window ended this long before its
	// partition's watermark is late (a dead letter, reason late).
	AllowedLateness time.Duration
	// Params are the transform parameters; zero means
	// transform.DefaultParams(), as the batch.
	Params transform.Params
	// RegistryRefresh is the least time between two reloads of the
	// registry caused by an unknown device id.
	RegistryRefresh time.Duration
	// TestMode sends nothing to the sink: a commit only advances the
	// Batcher's own positions.
	TestMode bool
	// Echo logs every record, duplicate, dead letter and batch at info
	// level (the stream's debug and test modes).
	Echo bool
	// DrainTo makes the partitions drain: records at or beyond a
	// partition's target are left for the next lease, and Drained reports
	// when every partition reached its target. A partition missing from
	// the map has nothing to drain.
	DrainTo map[int32]int64
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.Params == (transform.Params{}) {
		o.Params = transform.DefaultParams()
	}
	if o.RegistryRefresh <= 0 {
		o.RegistryRefresh = DefaultRegistryRefresh
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// partition is the Batcher's view of one owned partition.
type partition struct {
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
	counters       Counters // committed totals
	hwm            int64
	drainTo        int64
	draining       bool

	// The open batch.
	next    int64 // offset after the last record taken into the batch
	pending Counters
}

func (p *partition) drained() bool { return p.draining && p.next >= p.drainTo }

type readingKey struct {
	device string
	micros int64
}

// accepted is a record that passed decoding, lateness and the in-batch
// repeat check, waiting for the transform.
type accepted struct {
	partition int32
	offset    int64
	r         reading.Reading
}

// Batcher assembles micro-batches from the records of the partitions one
// lease owns, and commits them to a Sink. It is not safe for concurrent
// use: one goroutine polls, takes and commits.
type Batcher struct {
	opts     Options
	sink     Sink
	registry Registry

	devices    map[string]Device
	lookup     *reading.DeviceSet
	registryAt time.Time
	states     map[string]*transform.DeviceState

	parts map[int32]*partition
	order []int32

	// The open batch.
	records  int
	started  time.Time
	readings []Reading
	dead     []DeadLetter
	seen     map[readingKey]struct{}

	batches int64
}

// New starts a Batcher for the partitions of claimed (their committed
// state as the lease claimed it; a partition without a committed state
// starts at offset 0), with the devices of the registry as loaded.
func New(opts Options, sink Sink, registry Registry, devices map[string]Device, claimed map[int32]Offset, partitions []int32) *Batcher {
	opts = opts.withDefaults()
	b := &Batcher{
		opts: opts, sink: sink, registry: registry,
		states: map[string]*transform.DeviceState{}, parts: map[int32]*partition{},
		seen: map[readingKey]struct{}{},
	}
	b.setDevices(devices)
	for _, id := range partitions {
		o, ok := claimed[id]
		p := &partition{
			id: id, epoch: o.Epoch, consumed: ok, committed: o.NextOffset, next: o.NextOffset,
			claimWatermark: o.Watermark, watermark: window.RestoreWatermark(o.Watermark), counters: o.Counters,
		}
		p.committedWM = p.watermark
		if opts.DrainTo != nil {
			p.draining, p.drainTo = true, opts.DrainTo[id]
		}
		b.parts[id] = p
		b.order = append(b.order, id)
	}
	slices.Sort(b.order)
	return b
}

func (b *Batcher) setDevices(devices map[string]Device) {
	ids := make([]string, 0, len(devices))
	for id := range devices {
		ids = append(ids, id)
	}
	b.devices, b.lookup, b.registryAt = devices, reading.NewDeviceSet(ids), b.opts.Now()
}

// Positions are the committed next offsets, where consuming starts.
func (b *Batcher) Positions() map[int32]int64 {
	out := make(map[int32]int64, len(b.order))
	for _, id := range b.order {
		out[id] = b.parts[id].committed
	}
	return out
}

// Open is the number of records in the open batch.
func (b *Batcher) Open() int { return b.records }

// Room is how many more records the open batch takes.
func (b *Batcher) Room() int { return b.opts.MaxRecords - b.records }

// Due reports whether the open batch must be committed: it is full, or
// its first record is MaxWait old.
func (b *Batcher) Due() bool {
	return b.records >= b.opts.MaxRecords || (b.records > 0 && b.opts.Now().Sub(b.started) >= b.opts.MaxWait)
}

// Wait is how long a poll may wait for more records before the open batch
// is due; idle when the batch is empty.
func (b *Batcher) Wait(idle time.Duration) time.Duration {
	if b.records == 0 {
		return idle
	}
	return max(b.opts.MaxWait-b.opts.Now().Sub(b.started), time.Millisecond)
}

// ObserveHighWatermark records a partition's high watermark as the broker
// last reported it, for the lag.
func (b *Batcher) ObserveHighWatermark(partition int32, hwm int64) {
	if p, ok := b.parts[partition]; ok && hwm > p.hwm {
		p.hwm = hwm
	}
}

// Drained reports whether every partition reached its drain target; false
// when the Batcher does not drain.
func (b *Batcher) Drained() bool {
	if b.opts.DrainTo == nil {
		return false
	}
	for _, id := range b.order {
		if !b.parts[id].drained() {
			return false
		}
	}
	return true
}

// Take adds records to the open batch. In order, for each record of an
// owned partition (before its drain target): decode (a malformed record, an
// unknown device or a time out of bounds is a dead letter), lateness (a
// dead letter), repeat of a reading already in the batch (counted as a
// duplicate), then the shared transform for the anomaly flags. Devices seen
// for the first time are first warmed with their stored history.
func (b *Batcher) Take(ctx context.Context, records []Record) error {
	if b.records == 0 {
		b.started = b.opts.Now()
	}
	lim := reading.Limits{Devices: b.lookup}
	var ok []accepted
	var cold map[int32][]string // devices without transform state, per partition
	for i := range records {
		rec := &records[i]
		p, owned := b.parts[rec.Partition]
		if !owned || (p.draining && rec.Offset >= p.drainTo) {
			continue // not ours, or beyond the drain target: for the next lease
		}
		b.records++
		p.pending.Records++
		p.next = rec.Offset + 1

		r, _, err := reading.Decode(rec.Value, rec.Timestamp, lim)
		if reason, rejected := reading.RejectionReason(err); rejected && reason == reading.ReasonUnknownDevice && b.refreshRegistry(ctx) {
			lim.Devices = b.lookup
			r, _, err = reading.Decode(rec.Value, rec.Timestamp, lim)
		}
		if err != nil {
			reason, _ := reading.RejectionReason(err)
			b.deadLetter(p, rec, string(reason), err.Error())
			continue
		}
		if !p.watermark.Accept(r.Time, b.opts.Window, b.opts.AllowedLateness) {
			b.deadLetter(p, rec, string(window.ReasonLate), fmt.Sprintf(
				"window [%s, %s) closed: partition watermark %s, allowed lateness %s",
				b.opts.Window.Start(r.Time).Format(time.RFC3339), b.opts.Window.End(r.Time).Format(time.RFC3339),
				p.watermark.Time().Format(time.RFC3339Nano), b.opts.AllowedLateness))
			continue
		}
		key := readingKey{r.DeviceID, r.Time.UnixMicro()}
		if _, dup := b.seen[key]; dup {
			p.pending.Duplicates++
			b.echo("stream duplicate", "partition", rec.Partition, "offset", rec.Offset, "device_id", r.DeviceID, "time", r.Time)
			continue
		}
		b.seen[key] = struct{}{}
		if _, warm := b.states[r.DeviceID]; !warm {
			if cold == nil {
				cold = map[int32][]string{}
			}
			if !slices.Contains(cold[p.id], r.DeviceID) {
				cold[p.id] = append(cold[p.id], r.DeviceID)
			}
		}
		ok = append(ok, accepted{partition: rec.Partition, offset: rec.Offset, r: r})
	}
	if err := b.warm(ctx, cold); err != nil {
		return err
	}
	for _, a := range ok {
		e := b.states[a.r.DeviceID].Push(a.r)
		var reasons []string
		if e.Anomaly {
			reasons = e.Reasons
		}
		b.readings = append(b.readings, Reading{Partition: a.partition, Offset: a.offset, Reading: a.r, Reasons: reasons})
		if b.opts.Echo {
			b.echoReading(a, reasons)
		}
	}
	return nil
}

func (b *Batcher) echoReading(a accepted, reasons []string) {
	attrs := []any{"partition", a.partition, "offset", a.offset, "device_id", a.r.DeviceID, "time", a.r.Time,
		"battery", a.r.Battery, "rssi", a.r.RSSI}
	if a.r.ValueValid {
		attrs = append(attrs, "value", a.r.Value)
	} else {
		attrs = append(attrs, "value", nil)
	}
	if reasons != nil {
		attrs = append(attrs, "anomaly", reasons)
	}
	b.opts.Log.Info("stream record", attrs...)
}

func (b *Batcher) echo(msg string, attrs ...any) {
	if b.opts.Echo {
		b.opts.Log.Info(msg, attrs...)
	}
}

func (b *Batcher) deadLetter(p *partition, rec *Record, reason, detail string) {
	p.pending.DeadLetters++
	b.dead = append(b.dead, DeadLetter{
		Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Raw: rec.Value,
		Reason: reason, Error: detail, RecordTime: rec.Timestamp, Watermark: p.watermark.Time(),
	})
	b.echo("stream dead letter", "partition", rec.Partition, "offset", rec.Offset, "reason", reason, "error", detail)
}

// refreshRegistry reloads the registry after an unknown device id, at most
// every RegistryRefresh, and reports whether it did. A failed reload keeps
// the old registry until the next try.
func (b *Batcher) refreshRegistry(ctx context.Context) bool {
	if b.registry == nil || b.opts.Now().Sub(b.registryAt) < b.opts.RegistryRefresh {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	devices, err := b.registry(ctx)
	if err != nil {
		b.registryAt = b.opts.Now()
		b.opts.Log.Warn("stream lease: device registry reload failed", "error", err)
		return false
	}
	b.setDevices(devices)
	b.opts.Log.Info("stream lease: device registry reloaded", "devices", b.lookup.Len())
	return true
}

// warm creates the transform state of devices seen for the first time and
// pushes their stored readings of the last Params.Window up to the
// partition's watermark at claim time, so that a restarted lease flags
// readings as an uninterrupted one would.
func (b *Batcher) warm(ctx context.Context, cold map[int32][]string) error {
	parts := make([]int32, 0, len(cold))
	for p := range cold {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		ids := cold[p]
		for _, id := range ids {
			d := b.devices[id]
			b.states[id] = transform.NewDeviceState(d.Device, d.Type, reading.Location{ID: d.Device.LocationID}, b.opts.Params)
		}
		until := b.parts[p].claimWatermark
		if until.IsZero() {
			continue
		}
		history, err := b.sink.RecentReadings(ctx, ids, until, b.opts.Params.Window)
		if err != nil {
			return err
		}
		for _, r := range history {
			b.states[r.DeviceID].Push(r)
		}
	}
	return nil
}

// Commit writes the open batch to the sink (test mode: counts it only) and
// advances the committed offsets, watermarks and counters. On error nothing
// advances: the batch stays open, and the lease ends.
func (b *Batcher) Commit(ctx context.Context) error {
	batch := &Batch{Readings: b.readings, DeadLetters: b.dead}
	for _, id := range b.order {
		p := b.parts[id]
		if p.pending.Records == 0 {
			continue
		}
		batch.Offsets = append(batch.Offsets, OffsetAdvance{
			Partition: id, Epoch: p.epoch, Expected: p.committed, Next: p.next,
			Watermark: p.watermark.Time(), Counters: p.pending,
		})
	}
	began := b.opts.Now()
	var added map[int32]Counters
	if b.opts.TestMode {
		added = testModeCounters(batch)
	} else {
		var err error
		if added, err = b.sink.Commit(ctx, batch); err != nil {
			return err
		}
	}
	for _, o := range batch.Offsets {
		p := b.parts[o.Partition]
		p.committed, p.committedWM, p.consumed = p.next, p.watermark, true
		p.counters.Add(added[o.Partition])
		p.pending = Counters{}
	}
	b.echo("stream batch", "test_mode", b.opts.TestMode, "records", b.records, "readings", len(batch.Readings),
		"dead_letters", len(batch.DeadLetters), "elapsed", b.opts.Now().Sub(began))
	b.records, b.started = 0, time.Time{}
	b.readings, b.dead = b.readings[:0], b.dead[:0]
	clear(b.seen)
	b.batches++
	return nil
}

// testModeCounters is what a sink would add if every reading were new.
func testModeCounters(batch *Batch) map[int32]Counters {
	added := map[int32]Counters{}
	for _, r := range batch.Readings {
		c := added[r.Partition]
		c.Inserted++
		added[r.Partition] = c
	}
	for _, o := range batch.Offsets {
		c := added[o.Partition]
		c.Records, c.DeadLetters, c.Duplicates = o.Counters.Records, o.Counters.DeadLetters, o.Counters.Duplicates
		added[o.Partition] = c
	}
	return added
}

// Batches is how many batches were committed.
func (b *Batcher) Batches() int64 { return b.batches }

// PartitionState is the committed state of one partition.
type PartitionState struct {
	Partition     int32
	Epoch         int64
	Consumed      bool // committed at least once, by any lease
	NextOffset    int64
	HighWatermark int64 // never below NextOffset
	Watermark     time.Time
	Counters      Counters
}

// Lag is HighWatermark − NextOffset.
func (s PartitionState) Lag() int64 { return s.HighWatermark - s.NextOffset }

// Committed is the committed state of every partition, ascending.
func (b *Batcher) Committed() []PartitionState {
	out := make([]PartitionState, 0, len(b.order))
	for _, id := range b.order {
		p := b.parts[id]
		out = append(out, PartitionState{
			Partition: id, Epoch: p.epoch, Consumed: p.consumed, NextOffset: p.committed,
			HighWatermark: max(p.hwm, p.committed), Watermark: p.committedWM.Time(), Counters: p.counters,
		})
	}
	return out
}

package main

import (
	"context"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
)

// pollEvery is the resolution of the visibility measurement, bench/stream's.
const pollEvery = 5 * time.Millisecond

// seenHistory is how long a partition's visibility history is kept for the
// acknowledgements that arrive after the poller saw their record committed.
const seenHistory = time.Minute

// The latency is bench/stream's: the simulator stamps every record, a
// poller reads stream_offsets every pollEvery, and a record counts as
// visible at the first poll whose committed offset of its partition passes
// it; latency = visible - record timestamp. bench/stream keeps every
// record's partition, offset and stamp and matches them at the end; a soak
// sends too many for that, so records are matched as their partition's
// committed offset passes them and only the latencies are kept.

// sentRecord is an acknowledged record not yet seen committed.
type sentRecord struct {
	offset  int64
	stamped time.Time
}

// visible is the first poll that saw a partition's committed offset at next.
type visible struct {
	next int64
	at   time.Time
}

// latencyTracker matches acknowledged records with the polls that saw them
// committed.
type latencyTracker struct {
	mu        sync.Mutex
	pending   map[int32][]sentRecord // per partition, ascending offsets
	seen      map[int32][]visible    // per partition, the last seenHistory of polls that advanced it
	committed map[int32]int64        // per partition, the latest committed offset seen
	forgotten map[int32]int64        // per partition, the offsets below which seen no longer tells
	latencies []float32              // milliseconds
	unmatched int64                  // acknowledged after their commit left the history
	pollErrs  int64
	lastErr   error
}

func newLatencyTracker(capacity int) *latencyTracker {
	return &latencyTracker{
		pending: map[int32][]sentRecord{}, seen: map[int32][]visible{}, committed: map[int32]int64{}, forgotten: map[int32]int64{},
		latencies: make([]float32, 0, capacity),
	}
}

func (t *latencyTracker) record(visibleAt, stamped time.Time) {
	t.latencies = append(t.latencies, float32(float64(visibleAt.Sub(stamped))/float64(time.Millisecond)))
}

// acked is the broker's acknowledgement of the record at offset of p. The
// producer's callbacks of a partition come in offset order.
func (t *latencyTracker) acked(p int32, offset int64, stamped time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offset >= t.committed[p] {
		t.pending[p] = append(t.pending[p], sentRecord{offset, stamped})
		return
	}
	v := t.seen[p]
	i := sort.Search(len(v), func(i int) bool { return v[i].next > offset })
	if i == len(v) || offset < t.forgotten[p] {
		t.unmatched++
		return
	}
	t.record(v[i].at, stamped)
}

// observe is a poll at at that read the committed offsets offs.
func (t *latencyTracker) observe(at time.Time, offs map[int32]int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, next := range offs {
		if next <= t.committed[p] {
			continue
		}
		t.committed[p] = next
		v := append(t.seen[p], visible{next, at})
		drop := 0
		for drop < len(v)-1 && at.Sub(v[drop].at) > seenHistory {
			t.forgotten[p] = v[drop].next
			drop++
		}
		t.seen[p] = v[drop:]
		pend := t.pending[p]
		k := 0
		for k < len(pend) && pend[k].offset < next {
			t.record(at, pend[k].stamped)
			k++
		}
		t.pending[p] = pend[k:]
	}
}

// committedOffsets is a copy of the latest committed offsets seen.
func (t *latencyTracker) committedOffsets() map[int32]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int32]int64, len(t.committed))
	for p, n := range t.committed {
		out[p] = n
	}
	return out
}

// poll reads the committed offsets every pollEvery until ctx ends. A failed
// read is counted and the polling goes on: one error must not end a
// half-hour measurement.
func (t *latencyTracker) poll(ctx context.Context, ts *pgxpool.Pool, topic string) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		// The time is taken before the query: the snapshot the query reads
		// is taken after it, so a commit it sees happened before at.
		at := time.Now()
		offs, err := sink.ReadOffsets(ctx, ts, topic)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t.mu.Lock()
			t.pollErrs++
			t.lastErr = err
			t.mu.Unlock()
		} else {
			next := make(map[int32]int64, len(offs))
			for p, o := range offs {
				next[p] = o.NextOffset
			}
			t.observe(at, next)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Latency is the event-to-commit latency of the run.
type Latency struct {
	Measured  int64   `json:"measured"` // records whose visible time was observed
	Unmatched int64   `json:"unmatched"`
	P50ms     float64 `json:"p50_ms"`
	P90ms     float64 `json:"p90_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	PollMS    float64 `json:"poll_interval_ms"`
	PollErrs  int64   `json:"poll_errors"`
}

// summary sorts the latencies and reads their percentiles.
func (t *latencyTracker) summary() Latency {
	t.mu.Lock()
	defer t.mu.Unlock()
	lat := t.latencies
	slices.Sort(lat)
	out := Latency{Measured: int64(len(lat)), Unmatched: t.unmatched, PollErrs: t.pollErrs,
		PollMS: float64(pollEvery) / float64(time.Millisecond)}
	if len(lat) > 0 {
		out.P50ms, out.P90ms, out.P99ms = percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99)
		out.MaxMS = roundTo(float64(lat[len(lat)-1]), 0.1)
	}
	return out
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float32, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return roundTo(float64(sorted[min(max(i, 0), len(sorted)-1)]), 0.1)
}

// roundTo rounds x to a multiple of unit (a power of ten below 1), for
// results that do not claim more precision than they have. It divides by
// the integer 1/unit, so the result prints as the short decimal it is.
func roundTo(x, unit float64) float64 {
	scale := math.Round(1 / unit)
	return math.Round(x*scale) / scale
}

// recordingPublisher is producer.KafkaPublisher that also hands the
// partition and offset the broker gave each record to the tracker.
type recordingPublisher struct {
	cl *kgo.Client
	tr *latencyTracker
}

func (p *recordingPublisher) Publish(ctx context.Context, msg producer.Message, done func(error)) {
	rec := &kgo.Record{Key: msg.Key, Value: msg.Value, Timestamp: msg.Timestamp}
	p.cl.Produce(context.WithoutCancel(ctx), rec, func(r *kgo.Record, err error) {
		if err == nil {
			p.tr.acked(r.Partition, r.Offset, msg.Timestamp)
		}
		done(err)
	})
}

func (p *recordingPublisher) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

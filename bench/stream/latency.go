package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/testsupport/benchutil"
)

// pollEvery is the resolution of the visibility measurement.
const pollEvery = 5 * time.Millisecond

// sentRecord is where a record landed and when it was stamped.
type sentRecord struct {
	partition int32
	offset    int64
	stamped   time.Time
}

// recordingPublisher is producer.KafkaPublisher that also remembers the
// partition and offset the broker gave each record.
type recordingPublisher struct {
	cl   *kgo.Client
	mu   sync.Mutex
	sent []sentRecord
}

func (p *recordingPublisher) Publish(ctx context.Context, msg producer.Message, done func(error)) {
	rec := &kgo.Record{Key: msg.Key, Value: msg.Value, Timestamp: msg.Timestamp}
	p.cl.Produce(context.WithoutCancel(ctx), rec, func(r *kgo.Record, err error) {
		if err == nil {
			p.mu.Lock()
			p.sent = append(p.sent, sentRecord{r.Partition, r.Offset, msg.Timestamp})
			p.mu.Unlock()
		}
		done(err)
	})
}

func (p *recordingPublisher) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// visible is the first poll that saw a partition's committed offset at next.
type visible struct {
	next int64
	at   time.Time
}

// offsetPoller reads stream_offsets every pollEvery and keeps, per
// partition, when each committed offset first became visible.
type offsetPoller struct {
	b      *bench
	mu     sync.Mutex
	seen   map[int32][]visible
	epochs map[int32]int64
	err    error
}

func (o *offsetPoller) run(ctx context.Context) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		// The time is taken before the query: the snapshot the query reads
		// is taken after it, so a commit it sees happened before at.
		at := time.Now()
		offs, err := sink.ReadOffsets(ctx, o.b.ts, o.b.cfg.Kafka.Topic)
		if ctx.Err() != nil {
			return
		}
		o.mu.Lock()
		if err != nil {
			o.err = err
			o.mu.Unlock()
			return
		}
		for p, off := range offs {
			v := o.seen[p]
			if len(v) == 0 || off.NextOffset > v[len(v)-1].next {
				o.seen[p] = append(v, visible{off.NextOffset, at})
			}
			o.epochs[p] = off.Epoch
		}
		o.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// state returns a copy of the latest epochs and committed offsets.
func (o *offsetPoller) state() (epochs, committed map[int32]int64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	epochs, committed = map[int32]int64{}, map[int32]int64{}
	for p, e := range o.epochs {
		epochs[p] = e
	}
	for p, v := range o.seen {
		committed[p] = v[len(v)-1].next
	}
	return epochs, committed, o.err
}

// visibleAt is when the record at offset of p was first seen committed.
func (o *offsetPoller) visibleAt(p int32, offset int64) (time.Time, bool) {
	v := o.seen[p]
	i := sort.Search(len(v), func(i int) bool { return v[i].next > offset })
	if i == len(v) {
		return time.Time{}, false
	}
	return v[i].at, true
}

// latency runs leases on the caught-up topic, publishes at a steady rate
// with the wall clock as record timestamp, and measures how long each
// record took to become a committed row.
func (b *bench) latency(ctx context.Context, before map[int32]int64) (Latency, error) {
	o := b.opts
	out := Latency{TargetRate: o.latencyRate, PollMS: float64(pollEvery) / float64(time.Millisecond)}

	initial, err := sink.ReadOffsets(ctx, b.ts, b.cfg.Kafka.Topic)
	if err != nil {
		return out, err
	}
	poller := &offsetPoller{b: b, seen: map[int32][]visible{}, epochs: map[int32]int64{}}
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	go poller.run(pollCtx)

	stop := make(chan struct{})
	var stopOnce sync.Once
	stopLeases := func() { stopOnce.Do(func() { close(stop) }) }
	defer stopLeases()
	leasesDone := make(chan error, 1)
	ins := b.leaseInputs(before, false, o.latencyDuration+5*time.Minute)
	go func() {
		_, err := b.runLeases(ins, stop)
		leasesDone <- err
	}()
	// The leases are consuming once they have claimed every partition.
	if err := benchutil.WaitFor(ctx, time.Minute, func() (bool, error) {
		epochs, _, err := poller.state()
		for p, off := range initial {
			if epochs[p] <= off.Epoch {
				return false, err
			}
		}
		return true, err
	}); err != nil {
		return out, fmt.Errorf("leases did not claim the partitions: %w", err)
	}

	cl, err := kafka.NewClient(b.cfg.Kafka, nil, kafka.ProducerOptions(b.cfg.Kafka.Topic)...)
	if err != nil {
		return out, err
	}
	defer cl.Close()
	pub := &recordingPublisher{cl: cl}
	sim, err := producer.New(producer.Options{
		Seed: o.seed, Devices: o.devices, Rate: o.latencyRate, Duration: o.latencyDuration,
		AnomalyRatio: o.anomalyRatio,
	})
	if err != nil {
		return out, err
	}
	began := time.Now()
	rep, err := sim.Run(ctx, pub)
	if err != nil {
		return out, err
	}
	out.Messages, out.Seconds, out.AchievedRate = rep.Sent, rep.Elapsed.Seconds(), rep.PerSecond()

	// Wait for the leases to commit everything, then stop them.
	ends, err := kafka.HighWatermarks(ctx, cl, b.cfg.Kafka.Topic)
	if err != nil {
		return out, err
	}
	caughtUp := benchutil.WaitFor(ctx, 2*time.Minute, func() (bool, error) {
		_, committed, err := poller.state()
		for p, end := range ends {
			if committed[p] < end {
				return false, err
			}
		}
		return true, err
	})
	stopLeases()
	if err := <-leasesDone; err != nil {
		return out, err
	}
	stopPolling()
	if caughtUp != nil {
		return out, fmt.Errorf("leases did not catch up: %w", caughtUp)
	}

	poller.mu.Lock()
	lat := make([]float64, 0, len(pub.sent))
	for _, s := range pub.sent {
		if at, ok := poller.visibleAt(s.partition, s.offset); ok {
			lat = append(lat, float64(at.Sub(s.stamped))/float64(time.Millisecond))
		}
	}
	poller.mu.Unlock()
	slices.Sort(lat)
	out.Measured = int64(len(lat))
	if len(lat) > 0 {
		out.P50ms, out.P90ms, out.P99ms, out.MaxMS = percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99), lat[len(lat)-1]
	}
	err = b.ts.QueryRow(ctx, `SELECT coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), 0),
		       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), 0)
		FROM (SELECT extract(epoch FROM ingested_at - time) * 1000 AS ms
		      FROM public.sensor_readings WHERE time >= $1) s`, began).Scan(&out.TxStartP50ms, &out.TxStartP99ms)
	return out, err
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

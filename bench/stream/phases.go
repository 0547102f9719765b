package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// produce publishes the messages with the simulator, unpaced, replaying
// event time: each device once per round, rounds interval apart, ending a
// minute before now, so every (device_id, time) is unique and nothing is
// too old or late. It returns the topic's end offsets.
func (b *bench) produce(ctx context.Context, interval time.Duration) (Phase, map[int32]int64, error) {
	o := b.opts
	cl, err := kafka.NewClient(b.cfg.Kafka, nil, kafka.ProducerOptions(b.cfg.Kafka.Topic)...)
	if err != nil {
		return Phase{}, nil, err
	}
	defer cl.Close()
	step := interval / time.Duration(o.devices)
	start := time.Now().Add(-time.Duration(o.messages)*step - time.Minute).Truncate(time.Minute)
	sim, err := producer.New(producer.Options{
		Seed: o.seed, Devices: o.devices, MaxMessages: o.messages, Start: start, Step: step,
		AnomalyRatio: o.anomalyRatio, BadRatio: o.badRatio,
	})
	if err != nil {
		return Phase{}, nil, err
	}
	began := time.Now()
	rep, err := sim.Run(ctx, producer.KafkaPublisher{Client: cl})
	if err != nil {
		return Phase{}, nil, err
	}
	elapsed := time.Since(began)
	ends, err := kafka.HighWatermarks(ctx, cl, b.cfg.Kafka.Topic)
	if err != nil {
		return Phase{}, nil, err
	}
	if total := sumOffsets(ends); total != o.messages {
		return Phase{}, nil, fmt.Errorf("topic holds %d records after producing %d", total, o.messages)
	}
	return newPhase(rep.Sent, rep.Good, elapsed), ends, nil
}

func sumOffsets(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// recordReader fetches every partition from offset 0 up to ends.
type recordReader struct {
	cl        *kgo.Client
	remaining int64
	buf       []*kgo.Record
}

func (b *bench) newRecordReader(ends map[int32]int64, limit int64) (*recordReader, error) {
	from := make(map[int32]int64, len(ends))
	for p := range ends {
		from[p] = 0
	}
	cl, err := kafka.NewPartitionConsumer(b.cfg.Kafka, nil, b.cfg.Kafka.Topic, from, 0)
	if err != nil {
		return nil, err
	}
	return &recordReader{cl: cl, remaining: min(limit, sumOffsets(ends))}, nil
}

// next returns the next record, or nil after the last one.
func (r *recordReader) next(ctx context.Context) (*kgo.Record, error) {
	for len(r.buf) == 0 {
		if r.remaining == 0 {
			return nil, nil
		}
		fetches := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return nil, ferr
		}
		r.buf = fetches.Records()
		if int64(len(r.buf)) > r.remaining {
			r.buf = r.buf[:r.remaining]
		}
		r.remaining -= int64(len(r.buf))
	}
	rec := r.buf[0]
	r.buf = r.buf[1:]
	return rec, nil
}

func (r *recordReader) close() { r.cl.Close() }

// copySource feeds decoded readings straight from the fetches to COPY.
type copySource struct {
	ctx      context.Context
	rr       *recordReader
	limits   reading.Limits
	row      []any
	records  int64
	rejected int64
	err      error
}

func (s *copySource) Next() bool {
	for {
		rec, err := s.rr.next(s.ctx)
		if err != nil {
			s.err = err
			return false
		}
		if rec == nil {
			return false
		}
		s.records++
		r, _, err := reading.Decode(rec.Value, rec.Timestamp, s.limits)
		if err != nil {
			s.rejected++
			continue
		}
		s.row = readingRow(s.row[:0], r)
		return true
	}
}

func (s *copySource) Values() ([]any, error) { return s.row, nil }
func (s *copySource) Err() error             { return s.err }

// readingRow is r in the order of readingColumns.
func readingRow(dst []any, r reading.Reading) []any {
	var value any
	if r.ValueValid {
		value = r.Value
	}
	return append(dst, r.Time, r.DeviceID, value, r.Battery, r.RSSI, "stream")
}

// ceiling fetches, decodes and COPYs every record into an empty table like
// sensor_readings in one transaction: no staging, no windows, no offsets.
func (b *bench) ceiling(ctx context.Context, ends map[int32]int64) (Phase, error) {
	if err := b.likeReadings(ctx, "sensor_readings_ceiling"); err != nil {
		return Phase{}, err
	}
	rr, err := b.newRecordReader(ends, sumOffsets(ends))
	if err != nil {
		return Phase{}, err
	}
	defer rr.close()
	src := &copySource{ctx: ctx, rr: rr, limits: b.limits}
	began := time.Now()
	rows, err := b.ts.CopyFrom(ctx, pgx.Identifier{"public", "sensor_readings_ceiling"}, readingColumns, src)
	if err != nil {
		return Phase{}, err
	}
	elapsed := time.Since(began)
	if src.records != sumOffsets(ends) || rows != src.records-src.rejected {
		return Phase{}, fmt.Errorf("copied %d rows of %d records (%d rejected)", rows, src.records, src.rejected)
	}
	return newPhase(src.records, rows, elapsed), nil
}

// naive INSERTs each decoded message with autocommit on one connection: a
// transaction, and a WAL flush, per message.
func (b *bench) naive(ctx context.Context, ends map[int32]int64, limit int64) (Phase, error) {
	if err := b.likeReadings(ctx, "sensor_readings_naive"); err != nil {
		return Phase{}, err
	}
	conn, err := b.ts.Acquire(ctx)
	if err != nil {
		return Phase{}, err
	}
	defer conn.Release()
	rr, err := b.newRecordReader(ends, limit)
	if err != nil {
		return Phase{}, err
	}
	defer rr.close()
	insert := "INSERT INTO public.sensor_readings_naive (" + joinColumns() + ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, time) DO NOTHING"
	var records, rows int64
	row := make([]any, 0, len(readingColumns))
	began := time.Now()
	for {
		rec, err := rr.next(ctx)
		if err != nil {
			return Phase{}, err
		}
		if rec == nil {
			break
		}
		records++
		r, _, err := reading.Decode(rec.Value, rec.Timestamp, b.limits)
		if err != nil {
			continue
		}
		row = readingRow(row[:0], r)
		tag, err := conn.Exec(ctx, insert, row...)
		if err != nil {
			return Phase{}, err
		}
		rows += tag.RowsAffected()
	}
	return newPhase(records, rows, time.Since(began)), nil
}

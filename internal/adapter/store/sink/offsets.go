package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

// pgQuerier is what both a pool and a single connection offer.
type pgQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const streamOffsetColumns = `partition, next_offset, watermark, lease_epoch, coalesce(lease_owner, ''),
	records, inserted, duplicates, dead_letters, anomalies, updated_at`

func scanOffsets(rows pgx.Rows) (map[int32]ingest.Offset, error) {
	out := map[int32]ingest.Offset{}
	var o ingest.Offset
	var wm *time.Time
	_, err := pgx.ForEachRow(rows, []any{&o.Partition, &o.NextOffset, &wm, &o.Epoch, &o.Owner,
		&o.Counters.Records, &o.Counters.Inserted, &o.Counters.Duplicates, &o.Counters.DeadLetters, &o.Counters.Anomalies, &o.UpdatedAt},
		func() error {
			o.Watermark = time.Time{}
			if wm != nil {
				o.Watermark = wm.UTC()
			}
			o.UpdatedAt = o.UpdatedAt.UTC()
			out[o.Partition] = o
			return nil
		})
	return out, err
}

// ReadOffsets reads the committed state of every partition of topic that
// has one. A partition without a row was never claimed.
func ReadOffsets(ctx context.Context, q pgQuerier, topic string) (map[int32]ingest.Offset, error) {
	rows, err := q.Query(ctx, `SELECT `+streamOffsetColumns+` FROM public.stream_offsets WHERE topic = $1`, topic)
	if err != nil {
		return nil, fmt.Errorf("read stream offsets of %s: %w", topic, err)
	}
	out, err := scanOffsets(rows)
	if err != nil {
		return nil, fmt.Errorf("read stream offsets of %s: %w", topic, err)
	}
	return out, nil
}

// Offsets reads the committed state of the topic's partitions without
// claiming anything (test mode).
func (s *Sink) Offsets(ctx context.Context) (map[int32]ingest.Offset, error) {
	return ReadOffsets(ctx, s.conn, s.topic)
}

// Claim starts a lease on partitions: in one transaction it creates the
// missing stream_offsets rows (next_offset 0, the earliest offset) and
// increments the lease epoch of each, recording owner. It returns the new
// state of each partition; from now on only commits with these epochs
// succeed, so every earlier lease of these partitions is fenced.
func (s *Sink) Claim(ctx context.Context, partitions []int32, owner string) (map[int32]ingest.Offset, error) {
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO public.stream_offsets (topic, partition)
		SELECT $1, p FROM unnest($2::integer[]) AS p
		ON CONFLICT (topic, partition) DO NOTHING`, s.topic, partitions); err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	rows, err := tx.Query(ctx, `UPDATE public.stream_offsets
		SET lease_epoch = lease_epoch + 1, lease_owner = $3, updated_at = now()
		WHERE topic = $1 AND partition = ANY($2::integer[])
		RETURNING `+streamOffsetColumns, s.topic, partitions, owner)
	if err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	out, err := scanOffsets(rows)
	if err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	if len(out) != len(partitions) {
		return nil, fmt.Errorf("claim partitions %v: %d rows updated", partitions, len(out))
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("claim partitions: %w", err)
	}
	return out, nil
}

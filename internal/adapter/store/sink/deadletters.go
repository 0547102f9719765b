package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DeadLetterCount is how many dead letters carry one reason.
type DeadLetterCount struct {
	Reason string
	Count  int64
	Latest time.Time // received_at of the newest
}

// DeadLetterCounts counts the dead letters of topic by reason, most
// frequent first; reason, when not empty, restricts the count to it.
func DeadLetterCounts(ctx context.Context, pool *pgxpool.Pool, topic, reason string) ([]DeadLetterCount, error) {
	rows, err := pool.Query(ctx, `SELECT reason, count(*), max(received_at) FROM public.stream_dead_letters
		WHERE topic = $1 AND ($2 = '' OR reason = $2)
		GROUP BY reason ORDER BY count(*) DESC, reason`, topic, reason)
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	var out []DeadLetterCount
	var c DeadLetterCount
	_, err = pgx.ForEachRow(rows, []any{&c.Reason, &c.Count, &c.Latest}, func() error {
		c.Latest = c.Latest.UTC()
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count dead letters: %w", err)
	}
	return out, nil
}

// DeadLetterRow is one stored dead letter.
type DeadLetterRow struct {
	ID int64
	ingest.DeadLetter
	ReceivedAt time.Time
}

// LatestDeadLetters returns the newest limit dead letters of topic, newest
// first; reason, when not empty, restricts them to it.
func LatestDeadLetters(ctx context.Context, pool *pgxpool.Pool, topic, reason string, limit int) ([]DeadLetterRow, error) {
	rows, err := pool.Query(ctx, `SELECT id, partition, "offset", key, raw, reason, error, record_time, received_at
		FROM public.stream_dead_letters
		WHERE topic = $1 AND ($2 = '' OR reason = $2)
		ORDER BY id DESC LIMIT $3`, topic, reason, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	var out []DeadLetterRow
	var d DeadLetterRow
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Partition, &d.Offset, &d.Key, &d.Raw, &d.Reason, &d.Error, &d.RecordTime, &d.ReceivedAt}, func() error {
		d.RecordTime, d.ReceivedAt = d.RecordTime.UTC(), d.ReceivedAt.UTC()
		out = append(out, d)
		d = DeadLetterRow{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

// ReplayFilter selects the open dead letters of a topic a replay takes:
// Reason when not empty, quarantined (received_at) in [Since, Until) where
// those are not zero, and Partition when not negative.
type ReplayFilter struct {
	Topic     string
	Reason    string
	Since     time.Time
	Until     time.Time
	Partition int32
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ReplayRow is a dead letter a replay page takes. Outcome is empty while
// it is open; it is the outcome (ReplayLanded or ReplayDuplicate) when the
// replay run asking closed it already, in an attempt of the page whose
// result was lost.
type ReplayRow struct {
	DeadLetterRow
	Outcome string
}

// ReplayPage returns up to limit dead letters that f selects, with ids
// above afterID, in id order: those no replay has closed, and those the
// replay run runID closed.
func ReplayPage(ctx context.Context, pool *pgxpool.Pool, f ReplayFilter, runID string, afterID int64, limit int) ([]ReplayRow, error) {
	rows, err := pool.Query(ctx, `SELECT id, partition, "offset", key, raw, reason, error, record_time, received_at, watermark,
		       coalesce(replay_outcome, '')
		FROM public.stream_dead_letters
		WHERE topic = $1 AND (replayed_at IS NULL OR replay_run_id = $8) AND id > $2
		  AND ($3 = '' OR reason = $3)
		  AND ($4::timestamptz IS NULL OR received_at >= $4)
		  AND ($5::timestamptz IS NULL OR received_at < $5)
		  AND ($6 < 0 OR partition = $6)
		ORDER BY id LIMIT $7`, f.Topic, afterID, f.Reason, nullTime(f.Since), nullTime(f.Until), f.Partition, limit, runID)
	if err != nil {
		return nil, fmt.Errorf("read dead letters to replay: %w", err)
	}
	var out []ReplayRow
	var d ReplayRow
	var wm *time.Time
	_, err = pgx.ForEachRow(rows, []any{&d.ID, &d.Partition, &d.Offset, &d.Key, &d.Raw, &d.Reason, &d.Error, &d.RecordTime, &d.ReceivedAt, &wm, &d.Outcome}, func() error {
		d.RecordTime, d.ReceivedAt = d.RecordTime.UTC(), d.ReceivedAt.UTC()
		if wm != nil {
			d.Watermark = wm.UTC()
		}
		out = append(out, d)
		d, wm = ReplayRow{}, nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters to replay: %w", err)
	}
	return out, nil
}

// ReplayLanding is a dead letter whose reading lands: Reading carries the
// dead letter's partition and offset and its anomaly reasons.
type ReplayLanding struct {
	ID      int64
	Reading ingest.Reading
}

// ReplayKept is a dead letter that stays, with today's reason and error.
type ReplayKept struct {
	ID     int64
	Reason string
	Error  string
}

// Replay outcomes of one dead letter.
const (
	ReplayLanded     = "landed"     // its reading is a new row of sensor_readings
	ReplayDuplicate  = "duplicate"  // valid, but its reading was stored already
	ReplayKeptSame   = "kept"       // stays, with the same reason
	ReplayRereasoned = "rereasoned" // stays, with another reason
	ReplayGone       = "gone"       // closed by another replay meanwhile: nothing done
)

// Replay applies one page of a dead-letter replay in ONE transaction: the
// landings' readings are inserted (those already stored are not), with
// their windows merged and their anomalies recorded exactly as a consumer
// lease does, and each landing and each duplicate (valid, but another
// dead letter of the page has the same reading) is closed with
// replayed_at and runID; each kept one gets today's reason and error. The
// page's dead letters are locked first and only those still open are
// touched, so a page run twice, or by two replays at once, lands nothing
// twice. It returns the outcome of each dead letter by id.
func (s *Sink) Replay(ctx context.Context, runID string, land []ReplayLanding, duplicates []int64, kept []ReplayKept) (map[int64]string, error) {
	return runAgainOnConflict(ctx, func() (map[int64]string, error) { return s.replay(ctx, runID, land, duplicates, kept) })
}

func (s *Sink) replay(ctx context.Context, runID string, land []ReplayLanding, duplicates []int64, kept []ReplayKept) (map[int64]string, error) {
	ids := make([]int64, 0, len(land)+len(duplicates)+len(kept))
	for _, l := range land {
		ids = append(ids, l.ID)
	}
	ids = append(ids, duplicates...)
	for _, k := range kept {
		ids = append(ids, k.ID)
	}
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: begin: %w", err)
	}
	defer tx.Rollback(ctx)

	rows, err := tx.Query(ctx, `SELECT id FROM public.stream_dead_letters
		WHERE id = ANY($1) AND replayed_at IS NULL ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("replay: lock dead letters: %w", err)
	}
	open := map[int64]bool{}
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { open[id] = true; return nil }); err != nil {
		return nil, fmt.Errorf("replay: lock dead letters: %w", err)
	}
	out := make(map[int64]string, len(ids))
	for _, id := range ids {
		out[id] = ReplayGone
	}

	var readings []ingest.Reading
	byRecord := map[[2]int64]int64{}
	var closing []int64
	for _, l := range land {
		if open[l.ID] {
			readings = append(readings, l.Reading)
			byRecord[[2]int64{int64(l.Reading.Partition), l.Reading.Offset}] = l.ID
			closing = append(closing, l.ID)
			out[l.ID] = ReplayDuplicate
		}
	}
	for _, id := range duplicates {
		if open[id] {
			closing = append(closing, id)
			out[id] = ReplayDuplicate
		}
	}
	if len(readings) > 0 {
		perWindow := map[windowKey]int{}
		for _, r := range readings {
			perWindow[windowKey{r.DeviceID, s.win.Start(r.Time).UnixMicro()}]++
		}
		if err := s.stage(ctx, tx, readings, perWindow); err != nil {
			return nil, err
		}
		rows, err := tx.Query(ctx, s.sql.replay, s.topic)
		if err != nil {
			return nil, fmt.Errorf("replay: land readings: %w", err)
		}
		var p int32
		var off int64
		if _, err := pgx.ForEachRow(rows, []any{&p, &off}, func() error {
			out[byRecord[[2]int64{int64(p), off}]] = ReplayLanded
			return nil
		}); err != nil {
			return nil, fmt.Errorf("replay: land readings: %w", err)
		}
	}
	if len(closing) > 0 {
		outcomes := make([]string, len(closing))
		for i, id := range closing {
			outcomes[i] = out[id]
		}
		if _, err := tx.Exec(ctx, `UPDATE public.stream_dead_letters d SET replayed_at = now(), replay_run_id = $3, replay_outcome = u.outcome
			FROM unnest($1::bigint[], $2::text[]) AS u(id, outcome) WHERE d.id = u.id`,
			closing, outcomes, runID); err != nil {
			return nil, fmt.Errorf("replay: close dead letters: %w", err)
		}
	}
	var keptIDs []int64
	var reasons, errs []string
	for _, k := range kept {
		if open[k.ID] {
			keptIDs, reasons, errs = append(keptIDs, k.ID), append(reasons, k.Reason), append(errs, k.Error)
			out[k.ID] = ReplayKeptSame
		}
	}
	if len(keptIDs) > 0 {
		rows, err := tx.Query(ctx, `UPDATE public.stream_dead_letters d SET reason = u.reason, error = u.error
			FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, reason, error)
			WHERE d.id = u.id AND d.reason <> u.reason
			RETURNING d.id`, keptIDs, reasons, errs)
		if err != nil {
			return nil, fmt.Errorf("replay: update reasons: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { out[id] = ReplayRereasoned; return nil }); err != nil {
			return nil, fmt.Errorf("replay: update reasons: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("replay: commit: %w", err)
	}
	return out, nil
}

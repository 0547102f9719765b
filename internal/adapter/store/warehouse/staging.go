package warehouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrStagingLost means the run's staging is gone: its marker row is
// missing, or it holds fewer rows than Transform wrote. The staging tables
// are UNLOGGED, so PostgreSQL's crash recovery (or a failover to a replica)
// empties them; the run has to re-create its staging and extract again.
var ErrStagingLost = errors.New("staging lost")

// stagingTables are the staging tables of a run's data, each partitioned
// by run_key.
var stagingTables = []string{"device_types", "devices", "locations", "readings", "enriched", "feature_hours", "hourly"}

// markerTable is the staging table of the runs' markers, partitioned like
// the others: one UNLOGGED partition per run, holding one row.
const markerTable = "run_markers"

// allStagingTables are every table a run has a partition of.
var allStagingTables = append(append([]string(nil), stagingTables...), markerTable)

// stagingName is the name (without schema) of table's partition for a run:
// a hash keeps it a valid identifier of bounded length whatever the key.
func stagingName(table, runID string) string {
	sum := sha256.Sum256([]byte(runID))
	return table + "_r" + hex.EncodeToString(sum[:8])
}

// stagingPartition is the quoted, schema-qualified name of table's
// partition for a run.
func stagingPartition(table, runID string) string {
	return pgx.Identifier{"staging", stagingName(table, runID)}.Sanitize()
}

// StagingPartitions returns the quoted, schema-qualified names of every
// staging partition of a run, the marker's included (for tests and tools
// that emulate what crash recovery does to them).
func StagingPartitions(runID string) []string {
	out := make([]string, len(allStagingTables))
	for i, t := range allStagingTables {
		out[i] = stagingPartition(t, runID)
	}
	return out
}

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CreateStaging creates the UNLOGGED staging partitions of the run and,
// when the run has a staging generation, writes its marker, in one
// transaction. It is idempotent.
func (r Run) CreateStaging(ctx context.Context) error {
	return pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		for _, t := range allStagingTables {
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE UNLOGGED TABLE IF NOT EXISTS %s PARTITION OF staging.%s FOR VALUES IN (%s)",
				stagingPartition(t, r.ID), t, quoteLiteral(r.ID)))
			if err != nil {
				return fmt.Errorf("create staging %s: %w", t, err)
			}
		}
		return r.writeMarker(ctx, tx)
	})
}

// ResetStaging makes the run's staging empty and valid again for
// r.Generation, in one transaction: it creates the partitions that are
// missing, empties the others (TRUNCATE locks the partition only, where a
// DROP would lock the parent against every other run) and writes the
// marker of the new generation. Activities of an older generation find no
// marker of theirs from then on.
func (r Run) ResetStaging(ctx context.Context) error {
	if r.Generation <= 0 {
		return fmt.Errorf("reset staging of run %s: no staging generation", r.ID)
	}
	return pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		var existing []string
		for _, t := range allStagingTables {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, stagingPartition(t, r.ID)).Scan(&exists); err != nil {
				return fmt.Errorf("reset staging %s: %w", t, err)
			}
			if exists {
				existing = append(existing, stagingPartition(t, r.ID))
				continue
			}
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE UNLOGGED TABLE %s PARTITION OF staging.%s FOR VALUES IN (%s)",
				stagingPartition(t, r.ID), t, quoteLiteral(r.ID)))
			if err != nil {
				return fmt.Errorf("reset staging %s: %w", t, err)
			}
		}
		if len(existing) > 0 {
			if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(existing, ", ")); err != nil {
				return fmt.Errorf("reset staging: %w", err)
			}
		}
		return r.writeMarker(ctx, tx)
	})
}

func (r Run) writeMarker(ctx context.Context, tx pgx.Tx) error {
	if r.Generation <= 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO staging.run_markers (run_key, generation) VALUES ($1, $2)
		ON CONFLICT (run_key) DO UPDATE SET generation = EXCLUDED.generation, created_at = now(), enriched_summarized = false`, r.ID, r.Generation)
	if err != nil {
		return fmt.Errorf("write staging marker: %w", err)
	}
	return nil
}

// CheckStaging returns ErrStagingLost unless the run's marker of its
// generation is there. A marker present now proves that PostgreSQL has not
// gone through crash recovery since it was written, so everything staged
// and read since then is intact: activities call it before they resume
// from staging and, inside their last transaction or after their last
// read, before they report success. A run without a generation (started
// by a workflow from before markers existed) is not checked.
func (r Run) CheckStaging(ctx context.Context) error { return r.checkStaging(ctx, r.TS) }

// CheckStagingTx is CheckStaging inside tx, just before it commits: the
// transaction's writes become durable only if staging was intact until
// then (a crash kills the transaction with its connection).
func (r Run) CheckStagingTx(ctx context.Context, tx pgx.Tx) error { return r.checkStaging(ctx, tx) }

func (r Run) checkStaging(ctx context.Context, q querier) error {
	if r.Generation <= 0 {
		return nil
	}
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM staging.run_markers WHERE run_key = $1 AND generation = $2)`, r.ID, r.Generation).Scan(&ok)
	if err != nil {
		return fmt.Errorf("check staging marker: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: the staging marker of run %s (generation %d) is gone: PostgreSQL restarted and its crash recovery emptied the unlogged staging tables, or the staging was dropped",
			ErrStagingLost, r.ID, r.Generation)
	}
	return nil
}

// DropStaging drops a run's staging partitions: instant, whatever they
// hold.
func (r Run) DropStaging(ctx context.Context) error {
	for _, t := range allStagingTables {
		if _, err := r.TS.Exec(ctx, "DROP TABLE IF EXISTS "+stagingPartition(t, r.ID)); err != nil {
			return fmt.Errorf("drop staging %s: %w", t, err)
		}
	}
	return nil
}

// SweepStaging drops a run's staging partitions in one transaction that
// waits at most lockWait for each lock: dropping a partition locks its
// parent, and a sweep must not queue every running run's staging queries
// behind it while another transaction holds the parent. A lock timeout is
// returned as an error; the next sweep tries again.
func (r Run) SweepStaging(ctx context.Context, lockWait time.Duration) error {
	return pgx.BeginFunc(ctx, r.TS, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", max(lockWait.Milliseconds(), 1))); err != nil {
			return err
		}
		for _, t := range allStagingTables {
			if _, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+stagingPartition(t, r.ID)); err != nil {
				return fmt.Errorf("drop staging %s: %w", t, err)
			}
		}
		return nil
	})
}

// StagedRuns returns the run keys that have staging partitions, with how
// many each has, read from the catalog (the partitions' bounds), so that
// staging whose marker or rows are gone is found as well.
func StagedRuns(ctx context.Context, ts *pgxpool.Pool) (map[string]int, error) {
	rows, err := ts.Query(ctx, `
		SELECT pg_get_expr(c.relpartbound, c.oid)
		FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_class p ON p.oid = i.inhparent
		JOIN pg_namespace n ON n.oid = p.relnamespace
		WHERE n.nspname = 'staging' AND c.relkind = 'r' AND p.relkind = 'p'`)
	if err != nil {
		return nil, fmt.Errorf("list staging partitions: %w", err)
	}
	out := map[string]int{}
	var bound string
	_, err = pgx.ForEachRow(rows, []any{&bound}, func() error {
		key, ok := parseListBound(bound)
		if !ok {
			return fmt.Errorf("staging partition bound %q: not FOR VALUES IN ('<run key>')", bound)
		}
		out[key]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list staging partitions: %w", err)
	}
	return out, nil
}

// parseListBound reads the run key of a partition bound as PostgreSQL
// prints it: FOR VALUES IN ('key'), quotes doubled inside the literal.
func parseListBound(b string) (string, bool) {
	lit, ok := strings.CutPrefix(b, "FOR VALUES IN (")
	if !ok {
		return "", false
	}
	lit, ok = strings.CutSuffix(lit, ")")
	if !ok || len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		return "", false
	}
	inner := lit[1 : len(lit)-1]
	if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
		return "", false // several values: not a run's partition
	}
	return strings.ReplaceAll(inner, "''", "'"), true
}

// quoteLiteral renders s as an SQL string literal (partition bounds cannot
// be bind parameters).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

package warehouse

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
)

// DQReport reads the data quality of the run's transformed readings from
// its staging (mean quality score, readings per anomaly rule and quality
// flag, the 10 devices of lowest mean score) and its rejects by reason;
// extracted is the readings the run extracted, for the reject rate.
func (r Run) DQReport(ctx context.Context, extracted int64) (batch.DQReport, error) {
	rep := batch.DQReport{Extracted: extracted, Rules: map[string]int64{}, Flags: map[string]int64{}, RejectReasons: map[string]int64{}}
	if err := r.CheckStaging(ctx); err != nil {
		return rep, err
	}
	err := pgx.BeginTxFunc(ctx, r.TS, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*), coalesce(avg(quality_score), 1) FROM staging.enriched WHERE run_key = $1`, r.ID).
			Scan(&rep.Rows, &rep.DQScore); err != nil {
			return err
		}
		counts := func(query string, into map[string]int64) error {
			rows, err := tx.Query(ctx, query, r.ID)
			if err != nil {
				return err
			}
			var k string
			var n int64
			_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error { into[k] = n; return nil })
			return err
		}
		if err := counts(`SELECT reason, count(*) FROM staging.enriched, unnest(anomaly_reasons) AS reason WHERE run_key = $1 GROUP BY 1`, rep.Rules); err != nil {
			return err
		}
		if err := counts(`SELECT flag, count(*) FROM staging.enriched, unnest(quality_flags) AS flag WHERE run_key = $1 GROUP BY 1`, rep.Flags); err != nil {
			return err
		}
		if err := counts(`SELECT reason, count(*) FROM dwh.etl_rejects WHERE run_id = $1 GROUP BY 1`, rep.RejectReasons); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT device_id, count(*), avg(quality_score) FROM staging.enriched WHERE run_key = $1
			GROUP BY device_id ORDER BY avg(quality_score), device_id LIMIT 10`, r.ID)
		if err != nil {
			return err
		}
		var d batch.DeviceDQ
		_, err = pgx.ForEachRow(rows, []any{&d.DeviceID, &d.Rows, &d.DQScore}, func() error { rep.WorstDevices = append(rep.WorstDevices, d); return nil })
		return err
	})
	if err != nil {
		return rep, fmt.Errorf("DQ report: %w", err)
	}
	for _, n := range rep.RejectReasons {
		rep.Rejects += n
	}
	if extracted > 0 {
		rep.RejectRate = float64(rep.Rejects) / float64(extracted)
	}
	return rep, nil
}

// Park records that the run waits for approval, with the report.
func (r Run) Park(ctx context.Context, rep batch.DQReport, why string) error {
	_, err := r.TS.Exec(ctx, `UPDATE dwh.etl_runs SET status = $2, error = $3, dq_report = $4 WHERE run_id = $1`,
		r.ID, batch.StatusAwaitingApproval, why, rep)
	return err
}

// Decide records an operator's decision at the gate (approved or
// rejected) with its reason; an approved run is running again.
func (r Run) Decide(ctx context.Context, approved bool, reason string, at time.Time) error {
	decision, status := "approved", batch.StatusRunning
	if !approved {
		decision, status = "rejected", batch.StatusAwaitingApproval // FinishRun closes it as rejected
	}
	_, err := r.TS.Exec(ctx, `UPDATE dwh.etl_runs SET decision = $2, decision_reason = $3, decided_at = $4, status = $5,
		error = CASE WHEN $5 = 'running' THEN NULL ELSE error END WHERE run_id = $1`, r.ID, decision, reason, at, status)
	return err
}

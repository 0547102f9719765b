package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/workflows"
)

// batchRunView is one row of the batch runs page.
type batchRunView struct {
	RunID, WorkflowID, URL string
	Status, Window         string
	Started                time.Time
	Took                   string
	Rows, Rejects          int64
	DQ                     string
	Phases                 string // "extract 1.2s · transform 3.4s · ..."
	Model                  string // the model's flagged hours beside the rules', "–" when not scored
	Error                  string
	Parked                 bool
	Retry, RetryLabel      string // the signal that runs the parked phase again
}

// recentRuns are the newest batch runs, newest first (dwh.etl_runs has a
// row per run, a few a day: a sort of the whole table is cheap).
func recentRuns(ctx context.Context, app *App, limit int) ([]batchRunView, error) {
	ts, err := app.Timescale(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := ts.Query(ctx, `SELECT r.run_id, r.workflow_id, r.status, r.window_start, r.window_end, r.started_at, r.finished_at,
		r.rows_loaded, r.rejects, r.dq_score, r.phase_ms, coalesce(r.error, ''),
		coalesce(p.model, ''), p.hours, p.model_flagged, p.rule_flagged, p.both_flagged
		FROM dwh.etl_runs r
		LEFT JOIN LATERAL (
			SELECT min(model_version) AS model, count(*) AS hours, count(*) FILTER (WHERE flagged) AS model_flagged,
			       count(*) FILTER (WHERE rule_anomalies > 0) AS rule_flagged, count(*) FILTER (WHERE flagged AND rule_anomalies > 0) AS both_flagged
			FROM dwh.anomaly_predictions WHERE run_id = r.run_id) p ON true
		ORDER BY r.started_at DESC LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []batchRunView
	for rows.Next() {
		var v batchRunView
		var from, to time.Time
		var finished *time.Time
		var dq *float64
		var phases []byte
		var model string
		var hours, modelFlagged, ruleFlagged, bothFlagged int64
		if err := rows.Scan(&v.RunID, &v.WorkflowID, &v.Status, &from, &to, &v.Started, &finished, &v.Rows, &v.Rejects, &dq, &phases, &v.Error,
			&model, &hours, &modelFlagged, &ruleFlagged, &bothFlagged); err != nil {
			return nil, err
		}
		v.Model = "–"
		if hours > 0 {
			v.Model = fmt.Sprintf("%s: %d of %d h flagged by the model, %d by the rules, %d by both", model, modelFlagged, hours, ruleFlagged, bothFlagged)
		}
		v.URL = runURL(app, v.WorkflowID, v.RunID)
		v.Window = from.UTC().Format("2006-01-02 15:04") + " – " + to.UTC().Format("2006-01-02 15:04")
		if finished != nil {
			v.Took = finished.Sub(v.Started).Round(100 * time.Millisecond).String()
		}
		v.DQ = "–"
		if dq != nil {
			v.DQ = strconv.FormatFloat(*dq, 'f', 4, 64)
		}
		var ms map[string]int64
		if err := json.Unmarshal(phases, &ms); err != nil {
			return nil, fmt.Errorf("run %s: phase_ms: %w", v.RunID, err)
		}
		names := make([]string, 0, len(ms))
		for p := range ms {
			names = append(names, p)
		}
		sort.Slice(names, func(i, j int) bool { return phaseOrder(names[i]) < phaseOrder(names[j]) })
		for i, p := range names {
			if i > 0 {
				v.Phases += " · "
			}
			v.Phases += p + " " + (time.Duration(ms[p]) * time.Millisecond).String()
		}
		switch v.Status {
		case string(batch.StatusLoadFailed):
			v.Parked, v.Retry, v.RetryLabel = true, workflows.SignalRetryLoad, "Retry load"
		case string(batch.StatusExportFailed):
			v.Parked, v.Retry, v.RetryLabel = true, workflows.SignalRetryExport, "Retry export"
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func phaseOrder(p string) int {
	for i, name := range []string{"extract", "transform", "load", "export", "finishing"} {
		if p == name {
			return i
		}
	}
	return 99
}

// batchAction signals a parked run: retry-load, retry-export or abandon
// (with the operator's reason). Like starter batch, it refuses a run that
// is not parked where the signal applies.
func (d *dashboard) batchAction(r *http.Request) (action, error) {
	signal, run := r.PathValue("signal"), r.PostForm.Get("run")
	if run == "" {
		return action{}, errors.New("no run named")
	}
	var q string
	var arg any
	switch signal {
	case workflows.SignalRetryLoad:
		q = "Run Load again from staging for " + run + "?"
	case workflows.SignalRetryExport:
		q = "Run the export again for " + run + "?"
	case workflows.SignalAbandon:
		q = "Abandon " + run + "?"
		arg = strings.TrimSpace(r.PostForm.Get("reason"))
	default:
		return action{}, fmt.Errorf("unknown batch action %q", signal)
	}
	return action{Question: q, Detail: "Do it once the cause of the failure is fixed: the run goes on from where it parked.", Do: func(ctx context.Context) (string, error) {
		tc, err := d.app.Temporal(ctx)
		if err != nil {
			return "", err
		}
		var args []any
		if arg != nil {
			args = append(args, arg)
		}
		what, failure, reply, err := sendParked(ctx, tc, run, signal, args...)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("sent %s to %s (%s had failed with: %s); the run replied: %s", signal, run, what, failure, reply), nil
	}}, nil
}

// scheduleAction triggers the nightly schedule now, or backfills it over
// data days from..to (inclusive), as starter schedule trigger and backfill
// do.
func (d *dashboard) scheduleAction(r *http.Request) (action, error) {
	id := d.app.Cfg.Batch.ScheduleID
	handle := func(ctx context.Context) (client.ScheduleHandle, error) { return scheduleHandle(ctx, d.app, id) }
	switch r.PathValue("what") {
	case "trigger":
		return action{Question: "Start a batch run now?", Detail: "The schedule " + id + " runs the previous UTC day, after the running run if any.",
			Do: func(ctx context.Context) (string, error) {
				h, err := handle(ctx)
				if err == nil {
					err = h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE})
				}
				if err != nil {
					return "", fmt.Errorf("trigger %s: %w", id, err)
				}
				return "triggered " + id, nil
			}}, nil
	case "backfill":
		from, err := parseDay("from", r.PostForm.Get("from"))
		if err != nil {
			return action{}, err
		}
		to := from
		if s := r.PostForm.Get("to"); s != "" {
			if to, err = parseDay("to", s); err != nil {
				return action{}, err
			}
		}
		if to.Before(from) {
			return action{}, errors.New("to is before from")
		}
		days := int(to.Sub(from)/batch.Day) + 1
		span := from.Format("2006-01-02") + " to " + to.Format("2006-01-02")
		return action{Question: fmt.Sprintf("Backfill %d day(s), %s?", days, span), Detail: "One run per data day, one after another.",
			Do: func(ctx context.Context) (string, error) {
				h, err := handle(ctx)
				if err == nil {
					times := batch.ScheduleTimes(from, to)
					err = h.Backfill(ctx, client.ScheduleBackfillOptions{Backfill: []client.ScheduleBackfill{{
						Start: times.Start, End: times.End, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL}}})
				}
				if err != nil {
					return "", fmt.Errorf("backfill %s: %w", id, err)
				}
				return fmt.Sprintf("backfill of %d day(s), %s, requested on %s", days, span, id), nil
			}}, nil
	}
	return action{}, fmt.Errorf("unknown schedule action %q", r.PathValue("what"))
}

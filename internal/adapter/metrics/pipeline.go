package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Pipeline reads the state of the stream and the batch at each scrape:
// committed offsets and their counters, dead letters by reason and the
// lag of the stream's topic; runs by status, freshness and the figures of
// the last successful run of the batch.
type Pipeline struct {
	Timescale *pgxpool.Pool
	// Topic is the stream's topic, whose lag is measured.
	Topic string
	// EndOffsets returns the topic's end offsets (high watermarks) by
	// partition; nil leaves the lag in messages out.
	EndOffsets func(ctx context.Context, topic string) (map[int32]int64, error)
	// StreamState returns the stream workflow's state (running, paused,
	// stopped); nil leaves the stream's state out.
	StreamState func(ctx context.Context, topic string) (string, error)
	// Timeout bounds one scrape's queries; 0 means 5s.
	Timeout time.Duration
	// Now is the clock of the lag in seconds; nil means time.Now.
	Now func() time.Time
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

// StreamStates are the values of iotetl_stream_state's state label.
var StreamStates = []string{"running", "paused", "stopping", "stopped"}

var (
	descUp = desc("source_up", "1 when the source of a scrape's pipeline series answered (timescale, kafka, temporal), else 0.", "source")

	descRecords = desc("stream_records_total", "Kafka records the stream committed, by outcome: inserted, duplicate (already stored) or dead_letter.",
		"topic", "partition", "outcome")
	descAnomalies   = desc("stream_anomalies_total", "Readings the stream landed and flagged as anomalous.", "topic", "partition")
	descDeadReasons = desc("stream_dead_letters_total", "Dead letters stored in stream_dead_letters, by reason.", "topic", "reason")
	descCommitted   = desc("stream_committed_offset", "The next offset the stream will read, as committed in PostgreSQL (stream_offsets.next_offset).", "topic", "partition")
	descEnd         = desc("stream_end_offset", "The partition's end offset (high watermark) in Kafka.", "topic", "partition")
	descLag         = desc("stream_lag_messages", "Records published but not committed: the end offset in Kafka minus the offset committed in PostgreSQL.", "topic", "partition")
	descLagSeconds  = desc("stream_lag_seconds", "Now minus the partition's event-time watermark (the latest reading time it committed).", "topic", "partition")
	descState       = desc("stream_state", "1 for the stream workflow's current state (running, paused, stopping, stopped), 0 for the others.", "topic", "state")
	descPaused      = desc("stream_paused", "1 while the stream workflow is paused, else 0.", "topic")

	descRuns          = desc("batch_runs", "Batch runs recorded in dwh.etl_runs, by current status (running, load_failed, export_failed, awaiting_approval, succeeded, failed, abandoned, rejected, terminated).", "status")
	descParked        = desc("batch_parked_runs", "Batch runs parked in load_failed, export_failed or awaiting_approval, waiting for an operator's retry, abandon, approve or reject.", "status")
	descLastSuccess   = desc("batch_last_success_timestamp_seconds", "When the latest successful batch run finished (Unix time).")
	descLastWindowEnd = desc("batch_last_success_window_end_timestamp_seconds", "The end of the window of the latest successful batch run (Unix time): the data is loaded up to there.")
	descRowsTotal     = desc("batch_rows_loaded_total", "Fact rows loaded by all successful batch runs.")
	descLastRows      = desc("batch_last_run_rows_loaded", "Fact rows loaded by the latest successful batch run.")
	descLastReadings  = desc("batch_last_run_readings_extracted", "Readings extracted by the latest successful batch run.")
	descLastAnomalies = desc("batch_last_run_anomalies", "Readings flagged as anomalous by the latest successful batch run.")
	descLastRule      = desc("batch_last_run_detections", "Detections of the latest successful batch run by rule (true and false positives against the generator's labelled events).", "rule")
	descLastDQ        = desc("batch_last_run_dq_score", "Data-quality score (0 to 1) of the latest successful batch run.")
	descLastPhase     = desc("batch_last_run_phase_seconds", "Duration of each phase of the latest successful batch run.", "phase")
)

// Describe sends every series the collector may emit.
func (p *Pipeline) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descRecords, descAnomalies, descDeadReasons, descCommitted, descEnd, descLag,
		descLagSeconds, descState, descPaused, descRuns, descParked, descLastSuccess, descLastWindowEnd, descRowsTotal, descLastRows,
		descLastReadings, descLastAnomalies, descLastRule, descLastDQ, descLastPhase} {
		ch <- d
	}
}

// Collect queries the sources and sends what they answered; a source that
// fails is 0 in iotetl_source_up and its series are left out.
func (p *Pipeline) Collect(ch chan<- prometheus.Metric) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	up := func(source string, err error) {
		v := 1.0
		if err != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, v, source)
	}

	committed, err := p.collectStream(ctx, ch, now())
	if err == nil {
		err = p.collectBatch(ctx, ch)
	}
	up("timescale", err)

	if p.EndOffsets != nil && p.Topic != "" {
		ends, err := p.EndOffsets(ctx, p.Topic)
		up("kafka", err)
		for part, end := range ends {
			ps := strconv.Itoa(int(part))
			ch <- prometheus.MustNewConstMetric(descEnd, prometheus.GaugeValue, float64(end), p.Topic, ps)
			// A partition without a committed offset has consumed nothing.
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(max(0, end-committed[part])), p.Topic, ps)
		}
	}
	if p.StreamState != nil && p.Topic != "" {
		state, err := p.StreamState(ctx, p.Topic)
		up("temporal", err)
		if err == nil {
			for _, s := range StreamStates {
				ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(s == state), p.Topic, s)
			}
			ch <- prometheus.MustNewConstMetric(descPaused, prometheus.GaugeValue, b2f(state == "paused"), p.Topic)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collectStream sends the committed state of every topic's partitions and
// the dead letters by reason; it returns the committed offsets of Topic.
func (p *Pipeline) collectStream(ctx context.Context, ch chan<- prometheus.Metric, now time.Time) (map[int32]int64, error) {
	rows, err := p.Timescale.Query(ctx, `SELECT topic, partition, next_offset, watermark, inserted, duplicates, dead_letters, anomalies
		FROM public.stream_offsets`)
	if err != nil {
		return nil, fmt.Errorf("stream offsets: %w", err)
	}
	committed := map[int32]int64{}
	var topic string
	var part int32
	var next, inserted, dups, dead, anomalies int64
	var wm *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&topic, &part, &next, &wm, &inserted, &dups, &dead, &anomalies}, func() error {
		ps := strconv.Itoa(int(part))
		for outcome, n := range map[string]int64{"inserted": inserted, "duplicate": dups, "dead_letter": dead} {
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(n), topic, ps, outcome)
		}
		ch <- prometheus.MustNewConstMetric(descAnomalies, prometheus.CounterValue, float64(anomalies), topic, ps)
		ch <- prometheus.MustNewConstMetric(descCommitted, prometheus.GaugeValue, float64(next), topic, ps)
		if wm != nil {
			ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, max(0, now.Sub(*wm).Seconds()), topic, ps)
		}
		if topic == p.Topic {
			committed[part] = next
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stream offsets: %w", err)
	}

	// An index-only scan of stream_dead_letters_topic_reason_idx.
	rows, err = p.Timescale.Query(ctx, `SELECT topic, reason, count(*) FROM public.stream_dead_letters GROUP BY topic, reason`)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	var reason string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&topic, &reason, &n}, func() error {
		ch <- prometheus.MustNewConstMetric(descDeadReasons, prometheus.CounterValue, float64(n), topic, reason)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	return committed, nil
}

// parkedStatuses are the statuses of a run waiting for an operator.
var parkedStatuses = []string{"load_failed", "export_failed", "awaiting_approval"}

// collectBatch sends the runs by status and the latest successful run's
// figures.
func (p *Pipeline) collectBatch(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := p.Timescale.Query(ctx, `SELECT status, count(*) FROM dwh.etl_runs GROUP BY status`)
	if err != nil {
		return fmt.Errorf("batch runs: %w", err)
	}
	byStatus := map[string]int64{}
	var status string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error { byStatus[status] = n; return nil }); err != nil {
		return fmt.Errorf("batch runs: %w", err)
	}
	for status, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(descRuns, prometheus.GaugeValue, float64(n), status)
	}
	for _, s := range parkedStatuses {
		ch <- prometheus.MustNewConstMetric(descParked, prometheus.GaugeValue, float64(byStatus[s]), s)
	}

	var total int64
	if err := p.Timescale.QueryRow(ctx, `SELECT coalesce(sum(rows_loaded), 0) FROM dwh.etl_runs WHERE status = 'succeeded'`).Scan(&total); err != nil {
		return fmt.Errorf("batch rows: %w", err)
	}
	ch <- prometheus.MustNewConstMetric(descRowsTotal, prometheus.CounterValue, float64(total))

	var finished, windowEnd time.Time
	var rowsLoaded, readings, anomalies int64
	var dq *float64
	var phases, detection []byte
	err = p.Timescale.QueryRow(ctx, `SELECT finished_at, window_end, rows_loaded, readings_extracted, anomalies, dq_score, phase_ms, detection
		FROM dwh.etl_runs WHERE status = 'succeeded' AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1`).
		Scan(&finished, &windowEnd, &rowsLoaded, &readings, &anomalies, &dq, &phases, &detection)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // no successful run yet: no freshness, which alerts on absent()
	}
	if err != nil {
		return fmt.Errorf("last batch run: %w", err)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descLastSuccess, float64(finished.UnixMilli())/1000)
	gauge(descLastWindowEnd, float64(windowEnd.UnixMilli())/1000)
	gauge(descLastRows, float64(rowsLoaded))
	gauge(descLastReadings, float64(readings))
	gauge(descLastAnomalies, float64(anomalies))
	if dq != nil {
		gauge(descLastDQ, *dq)
	}
	var phaseMillis map[string]int64
	if err := json.Unmarshal(phases, &phaseMillis); err != nil {
		return fmt.Errorf("last batch run: phase_ms: %w", err)
	}
	for phase, ms := range phaseMillis {
		gauge(descLastPhase, float64(ms)/1000, phase)
	}
	var scores map[string]struct {
		TP int64 `json:"tp"`
		FP int64 `json:"fp"`
	}
	if err := json.Unmarshal(detection, &scores); err != nil {
		return fmt.Errorf("last batch run: detection: %w", err)
	}
	for rule, s := range scores {
		gauge(descLastRule, float64(s.TP+s.FP), rule)
	}
	return nil
}

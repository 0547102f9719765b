package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/metrics"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestPipelineSeries: the pipeline series are what the tables and Kafka
// hold, exactly: offsets and their counters, dead letters by reason, the
// lag of the topic against a real broker, and the batch runs with the
// figures of the latest successful one.
func TestPipelineSeries(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "metrics-topic"
	cfg := s.Config.Kafka
	cfg.Topic = topic
	_, cfg.BootstrapServers = testenv.Kafka(t, topic, 2)
	cl, err := kafka.NewClient(cfg, nil, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for p, n := range map[int32]int{0: 7, 1: 3} {
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("{}")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}

	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.Timescale.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Partition 0 committed 4 of 7 records, its watermark 90 s behind;
	// partition 1 nothing yet. Another topic's partition has no lag.
	exec(`INSERT INTO public.stream_offsets (topic, partition, next_offset, watermark, records, inserted, duplicates, dead_letters, anomalies)
		VALUES ($1, 0, 4, $2, 4, 2, 1, 1, 1), ('other', 0, 2, NULL, 2, 0, 0, 2, 0)`, topic, now.Add(-90*time.Second))
	exec(`INSERT INTO public.stream_dead_letters (topic, partition, "offset", raw, reason, error, record_time) VALUES
		($1, 0, 3, '{', 'not_json', 'e', $2), ('other', 0, 0, 'x', 'not_json', 'e', $2), ('other', 0, 1, 'y', 'late', 'e', $2)`, topic, now)
	run := func(id, status string, finished time.Time, rows int64, dq float64, phases, detection string) {
		exec(`INSERT INTO dwh.etl_runs (run_id, workflow_id, window_start, window_end, status, started_at, finished_at,
			readings_extracted, rows_loaded, anomalies, dq_score, phase_ms, detection)
			VALUES ($1, $1, $2, $3, $4, $2, $5, $6 + 20, $6, 7, $7, $8, $9)`,
			id, finished.Add(-24*time.Hour), finished.Add(-2*time.Hour), status, finished, rows, dq, phases, detection)
	}
	run("r1", "succeeded", now.Add(-48*time.Hour), 50, 0.5, `{"extract": 1000}`, `{}`)
	run("r2", "succeeded", now.Add(-3*time.Hour), 100, 0.95, `{"extract": 1500, "load": 250}`, `{"spike": {"tp": 3, "fp": 1, "fn": 2}, "stuck": {"tp": 0, "fp": 0, "fn": 1}}`)
	run("r3", "load_failed", now.Add(-time.Hour), 0, 0, `{}`, `{}`)

	p := &metrics.Pipeline{
		Timescale: s.Timescale, Topic: topic, Now: func() time.Time { return now },
		EndOffsets: func(ctx context.Context, topic string) (map[int32]int64, error) {
			return kafka.HighWatermarks(ctx, cl, topic)
		},
	}
	want := `
# HELP iotetl_stream_records_total Kafka records the stream committed, by outcome: inserted, duplicate (already stored) or dead_letter.
# TYPE iotetl_stream_records_total counter
iotetl_stream_records_total{outcome="dead_letter",partition="0",topic="metrics-topic"} 1
iotetl_stream_records_total{outcome="dead_letter",partition="0",topic="other"} 2
iotetl_stream_records_total{outcome="duplicate",partition="0",topic="metrics-topic"} 1
iotetl_stream_records_total{outcome="duplicate",partition="0",topic="other"} 0
iotetl_stream_records_total{outcome="inserted",partition="0",topic="metrics-topic"} 2
iotetl_stream_records_total{outcome="inserted",partition="0",topic="other"} 0
# HELP iotetl_stream_dead_letters_total Dead letters stored in stream_dead_letters, by reason.
# TYPE iotetl_stream_dead_letters_total counter
iotetl_stream_dead_letters_total{reason="late",topic="other"} 1
iotetl_stream_dead_letters_total{reason="not_json",topic="metrics-topic"} 1
iotetl_stream_dead_letters_total{reason="not_json",topic="other"} 1
# HELP iotetl_stream_lag_messages Records published but not committed: the end offset in Kafka minus the offset committed in PostgreSQL.
# TYPE iotetl_stream_lag_messages gauge
iotetl_stream_lag_messages{partition="0",topic="metrics-topic"} 3
iotetl_stream_lag_messages{partition="1",topic="metrics-topic"} 3
# HELP iotetl_stream_lag_seconds Now minus the partition's event-time watermark (the latest reading time it committed).
# TYPE iotetl_stream_lag_seconds gauge
iotetl_stream_lag_seconds{partition="0",topic="metrics-topic"} 90
# HELP iotetl_source_up 1 when the source of a scrape's pipeline series answered (timescale, kafka, temporal), else 0.
# TYPE iotetl_source_up gauge
iotetl_source_up{source="kafka"} 1
iotetl_source_up{source="timescale"} 1
# HELP iotetl_batch_runs Batch runs recorded in dwh.etl_runs, by current status (running, load_failed, export_failed, awaiting_approval, succeeded, failed, abandoned, rejected, terminated).
# TYPE iotetl_batch_runs gauge
iotetl_batch_runs{status="load_failed"} 1
iotetl_batch_runs{status="succeeded"} 2
# HELP iotetl_batch_parked_runs Batch runs parked in load_failed, export_failed or awaiting_approval, waiting for an operator's retry, abandon, approve or reject.
# TYPE iotetl_batch_parked_runs gauge
iotetl_batch_parked_runs{status="awaiting_approval"} 0
iotetl_batch_parked_runs{status="export_failed"} 0
iotetl_batch_parked_runs{status="load_failed"} 1
# HELP iotetl_batch_rows_loaded_total Fact rows loaded by all successful batch runs.
# TYPE iotetl_batch_rows_loaded_total counter
iotetl_batch_rows_loaded_total 150
# HELP iotetl_batch_last_success_timestamp_seconds When the latest successful batch run finished (Unix time).
# TYPE iotetl_batch_last_success_timestamp_seconds gauge
iotetl_batch_last_success_timestamp_seconds 1.7960292e+09
# HELP iotetl_batch_last_run_rows_loaded Fact rows loaded by the latest successful batch run.
# TYPE iotetl_batch_last_run_rows_loaded gauge
iotetl_batch_last_run_rows_loaded 100
# HELP iotetl_batch_last_run_readings_extracted Readings extracted by the latest successful batch run.
# TYPE iotetl_batch_last_run_readings_extracted gauge
iotetl_batch_last_run_readings_extracted 120
# HELP iotetl_batch_last_run_dq_score Data-quality score (0 to 1) of the latest successful batch run.
# TYPE iotetl_batch_last_run_dq_score gauge
iotetl_batch_last_run_dq_score 0.95
# HELP iotetl_batch_last_run_phase_seconds Duration of each phase of the latest successful batch run.
# TYPE iotetl_batch_last_run_phase_seconds gauge
iotetl_batch_last_run_phase_seconds{phase="extract"} 1.5
iotetl_batch_last_run_phase_seconds{phase="load"} 0.25
# HELP iotetl_batch_last_run_detections Detections of the latest successful batch run by rule (true and false positives against the generator's labelled events).
# TYPE iotetl_batch_last_run_detections gauge
iotetl_batch_last_run_detections{rule="spike"} 4
iotetl_batch_last_run_detections{rule="stuck"} 0
`
	if err := testutil.CollectAndCompare(p, strings.NewReader(want),
		"iotetl_stream_records_total", "iotetl_stream_dead_letters_total", "iotetl_stream_lag_messages", "iotetl_stream_lag_seconds",
		"iotetl_source_up", "iotetl_batch_runs", "iotetl_batch_parked_runs", "iotetl_batch_rows_loaded_total",
		"iotetl_batch_last_success_timestamp_seconds", "iotetl_batch_last_run_rows_loaded", "iotetl_batch_last_run_readings_extracted",
		"iotetl_batch_last_run_dq_score", "iotetl_batch_last_run_phase_seconds", "iotetl_batch_last_run_detections"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(p, "iotetl_stream_end_offset"); n != 2 {
		t.Errorf("%d end offsets, want 2", n)
	}
}

// TestReadyz: /readyz is ready once the pollers are started and while the
// database answers; cut off from it, it names it within the probe timeout,
// and it is ready again when the link heals. /healthz answers throughout.
func TestReadyz(t *testing.T) {
	t.Parallel()
	testenv.Integration(t)
	cfg := testenv.BaseConfig(t)
	link := faultenv.NewProxies(t).Link("timescale", cfg.Timescale.Addr())
	pg := cfg.Timescale
	pg.Host, pg.Port = "127.0.0.1", link.Port()
	pool, err := pgxpool.New(context.Background(), pg.URLFor("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	health := &metrics.Health{Checks: []metrics.Check{{Name: "timescale", Probe: pool.Ping}}, Timeout: time.Second}
	srv := httptest.NewServer(metrics.Mux(metrics.New(), health))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	expect := func(path string, code int, body string) {
		t.Helper()
		if gotCode, got := get(path); gotCode != code || !strings.Contains(got, body) {
			t.Errorf("GET %s = %d %q, want %d with %q", path, gotCode, got, code, body)
		}
	}

	expect("/readyz", 503, "temporal: the workers' pollers are not started")
	health.SetStarted()
	expect("/readyz", 200, "ready")
	link.Cut()
	expect("/readyz", 503, "not ready:\ntimescale: ")
	expect("/healthz", 200, "ok")
	link.Restore()
	expect("/readyz", 200, "ready")
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines ") {
		t.Errorf("GET /metrics = %d, want 200 with the Go runtime's series", code)
	}
}

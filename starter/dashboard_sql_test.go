package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestDashboardQueriesUseIndexes fills the tables the dashboard reads as a
// week of 1000 devices does (readings every 5 minutes, an hour of stream
// windows, a day of facts, hourly aggregates, anomalies and 100k dead
// letters over two topics), analyzes them, and checks with EXPLAIN that no
// page query reads one of those tables whole: each one goes through an
// index.
func TestDashboardQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	end := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for _, q := range []string{
		`INSERT INTO dwh.dim_devices (device_id, device_type, metric, unit, valid_min, valid_max, location_id, model, firmware, status,
			installed_at, valid_from, is_current, run_id)
		 SELECT format('DEV-%s', lpad(d::text, 4, '0')), 'TEMP', 'temperature', '°C', -40, 125, format('LOC-%s', d % 50), 'm', '1.0', 'active',
			$1::timestamptz - interval '1 year', $1::timestamptz - interval '1 year', true, 'r'
		 FROM generate_series(1, 1000) d`,
		`INSERT INTO dwh.dim_locations (location_id, site, building, floor, zone, latitude, longitude, timezone, updated_at, run_id)
		 SELECT format('LOC-%s', l), 'site ' || l % 5, 'b', 1, 'z', 0, 0, 'UTC', $1, 'r' FROM generate_series(0, 49) l`,
		`INSERT INTO public.sensor_readings (time, device_id, value, battery, rssi)
		 SELECT t, format('DEV-%s', lpad(d::text, 4, '0')), 20, 90, -60
		 FROM generate_series(1, 1000) d, generate_series($1::timestamptz - interval '7 days', $1::timestamptz - interval '5 minutes', interval '5 minutes') t`,
		`INSERT INTO public.sensor_readings_stream_agg (window_start, window_end, device_id, reading_count, value_count, value_sum, value_sum_sq, value_min, value_max, anomaly_count)
		 SELECT t, t + interval '1 minute', format('DEV-%s', lpad(d::text, 4, '0')), 2, 2, 40, 800, 20, 20, (d % 7 = 0)::int
		 FROM generate_series(1, 1000) d, generate_series($1::timestamptz - interval '1 hour', $1::timestamptz - interval '1 minute', interval '1 minute') t`,
		`INSERT INTO dwh.fact_sensor_readings_enriched (time, device_id, value, battery, rssi, device_type, metric, unit, location_id, site, building, floor, zone,
			roll_count, is_anomaly, anomaly_reasons, quality_score, quality_flags, run_id)
		 SELECT t, format('DEV-%s', lpad(d::text, 4, '0')), 20, 90, -60, 'TEMP', 'temperature', '°C', 'LOC-1', 's', 'b', 1, 'z',
			1, extract(minute FROM t) = 0, CASE WHEN extract(minute FROM t) = 0 THEN '{spike}'::text[] ELSE '{}' END, 1, '{}', 'r'
		 FROM generate_series(1, 1000) d, generate_series($1::timestamptz - interval '1 day', $1::timestamptz - interval '5 minutes', interval '5 minutes') t`,
		`INSERT INTO public.stream_anomalies (device_id, time, value, reasons, topic, partition, "offset")
		 SELECT format('DEV-%s', lpad(d::text, 4, '0')), $1::timestamptz - make_interval(mins => m), 99, '{spike}', 'a', 0, d * 100 + m
		 FROM generate_series(1, 1000) d, generate_series(1, 10) m`,
		`INSERT INTO public.stream_dead_letters (topic, partition, "offset", raw, reason, error, record_time)
		 SELECT CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 0, i, 'x', (ARRAY['not_json','late','wrong_type','unknown_device'])[i % 4 + 1], 'e', $1
		 FROM generate_series(1, 100000) i`,
	} {
		if _, err := s.Timescale.Exec(ctx, q, end); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	// dwh.fact_hourly_agg is a table without TimescaleDB, a continuous
	// aggregate of the facts with it.
	var kind string
	if err := s.Timescale.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'dwh.fact_hourly_agg'::regclass`).Scan(&kind); err != nil {
		t.Fatal(err)
	}
	hourly := `INSERT INTO dwh.fact_hourly_agg (bucket, device_id, reading_count, value_count, mean, min, max, std, anomaly_count, mean_quality)
		 SELECT t, format('DEV-%s', lpad(d::text, 4, '0')), 12, 12, 20, 19, 21, 0.5, 0, 1
		 FROM generate_series(1, 1000) d, generate_series($1::timestamptz - interval '7 days', $1::timestamptz - interval '1 hour', interval '1 hour') t`
	args := []any{end}
	if kind != "r" {
		hourly, args = `CALL refresh_continuous_aggregate('dwh.fact_hourly_agg', NULL, NULL)`, nil
	}
	if _, err := s.Timescale.Exec(ctx, hourly, args...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Timescale.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}

	// Tables of the size of the data: the page queries must not read them
	// whole. dim_devices (one row per device), dim_locations and etl_runs
	// are small and are read whole on purpose.
	big := []string{"sensor_readings", "sensor_readings_stream_agg", "fact_sensor_readings_enriched", "fact_hourly_agg",
		"stream_anomalies", "stream_dead_letters"}
	for _, c := range []struct {
		name string
		sql  string
		args []any
	}{
		{"fleet", fleetSQL, nil},
		{"device versions", deviceVersionsSQL, []any{"DEV-0007"}},
		{"device chart end", deviceChartEndSQL, []any{"DEV-0007"}},
		{"device hours", deviceHoursSQL, []any{"DEV-0007", end}},
		{"device windows", deviceWindowsSQL, []any{"DEV-0007", end}},
		{"device anomalies", deviceAnomaliesSQL, []any{"DEV-0007"}},
		{"dead letters by reason", deadLetterReasonsSQL, []any{"a"}},
		{"latest dead letters", latestDeadLettersSQL, []any{"a", 50}},
	} {
		var plan string
		if err := s.Timescale.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+c.sql, c.args...).Scan(&plan); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var nodes []map[string]any
		if err := json.Unmarshal([]byte(plan), &nodes); err != nil {
			t.Fatal(err)
		}
		var scans []string
		walkPlan(nodes[0]["Plan"].(map[string]any), func(n map[string]any) {
			if rel, ok := n["Relation Name"].(string); ok {
				scans = append(scans, fmt.Sprintf("%s on %s", n["Node Type"], rel))
			}
		})
		for _, sc := range scans {
			for _, b := range big {
				if sc == "Seq Scan on "+b {
					t.Errorf("%s reads %s whole: %v", c.name, b, scans)
				}
			}
		}
		t.Logf("%-24s %s", c.name, strings.Join(scans, ", "))
	}
}

// walkPlan calls f on every node of an EXPLAIN (FORMAT JSON) plan.
func walkPlan(n map[string]any, f func(map[string]any)) {
	f(n)
	children, _ := n["Plans"].([]any)
	for _, c := range children {
		if m, ok := c.(map[string]any); ok {
			walkPlan(m, f)
		}
	}
}

-- Analytical queries over the iot-etl warehouse (iot_timeseries), and a
-- custom view of your own. Run after a batch run (make demo):
--
--   psql -h 127.0.0.1 -U postgres -d iot_timeseries -X -v ON_ERROR_STOP=1 -f docs/analytical_queries.sql
--
-- Every query works on TimescaleDB and on plain PostgreSQL.
-- worker/analytical_queries_e2e_test.go runs this file against a loaded
-- warehouse in `make test` and checks its figures, so it cannot rot.

\echo '== 1. The fleet: current devices by site and type'
SELECT l.site, d.device_type, count(*) AS devices
FROM dwh.dim_devices d
JOIN dwh.dim_locations l ON l.location_id = d.location_id
WHERE d.is_current
GROUP BY 1, 2
ORDER BY 1, 2;

\echo '== 2. Facts loaded, readings with a value, anomalies, mean quality'
SELECT count(*)                                   AS fact_rows,
       count(value)                               AS with_value,
       count(*) FILTER (WHERE is_anomaly)         AS anomalies,
       round(avg(quality_score)::numeric, 4)      AS mean_quality
FROM dwh.fact_sensor_readings_enriched;

\echo '== 3. Daily anomaly rate per device type'
SELECT date_trunc('day', time)                                          AS day,
       device_type,
       count(*)                                                         AS readings,
       count(*) FILTER (WHERE is_anomaly)                               AS anomalies,
       round(count(*) FILTER (WHERE is_anomaly)::numeric / count(*), 4) AS rate
FROM dwh.fact_sensor_readings_enriched
GROUP BY 1, 2
ORDER BY 1, 2;

\echo '== 4. The 5 devices with the most anomalies, and their quality'
SELECT device_id, site, zone,
       count(*) FILTER (WHERE is_anomaly)    AS anomalies,
       round(avg(quality_score)::numeric, 4) AS mean_quality
FROM dwh.fact_sensor_readings_enriched
GROUP BY 1, 2, 3
ORDER BY anomalies DESC, device_id
LIMIT 5;

\echo '== 5. Why readings were flagged (one reading can have several reasons)'
SELECT reason, count(*) AS readings
FROM dwh.fact_sensor_readings_enriched, unnest(anomaly_reasons) AS reason
GROUP BY reason
ORDER BY readings DESC, reason;

\echo '== 6. Hourly temperature by site, from the hourly rollup'
SELECT h.bucket, l.site,
       round(avg(h.mean)::numeric, 2) AS mean_temperature,
       sum(h.anomaly_count)           AS anomalies
FROM dwh.fact_hourly_agg h
JOIN dwh.dim_devices d ON d.device_id = h.device_id AND d.is_current
JOIN dwh.dim_locations l ON l.location_id = d.location_id
WHERE d.device_type = 'TEMP'
GROUP BY 1, 2
ORDER BY 1, 2
LIMIT 24;

\echo '== 7. How good the data is: readings per quality band'
SELECT CASE WHEN quality_score >= 0.99 THEN 'a. >= 0.99'
            WHEN quality_score >= 0.9  THEN 'b. 0.90-0.99'
            WHEN quality_score >= 0.5  THEN 'c. 0.50-0.90'
            ELSE 'd. < 0.50' END AS band,
       count(*) AS readings
FROM dwh.fact_sensor_readings_enriched
GROUP BY 1
ORDER BY 1;

\echo '== 8. The batch runs: status, rows, DQ score, how long each phase took'
SELECT run_id, window_start, status, rows_loaded, round(dq_score::numeric, 4) AS dq_score,
       phase_ms ->> 'extract' AS extract_ms, phase_ms ->> 'transform' AS transform_ms, phase_ms ->> 'load' AS load_ms
FROM dwh.etl_runs
ORDER BY started_at DESC
LIMIT 10;

\echo '== 9. Your own view: each device''s daily quality, to chart or alert on'
CREATE OR REPLACE VIEW dwh.v_device_daily_quality AS
SELECT date_trunc('day', f.time)                AS day,
       f.device_id,
       f.device_type,
       f.site,
       count(*)                                 AS readings,
       count(*) FILTER (WHERE f.is_anomaly)     AS anomalies,
       avg(f.quality_score)                     AS mean_quality,
       min(f.quality_score)                     AS worst_quality
FROM dwh.fact_sensor_readings_enriched f
GROUP BY 1, 2, 3, 4;

SELECT count(*) AS device_days, sum(readings) AS readings, sum(anomalies) AS anomalies
FROM dwh.v_device_daily_quality;

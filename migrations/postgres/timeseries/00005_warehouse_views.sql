-- Views operators and analysts query directly.

-- +goose Up
-- The latest reading of every current device, found through the
-- (device_id, time) index one device at a time rather than by a full scan.
CREATE VIEW dwh.v_latest_readings AS
SELECT d.device_id,
       d.device_type,
       d.location_id,
       l.time,
       l.value,
       d.unit,
       l.battery,
       l.rssi,
       l.site,
       l.building,
       l.floor,
       l.zone,
       l.is_anomaly,
       l.anomaly_reasons,
       l.quality_score,
       l.quality_flags
FROM dwh.dim_devices d
CROSS JOIN LATERAL (
    SELECT f.time, f.value, f.battery, f.rssi, f.site, f.building, f.floor, f.zone,
           f.is_anomaly, f.anomaly_reasons, f.quality_score, f.quality_flags
    FROM dwh.fact_sensor_readings_enriched f
    WHERE f.device_id = d.device_id
    ORDER BY f.time DESC
    LIMIT 1
) l
WHERE d.is_current;

-- Daily anomaly counts per device over the last 7 days, by reason.
CREATE VIEW dwh.v_anomaly_trends_7d AS
SELECT date_trunc('day', f.time)                                        AS day,
       f.device_id,
       f.device_type,
       f.site,
       f.zone,
       count(*)                                                         AS readings,
       count(*) FILTER (WHERE f.is_anomaly)                             AS anomalies,
       round(count(*) FILTER (WHERE f.is_anomaly)::numeric / count(*), 6) AS anomaly_rate,
       count(*) FILTER (WHERE 'zscore' = ANY (f.anomaly_reasons))         AS zscore,
       count(*) FILTER (WHERE 'out_of_range' = ANY (f.anomaly_reasons))   AS out_of_range,
       count(*) FILTER (WHERE 'rate_of_change' = ANY (f.anomaly_reasons)) AS rate_of_change,
       count(*) FILTER (WHERE 'stuck' = ANY (f.anomaly_reasons))          AS stuck,
       count(*) FILTER (WHERE 'gap' = ANY (f.anomaly_reasons))            AS gap,
       avg(f.quality_score)                                             AS mean_quality
FROM dwh.fact_sensor_readings_enriched f
WHERE f.time >= date_trunc('day', now()) - interval '7 days'
GROUP BY 1, 2, 3, 4, 5;

-- +goose Down
DROP VIEW dwh.v_anomaly_trends_7d;
DROP VIEW dwh.v_latest_readings;

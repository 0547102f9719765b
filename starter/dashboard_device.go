package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// deviceDetail is the device page.
type deviceDetail struct {
	ID, Type, Unit string
	Versions       []deviceVersion
	Chart          chartView
	Anomalies      []anomalyView
}

// deviceVersion is one SCD2 row of dwh.dim_devices.
type deviceVersion struct {
	Firmware, Location, Status string
	From                       time.Time
	To                         *time.Time
	Current                    bool
}

// anomalyView is one flagged reading, from the stream or the batch.
type anomalyView struct {
	Time    time.Time
	Value   *float64
	Reasons string
	Source  string
}

// chartView is the 24-hour chart: the hourly min–max band and mean from
// the warehouse, and the window means of the stream, in a 600×160 box.
type chartView struct {
	Band, Mean, Stream string // SVG points
	From, To           time.Time
	Low, High          string
	Hours, Windows     int
}

const chartW, chartH = 600.0, 160.0

// deviceSQL are the device page's queries. Each reads one device through
// an index that starts with device_id: dim_devices (device_id,
// valid_from), fact_hourly_agg's primary key (device_id, bucket),
// sensor_readings_stream_agg's (device_id, window_start),
// stream_anomalies' (device_id, time) and the facts' (device_id, time);
// the latest hour or window is one backward probe of the same index.
const (
	deviceVersionsSQL = `SELECT device_type, unit, firmware, location_id, status, valid_from, valid_to, is_current
		FROM dwh.dim_devices WHERE device_id = $1 ORDER BY valid_from`
	// The chart ends at the end of the device's latest hour or stream
	// window (of whatever length it was written with), whichever source
	// has the later one, and starts 24 hours before.
	deviceChartEndSQL = `SELECT greatest(
		(SELECT max(bucket) + interval '1 hour' FROM dwh.fact_hourly_agg WHERE device_id = $1),
		(SELECT window_end FROM public.sensor_readings_stream_agg WHERE device_id = $1 ORDER BY window_start DESC LIMIT 1))`
	deviceHoursSQL = `SELECT bucket, mean, min, max FROM dwh.fact_hourly_agg
		WHERE device_id = $1 AND bucket >= $2::timestamptz - interval '24 hours' AND mean IS NOT NULL ORDER BY bucket`
	deviceWindowsSQL = `SELECT window_start, (value_sum / value_count)::float8 FROM public.sensor_readings_stream_agg
		WHERE device_id = $1 AND window_start >= $2::timestamptz - interval '24 hours' AND value_count > 0 ORDER BY window_start`
	deviceAnomaliesSQL = `(SELECT time, value, array_to_string(reasons, ', '), 'stream' FROM public.stream_anomalies
		WHERE device_id = $1 ORDER BY time DESC LIMIT 50)
		UNION ALL
		(SELECT time, value, array_to_string(anomaly_reasons, ', '), 'batch' FROM dwh.fact_sensor_readings_enriched
		WHERE device_id = $1 AND is_anomaly ORDER BY time DESC LIMIT 50)
		ORDER BY 1 DESC`
)

var errNoDevice = errors.New("no such device in the warehouse")

func deviceDetails(ctx context.Context, app *App, r *http.Request) (deviceDetail, error) {
	d := deviceDetail{ID: r.PathValue("id")}
	ts, err := app.Timescale(ctx)
	if err != nil {
		return d, err
	}
	rows, err := ts.Query(ctx, deviceVersionsSQL, d.ID)
	if err != nil {
		return d, err
	}
	if d.Versions, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (deviceVersion, error) {
		var v deviceVersion
		err := row.Scan(&d.Type, &d.Unit, &v.Firmware, &v.Location, &v.Status, &v.From, &v.To, &v.Current)
		return v, err
	}); err != nil {
		return d, err
	}
	if len(d.Versions) == 0 {
		return d, errNoDevice
	}

	type hour struct {
		at             time.Time
		mean, min, max float64
	}
	var end *time.Time
	if err := ts.QueryRow(ctx, deviceChartEndSQL, d.ID).Scan(&end); err != nil {
		return d, err
	}
	if end == nil {
		return d, d.anomalies(ctx, app)
	}
	rows, err = ts.Query(ctx, deviceHoursSQL, d.ID, *end)
	if err != nil {
		return d, err
	}
	hours, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (hour, error) {
		var h hour
		err := row.Scan(&h.at, &h.mean, &h.min, &h.max)
		return h, err
	})
	if err != nil {
		return d, err
	}
	type window struct {
		at   time.Time
		mean float64
	}
	rows, err = ts.Query(ctx, deviceWindowsSQL, d.ID, *end)
	if err != nil {
		return d, err
	}
	windows, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (window, error) {
		var w window
		err := row.Scan(&w.at, &w.mean)
		return w, err
	})
	if err != nil {
		return d, err
	}

	// One time axis and one value axis for the band, the hourly means and
	// the stream's minutes.
	c := &d.Chart
	c.Hours, c.Windows = len(hours), len(windows)
	var lo, hi float64
	first := true
	widen := func(t time.Time, values ...float64) {
		if first || t.Before(c.From) {
			c.From = t
		}
		if first || t.After(c.To) {
			c.To = t
		}
		for _, v := range values {
			if first {
				lo, hi, first = v, v, false
			}
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	for _, h := range hours {
		widen(h.at, h.min, h.max)
		widen(h.at.Add(time.Hour))
	}
	for _, w := range windows {
		widen(w.at, w.mean)
	}
	if first {
		return d, d.anomalies(ctx, app)
	}
	span, vspan := c.To.Sub(c.From).Seconds(), hi-lo
	if span == 0 {
		span = 1
	}
	if vspan == 0 {
		vspan = 1
	}
	x := func(t time.Time) float64 { return chartW * t.Sub(c.From).Seconds() / span }
	y := func(v float64) float64 { return chartH - 4 - (chartH-8)*(v-lo)/vspan }
	var band, lower, mean, stream []string
	for _, h := range hours {
		mid := h.at.Add(30 * time.Minute)
		band = append(band, fmt.Sprintf("%.1f,%.1f", x(mid), y(h.max)))
		lower = append([]string{fmt.Sprintf("%.1f,%.1f", x(mid), y(h.min))}, lower...)
		mean = append(mean, fmt.Sprintf("%.1f,%.1f", x(mid), y(h.mean)))
	}
	for _, w := range windows {
		stream = append(stream, fmt.Sprintf("%.1f,%.1f", x(w.at.Add(30*time.Second)), y(w.mean)))
	}
	c.Band, c.Mean, c.Stream = strings.Join(append(band, lower...), " "), strings.Join(mean, " "), strings.Join(stream, " ")
	c.Low, c.High = strconv.FormatFloat(lo, 'f', 2, 64), strconv.FormatFloat(hi, 'f', 2, 64)
	return d, d.anomalies(ctx, app)
}

func (d *deviceDetail) anomalies(ctx context.Context, app *App) error {
	ts, err := app.Timescale(ctx)
	if err != nil {
		return err
	}
	rows, err := ts.Query(ctx, deviceAnomaliesSQL, d.ID)
	if err != nil {
		return err
	}
	d.Anomalies, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (anomalyView, error) {
		var a anomalyView
		err := row.Scan(&a.Time, &a.Value, &a.Reasons, &a.Source)
		return a, err
	})
	return err
}

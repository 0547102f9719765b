package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// deviceView is one device of the fleet page.
type deviceView struct {
	ID, Type, Unit, Site, Zone string
	Latest                     *time.Time
	Value, Battery             *float64
	Points                     []float64 // the means of its last hour of stream windows
	Anomalies                  int64     // flagged readings in that hour
}

// fleetView is the fleet page: the devices the filters keep, and the
// values the filters offer.
type fleetView struct {
	Devices          []deviceView
	Types, Sites     []string
	Type, Site       string
	AnomalousOnly    bool
	Total, Anomalous int
}

// fleetSQL reads every current device of the warehouse with its location;
// per device, its latest reading (one probe of the sensor_readings
// (device_id, time) index, backwards), and the hour of stream windows up to
// its latest one (a range scan of the sensor_readings_stream_agg primary
// key, whose max is one probe too).
const fleetSQL = `
SELECT d.device_id, d.device_type, d.unit, coalesce(l.site, ''), coalesce(l.zone, ''),
       r.time, r.value, r.battery, coalesce(w.points, '{}'), coalesce(w.anomalies, 0)
FROM dwh.dim_devices d
LEFT JOIN dwh.dim_locations l ON l.location_id = d.location_id
LEFT JOIN LATERAL (
	SELECT s.time, s.value, s.battery FROM public.sensor_readings s
	WHERE s.device_id = d.device_id ORDER BY s.time DESC LIMIT 1) r ON true
LEFT JOIN LATERAL (
	SELECT array_agg((a.value_sum / a.value_count)::float8 ORDER BY a.window_start) FILTER (WHERE a.value_count > 0) AS points,
	       sum(a.anomaly_count)::bigint AS anomalies
	FROM public.sensor_readings_stream_agg a
	WHERE a.device_id = d.device_id
	  AND a.window_start > (SELECT max(m.window_start) FROM public.sensor_readings_stream_agg m WHERE m.device_id = d.device_id) - interval '1 hour') w ON true
WHERE d.is_current
ORDER BY d.device_id`

// fleet reads the fleet and applies the page's filters (type, site,
// anomalous=1).
func fleet(ctx context.Context, app *App, r *http.Request) (fleetView, error) {
	v := fleetView{Type: r.URL.Query().Get("type"), Site: r.URL.Query().Get("site"), AnomalousOnly: r.URL.Query().Get("anomalous") == "1"}
	ts, err := app.Timescale(ctx)
	if err != nil {
		return v, err
	}
	rows, err := ts.Query(ctx, fleetSQL)
	if err != nil {
		return v, fmt.Errorf("fleet: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deviceView, error) {
		var d deviceView
		err := row.Scan(&d.ID, &d.Type, &d.Unit, &d.Site, &d.Zone, &d.Latest, &d.Value, &d.Battery, &d.Points, &d.Anomalies)
		return d, err
	})
	if err != nil {
		return v, fmt.Errorf("fleet: %w", err)
	}
	types, sites := map[string]bool{}, map[string]bool{}
	for _, d := range all {
		types[d.Type], sites[d.Site] = true, true
		if d.Anomalies > 0 {
			v.Anomalous++
		}
		if (v.Type == "" || d.Type == v.Type) && (v.Site == "" || d.Site == v.Site) && (!v.AnomalousOnly || d.Anomalies > 0) {
			v.Devices = append(v.Devices, d)
		}
	}
	v.Total = len(all)
	v.Types, v.Sites = sortedSet(types), sortedSet(sites)
	return v, nil
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// trend renders values as the points of an SVG polyline in a w×h box,
// scaled between their minimum and maximum.
func trend(values []float64, w, h float64) string {
	if len(values) < 2 {
		return ""
	}
	lo, hi := values[0], values[0]
	for _, v := range values {
		lo, hi = min(lo, v), max(hi, v)
	}
	span := hi - lo
	if span == 0 {
		span = 1
	}
	var b strings.Builder
	for i, v := range values {
		fmt.Fprintf(&b, "%.1f,%.1f ", w*float64(i)/float64(len(values)-1), h-1-(h-2)*(v-lo)/span)
	}
	return strings.TrimSpace(b.String())
}

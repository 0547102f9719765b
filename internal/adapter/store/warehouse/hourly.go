package warehouse

import (
	"context"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// HourlyBuckets computes the rows of dwh.fact_hourly_agg of transform
// output as LoadFacts' aggregate query computes them from the same rows
// read in time order: count(*), count(value), avg, min, max and
// stddev_samp of the values, count(*) FILTER (WHERE is_anomaly) and
// avg(quality_score), with PostgreSQL's float8 aggregates (float8_accum's
// Youngs-Cramer sums, float8 ordering with NaN above every number). The
// transform stages them (CopyHourly), and a first load copies them instead
// of aggregating its facts. The zero value is not usable: see
// NewHourlyBuckets.
type HourlyBuckets struct {
	index map[hourlyKey]int
	rows  []HourlyBucket
	last  int
}

type hourlyKey struct {
	device string
	hour   int64
}

// HourlyBucket is one device-hour of HourlyBuckets.
type HourlyBucket struct {
	Bucket    time.Time
	DeviceID  string
	Readings  int64
	Anomalies int64
	value     pgFloat8Accum
	quality   pgFloat8Accum
	min, max  float64
}

// NewHourlyBuckets returns empty buckets.
func NewHourlyBuckets() *HourlyBuckets {
	return &HourlyBuckets{index: map[hourlyKey]int{}, last: -1}
}

// Add accumulates one output row into its device-hour; rows of a device
// come in time order.
func (h *HourlyBuckets) Add(e *transform.Enriched) {
	hour := e.Time.UTC().Truncate(time.Hour)
	i := h.last
	if i < 0 || h.rows[i].DeviceID != e.DeviceID || !h.rows[i].Bucket.Equal(hour) {
		k := hourlyKey{e.DeviceID, hour.Unix()}
		var ok bool
		if i, ok = h.index[k]; !ok {
			i = len(h.rows)
			h.rows = append(h.rows, HourlyBucket{Bucket: hour, DeviceID: e.DeviceID})
			h.index[k] = i
		}
		h.last = i
	}
	b := &h.rows[i]
	b.Readings++
	if e.Anomaly {
		b.Anomalies++
	}
	b.quality.add(e.Quality)
	if !e.ValueValid {
		return
	}
	v := e.Value
	if b.value.n == 0 {
		b.min, b.max = v, v
	} else {
		// max and min step with float8larger(state, v) and
		// float8smaller(state, v): the state stays only when it is
		// strictly greater (smaller), NaN above every number; an equal
		// value (-0 after 0) replaces it.
		if !pgFloat8Greater(b.max, v) {
			b.max = v
		}
		if !pgFloat8Greater(v, b.min) {
			b.min = v
		}
	}
	b.value.add(v)
}

// Buckets returns the device-hours accumulated so far.
func (h *HourlyBuckets) Buckets() []HourlyBucket { return h.rows }

// Values are the bucket's count(value), avg(value), min, max,
// stddev_samp(value) and avg(quality_score); nil for SQL's NULL.
func (b *HourlyBucket) Values() (values int64, mean, lowest, highest, std, meanQuality *float64) {
	values = int64(b.value.n)
	if b.value.n > 0 {
		mean, lowest, highest = ptr(b.value.sx/b.value.n), ptr(b.min), ptr(b.max)
	}
	if b.value.n > 1 {
		std = ptr(math.Sqrt(b.value.sxx / (b.value.n - 1)))
	}
	if b.quality.n > 0 {
		meanQuality = ptr(b.quality.sx / b.quality.n)
	}
	return values, mean, lowest, highest, std, meanQuality
}

func ptr(v float64) *float64 { return &v }

// pgFloat8Accum is float8_accum's transition state: N, Sx and Sxx.
type pgFloat8Accum struct{ n, sx, sxx float64 }

// add is float8_accum's step. (Where PostgreSQL raises an overflow error,
// for finite inputs whose sum overflows, this goes on with an infinite
// sum.) The explicit conversion keeps x·N − Sx two rounded operations, as
// PostgreSQL's C does, instead of a fused multiply-subtract.
func (a *pgFloat8Accum) add(x float64) {
	n0 := a.n
	a.n++
	a.sx += x
	if n0 > 0 {
		tmp := float64(x*a.n) - a.sx
		a.sxx += tmp * tmp / (a.n * n0)
		if math.IsInf(a.sx, 0) || math.IsInf(a.sxx, 0) {
			a.sxx = math.NaN()
		}
	} else if math.IsNaN(x) || math.IsInf(x, 0) {
		a.sxx = math.NaN()
	}
}

// pgFloat8Greater is float8_gt: NaN is above every number and equal to
// itself.
func pgFloat8Greater(a, b float64) bool {
	switch {
	case math.IsNaN(a):
		return !math.IsNaN(b)
	case math.IsNaN(b):
		return false
	}
	return a > b
}

// CopyHourly stages the hourly buckets of one shard's transform output
// within tx (staging.hourly).
func (r Run) CopyHourly(ctx context.Context, tx pgx.Tx, shard int, buckets []HourlyBucket) (int64, error) {
	return tx.CopyFrom(ctx, pgx.Identifier{"staging", "hourly"},
		[]string{"run_key", "shard", "bucket", "device_id", "reading_count", "value_count", "mean", "min", "max", "std", "anomaly_count", "mean_quality"},
		pgx.CopyFromSlice(len(buckets), func(i int) ([]any, error) {
			b := &buckets[i]
			values, mean, lo, hi, std, quality := b.Values()
			return []any{r.ID, shard, b.Bucket, b.DeviceID, b.Readings, values, mean, lo, hi, std, b.Anomalies, quality}, nil
		}))
}

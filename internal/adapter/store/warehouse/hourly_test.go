package warehouse

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestHourlyBucketsMatchPostgreSQL: the buckets HourlyBuckets computes are
// PostgreSQL's aggregates over the same rows taken in time order, bit for
// bit: random device-hours of values at the edges of float8 (NaN,
// infinities, -0, huge and tiny magnitudes, NULLs, a single value, none).
func TestHourlyBucketsMatchPostgreSQL(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 2026))
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	var rows []transform.Enriched
	h := NewHourlyBuckets()
	for d := range 40 {
		for hour := range 3 {
			n := rng.IntN(70)
			for i := range n {
				e := transform.Enriched{
					Reading: reading.Reading{DeviceID: string(rune('A'+d%26)) + "-" + string(rune('a'+d/26)),
						Time: t0.Add(time.Duration(hour)*time.Hour + time.Duration(i)*50*time.Second), ValueValid: rng.IntN(6) > 0},
					Anomaly: rng.IntN(4) == 0, Quality: randomQuality(rng),
				}
				switch d % 4 {
				case 0: // ordinary sensor values
					e.Value = 20 + rng.NormFloat64()
				case 1: // every awkward float; finite ones whose squares
					// would overflow are infinities here (PostgreSQL raises an
					// overflow error on such a finite sum)
					e.Value = randomFloat(rng)
					if math.Abs(e.Value) > 1e100 && !math.IsInf(e.Value, 0) {
						e.Value = math.Inf(int(math.Copysign(1, e.Value)))
					}
				case 2: // zeros of both signs and large and tiny values
					e.Value = []float64{0, math.Copysign(0, -1), 1e100, -1e100, 1e-300}[rng.IntN(5)]
				default: // a constant: the sum of squares must stay 0
					e.Value = 0.1
				}
				rows = append(rows, e)
				h.Add(&rows[len(rows)-1])
			}
		}
	}
	tx, err := s.Timescale.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, checksumSettings+`; CREATE TEMP TABLE hourly_in (time timestamptz, device_id text, value double precision, is_anomaly boolean, quality_score double precision)`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"hourly_in"}, []string{"time", "device_id", "value", "is_anomaly", "quality_score"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			e := &rows[i]
			var v any
			if e.ValueValid {
				v = e.Value
			}
			return []any{e.Time, e.DeviceID, v, e.Anomaly, e.Quality}, nil
		})); err != nil {
		t.Fatal(err)
	}
	q, err := tx.Query(ctx, `
		SELECT date_trunc('hour', time), device_id, count(*), count(value), avg(value ORDER BY time), min(value ORDER BY time),
		       max(value ORDER BY time), stddev_samp(value ORDER BY time), count(*) FILTER (WHERE is_anomaly), avg(quality_score ORDER BY time)
		FROM hourly_in GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	type sqlBucket struct {
		readings, values, anomalies int64
		mean, min, max, std, q      *float64
	}
	want := map[hourlyKey]sqlBucket{}
	var (
		bucket time.Time
		device string
		b      sqlBucket
	)
	if _, err := pgx.ForEachRow(q, []any{&bucket, &device, &b.readings, &b.values, &b.mean, &b.min, &b.max, &b.std, &b.anomalies, &b.q}, func() error {
		want[hourlyKey{device, bucket.Unix()}] = b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	same := func(a, b *float64) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return math.Float64bits(*a) == math.Float64bits(*b) || math.IsNaN(*a) && math.IsNaN(*b)
	}
	show := func(p *float64) any {
		if p == nil {
			return "NULL"
		}
		return *p
	}
	got := h.Buckets()
	if len(got) != len(want) || len(got) < 80 {
		t.Fatalf("%d buckets, PostgreSQL %d (want about 120)", len(got), len(want))
	}
	var nan, std int
	for i := range got {
		g := &got[i]
		w, ok := want[hourlyKey{g.DeviceID, g.Bucket.Unix()}]
		if !ok {
			t.Fatalf("bucket %s %s not in PostgreSQL's", g.DeviceID, g.Bucket)
		}
		values, mean, lo, hi, sd, quality := g.Values()
		if g.Readings != w.readings || values != w.values || g.Anomalies != w.anomalies ||
			!same(mean, w.mean) || !same(lo, w.min) || !same(hi, w.max) || !same(sd, w.std) || !same(quality, w.q) {
			t.Errorf("%s %s:\n go  %d %d %d mean %v min %v max %v std %v quality %v\n sql %d %d %d mean %v min %v max %v std %v quality %v",
				g.DeviceID, g.Bucket.Format(time.RFC3339), g.Readings, values, g.Anomalies, show(mean), show(lo), show(hi), show(sd), show(quality),
				w.readings, w.values, w.anomalies, show(w.mean), show(w.min), show(w.max), show(w.std), show(w.q))
		}
		if mean != nil && math.IsNaN(*mean) {
			nan++
		}
		if sd != nil && !math.IsNaN(*sd) && *sd != 0 {
			std++
		}
	}
	if nan == 0 || std == 0 {
		t.Errorf("the data reached no NaN mean (%d) or no nonzero std (%d): the test lost its edges", nan, std)
	}
}

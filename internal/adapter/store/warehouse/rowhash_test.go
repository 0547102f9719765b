package warehouse

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestFactSummerMatchesPostgreSQL writes random fact rows, awkward
// values included (floats at the edges of fixed notation, subnormals,
// NaN, infinities, negative zero, text that needs quoting in a record or
// an array, microsecond times), into a table shaped like the fact table,
// and checks that FactSummer's text of each row, and its sums, are what
// PostgreSQL gives for them.
func TestFactSummerMatchesPostgreSQL(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(14, 2026))
	const n = 20_000
	rows := make([]transform.Enriched, n)
	for i := range rows {
		rows[i] = randomFact(rng)
		if i > 0 && rng.IntN(2) == 0 {
			// The previous row's device, as a transform writes a device's
			// rows in a run (FactSummer keeps their shared text), or all of
			// it but one column.
			p := &rows[i-1]
			e := &rows[i]
			e.DeviceID, e.TypeCode, e.Metric, e.Unit, e.LocationID, e.Site, e.Building, e.Floor, e.Zone =
				p.DeviceID, p.TypeCode, p.Metric, p.Unit, p.LocationID, p.Site, p.Building, p.Floor, p.Zone
			switch rng.IntN(8) {
			case 0:
				e.Zone = randomText(rng)
			case 1:
				e.Floor++
			}
			if rng.IntN(2) == 0 {
				// Values of the previous row again, in the same column or
				// another, as a trailing minimum or maximum repeats a
				// value (FactSummer keeps the text of recent floats).
				e.Battery, e.Rolling.Max = p.Battery, p.Rolling.Max
				e.Rolling.Min, e.Quality = p.Value, p.Quality
			}
		}
	}

	tx, err := s.Timescale.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE rowhash (ord integer, LIKE dwh.fact_sensor_readings_enriched)`); err != nil {
		t.Fatal(err)
	}
	cols := append([]string{"ord"}, EnrichedColumns...)
	cols = append(cols, "run_id", "loaded_at")
	var vals []any
	now := time.Now()
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"rowhash"}, cols, pgx.CopyFromSlice(n, func(i int) ([]any, error) {
		vals = appendEnriched(append(vals[:0], i), &rows[i])
		return append(vals, "run", now), nil
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, checksumSettings); err != nil {
		t.Fatal(err)
	}

	q, err := tx.Query(ctx, `SELECT ord, ROW(`+factChecksumColumns+`)::text, `+factRowHash+` FROM rowhash f ORDER BY ord`)
	if err != nil {
		t.Fatal(err)
	}
	var (
		ord        int
		text       string
		hash       int64
		mismatched int
	)
	if _, err := pgx.ForEachRow(q, []any{&ord, &text, &hash}, func() error {
		got := string(appendFactRow(nil, &rows[ord]))
		if got != text {
			if mismatched++; mismatched <= 5 {
				t.Errorf("row %d:\n go  %s\n sql %s", ord, got, text)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if mismatched > 0 {
		t.Fatalf("%d of %d rows differ", mismatched, n)
	}

	var sum FactSummer
	for i := range rows {
		sum.Add(&rows[i])
	}
	want, err := SumFacts(ctx, tx, "rowhash f", "true")
	if err != nil {
		t.Fatal(err)
	}
	if got := sum.Sums(); got != want {
		t.Errorf("sums: go %+v, sql %+v", got, want)
	}
	if want.Rows != n || want.Checksum == "0" {
		t.Errorf("sql sums %+v: want %d rows and a checksum", want, n)
	}
	var empty FactSummer
	zero, err := SumFacts(ctx, tx, "rowhash f", "false")
	if err != nil {
		t.Fatal(err)
	}
	if got := empty.Sums(); got != zero {
		t.Errorf("sums of no rows: go %+v, sql %+v", got, zero)
	}
}

// awkwardText are strings record_out or array_out quote or escape.
var awkwardText = []string{"", " ", "a b", `q"uote`, `back\slash`, "(paren)", "com,ma", "{brace}", "tab\there", "new\nline",
	"NULL", "null", "NuLl", "NULLS", "é ü", "plain", "TEMP-001", "zscore", "out_of_range"}

func randomText(rng *rand.Rand) string {
	if rng.IntN(3) == 0 {
		return awkwardText[rng.IntN(len(awkwardText))]
	}
	var b strings.Builder
	for range 1 + rng.IntN(12) {
		const alphabet = "abcXYZ019 -_.,\"\\(){}"
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}

func randomTexts(rng *rand.Rand) []string {
	out := []string{}
	for range rng.IntN(4) {
		out = append(out, randomText(rng))
	}
	return out
}

// awkwardFloats sit at the edges of float8out's notations.
var awkwardFloats = []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1.0 / 3, 1e-4, 9.99e-5, 1e-5, 0.00012345, 1e14, 1e15, 999999999999999,
	999999999999999.9, 123456789012345.6, 1e16, 1.5e300, -2.5e-300, math.MaxFloat64, math.SmallestNonzeroFloat64, 2.2250738585072014e-308,
	5e-324, 21.5, 100, 1e21, 1e22, 0.3, 2.675, math.NaN(), math.Inf(1), math.Inf(-1)}

func randomFloat(rng *rand.Rand) float64 {
	switch rng.IntN(4) {
	case 0:
		return awkwardFloats[rng.IntN(len(awkwardFloats))]
	case 1:
		return math.Float64frombits(rng.Uint64())
	case 2:
		return float64(rng.IntN(2000000)-1000000) / 100
	default:
		return rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20))
	}
}

// randomQuality is a score in [0, 1], as the column's check requires.
func randomQuality(rng *rand.Rand) float64 {
	switch rng.IntN(3) {
	case 0:
		return []float64{0, 1, 0.5, 0.1, 1.0 / 3, 1e-7, 0.9999999999999999, 5e-324}[rng.IntN(8)]
	case 1:
		return float64(rng.IntN(101)) / 100
	default:
		return rng.Float64()
	}
}

func randomFact(rng *rand.Rand) transform.Enriched {
	e := transform.Enriched{
		Reading: reading.Reading{
			DeviceID: randomText(rng),
			// 1970 to 2100, at microseconds or whole seconds.
			Time:       time.UnixMicro(rng.Int64N(4_102_444_800_000_000)).UTC(),
			Value:      randomFloat(rng),
			ValueValid: rng.IntN(5) > 0,
			Battery:    randomFloat(rng),
			RSSI:       int32(rng.Uint32()),
		},
		TypeCode: randomText(rng), Metric: randomText(rng), Unit: randomText(rng),
		LocationID: randomText(rng), Site: randomText(rng), Building: randomText(rng), Floor: rng.IntN(200) - 100, Zone: randomText(rng),
		Anomaly: rng.IntN(2) == 0, Reasons: randomTexts(rng), Quality: randomQuality(rng), QualityFlags: randomTexts(rng),
	}
	if rng.IntN(3) == 0 {
		e.Time = e.Time.Truncate(time.Second)
	}
	if rng.IntN(4) > 0 {
		e.Rolling = transform.Stats{Count: 1 + rng.IntN(100), Mean: randomFloat(rng), Std: randomFloat(rng), Min: randomFloat(rng), Max: randomFloat(rng),
			Z: randomFloat(rng), HasStd: rng.IntN(3) > 0, HasZ: rng.IntN(3) > 0}
	}
	return e
}

// BenchmarkFactSummer is the transform's cost per row of summing its
// output, on rows shaped like the seeder's.
func BenchmarkFactSummer(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([]transform.Enriched, 1024)
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	// A device's readings with the trailing hour's statistics, as the
	// transform computes them (min and max are among the last values).
	var trail []float64
	for i := range rows {
		v := 21 + rng.NormFloat64()
		st := transform.Stats{Count: len(trail), Min: math.Inf(1), Max: math.Inf(-1)}
		var sum, sq float64
		for _, x := range trail {
			sum, sq = sum+x, sq+x*x
			st.Min, st.Max = min(st.Min, x), max(st.Max, x)
		}
		if n := float64(len(trail)); n > 1 {
			st.Mean, st.Std, st.HasStd = sum/n, math.Sqrt((sq-sum*sum/n)/(n-1)), true
			st.Z, st.HasZ = (v-st.Mean)/st.Std, true
		}
		rows[i] = transform.Enriched{
			Reading:  reading.Reading{DeviceID: "TEMP-0042", Time: t0.Add(time.Duration(i) * time.Minute), Value: v, ValueValid: true, Battery: 87.5 - float64(i/200)*0.5, RSSI: -61},
			TypeCode: "TEMP", Metric: "temperature", Unit: "C", LocationID: "LOC-007", Site: "Plant A", Building: "B2", Floor: 3, Zone: "north",
			Rolling: st, Reasons: []string{}, Quality: 1, QualityFlags: []string{},
		}
		if trail = append(trail, v); len(trail) > 60 {
			trail = trail[1:]
		}
	}
	var s FactSummer
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Add(&rows[i%len(rows)])
	}
}

// appendEnriched appends transform output as the values of
// EnrichedColumns to vals, for pgx's CopyFrom: the tests write rows that
// way, independently of CopyTransformed's own encoding.
func appendEnriched(vals []any, e *transform.Enriched) []any {
	var value, rollMean, rollStd, rollMin, rollMax, z any
	if e.ValueValid {
		value = e.Value
	}
	if st := e.Rolling; st.Count > 0 {
		rollMean, rollMin, rollMax = st.Mean, st.Min, st.Max
		if st.HasStd {
			rollStd = st.Std
		}
		if st.HasZ {
			z = st.Z
		}
	}
	return append(vals,
		e.Time, e.DeviceID, value, e.Battery, e.RSSI,
		e.TypeCode, e.Metric, e.Unit, e.LocationID, e.Site, e.Building, e.Floor, e.Zone,
		e.Rolling.Count, rollMean, rollStd, rollMin, rollMax, z,
		e.Anomaly, e.Reasons, e.Quality, e.QualityFlags)
}

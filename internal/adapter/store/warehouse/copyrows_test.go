package warehouse

import (
	"context"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestCopyTransformedStoresTheRows: rows written in CopyTransformed's own
// binary COPY stream, into the fact table and into staging, are the rows
// given, value for value: their sums in SQL (an md5 of each row's text,
// and the exact quality sum) are FactSummer's over the same rows, which
// TestFactSummerMatchesPostgreSQL checks against rows pgx wrote. The rows
// are random, with every awkward float, text and array of that test.
func TestCopyTransformedStoresTheRows(t *testing.T) {
	t.Parallel()
	s := testenv.Databases(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 2026))
	const n = 20_000
	rows := make([]transform.Enriched, n)
	var want FactSummer
	for i := range rows {
		rows[i] = randomFact(rng)
		want.Add(&rows[i])
	}
	// A pool with the -sqlprofile tracer, which must see the copies.
	stmts := store.NewStatements()
	pool, err := store.OpenPGPool(ctx, s.Config.Timescale, nil, 2, stmts)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	run := Run{TS: pool, ID: "copy-run"}
	if err := run.CreateStaging(ctx); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, direct := range []bool{true, false} {
		// Two copies each, as a transform makes one per flush.
		for _, part := range [][]transform.Enriched{rows[:n/3], rows[n/3:]} {
			copied, err := run.CopyTransformed(ctx, tx, 3, part, direct)
			if err != nil {
				t.Fatalf("direct %v: %v", direct, err)
			}
			if copied != int64(len(part)) {
				t.Errorf("direct %v: copied %d rows, want %d", direct, copied, len(part))
			}
		}
	}
	if _, err := tx.Exec(ctx, checksumSettings); err != nil {
		t.Fatal(err)
	}
	facts, err := SumFacts(ctx, tx, "dwh.fact_sensor_readings_enriched f", "run_id = $1", run.ID)
	if err != nil {
		t.Fatal(err)
	}
	staged, err := SumFacts(ctx, tx, "staging.enriched f", "run_key = $1 AND shard = 3", run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if w := want.Sums(); facts != w || staged != w {
		t.Errorf("sums of the copied rows:\n facts   %+v\n staging %+v\n want    %+v", facts, staged, w)
	}
	traced := map[string][2]int64{}
	for _, st := range stmts.Top(0) {
		if strings.HasPrefix(st.SQL, "COPY") {
			traced[strings.Fields(st.SQL)[1]] = [2]int64{st.Calls, st.Rows}
		}
	}
	wantTraced := map[string][2]int64{`"dwh"."fact_sensor_readings_enriched"`: {2, n}, `"staging"."enriched"`: {2, n}}
	if !maps.Equal(traced, wantTraced) {
		t.Errorf("the tracer saw the copies as %v; want %v (calls, rows)", traced, wantTraced)
	}
}

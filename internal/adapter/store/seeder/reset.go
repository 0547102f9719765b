package seeder

import (
	"context"
	"fmt"
	"strings"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/jackc/pgx/v5/pgxpool"
)

// derivedTables are the tables computed from the readings: the warehouse,
// the batch staging area and the stream sink. Kafka offsets
// (stream_offsets) are not among them: messages already consumed must not
// be read again.
var derivedTables = []string{
	"dwh.fact_sensor_readings_enriched", "dwh.ml_features", "dwh.anomaly_predictions", "dwh.dim_devices", "dwh.dim_locations",
	"dwh.etl_rejects", "dwh.etl_runs", "dwh.etl_watermarks",
	"staging.readings", "staging.enriched", "staging.feature_hours", "staging.hourly", "staging.devices", "staging.device_types", "staging.locations",
	"public.sensor_readings_stream_agg", "public.stream_anomalies", "public.stream_dead_letters",
}

// ResetDerived empties everything derived from the readings, so that a new
// seed does not sit next to a warehouse built from the old one, and zeroes
// the stream's counters (its offsets stay). It returns the tables emptied.
func ResetDerived(ctx context.Context, ts *pgxpool.Pool) ([]string, error) {
	cagg, err := store.HasTimescale(ctx, ts)
	if err != nil {
		return nil, err
	}
	tables := append([]string(nil), derivedTables...)
	if !cagg {
		tables = append(tables, "dwh.fact_hourly_agg")
	}
	if _, err := ts.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")); err != nil {
		return nil, fmt.Errorf("reset derived tables: %w", err)
	}
	// The offsets stay; their counters counted rows that are gone.
	if _, err := ts.Exec(ctx, `UPDATE public.stream_offsets SET records = 0, inserted = 0, duplicates = 0, dead_letters = 0, anomalies = 0`); err != nil {
		return nil, fmt.Errorf("reset stream counters: %w", err)
	}
	if cagg {
		// A continuous aggregate is emptied by refreshing it over all time.
		if _, err := ts.Exec(ctx, `CALL refresh_continuous_aggregate('dwh.fact_hourly_agg', NULL, NULL)`); err != nil {
			return nil, fmt.Errorf("reset dwh.fact_hourly_agg: %w", err)
		}
		tables = append(tables, "dwh.fact_hourly_agg")
	}
	return tables, nil
}

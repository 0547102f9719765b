package sink

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
)

// Registry reads every registered device with its type from the
// MySQL registry, keyed by device id.
func Registry(ctx context.Context, my *sql.DB) (map[string]ingest.Device, error) {
	rows, err := my.QueryContext(ctx, `SELECT d.device_id, d.type_code, d.location_id, d.status,
		t.code, t.metric, t.unit, t.valid_min, t.valid_max, t.max_rate_per_min, t.expected_interval_s
		FROM devices d JOIN device_types t ON t.code = d.type_code`)
	if err != nil {
		return nil, fmt.Errorf("read device registry: %w", err)
	}
	defer rows.Close()
	out := map[string]ingest.Device{}
	for rows.Next() {
		var d ingest.Device
		var intervalS int64
		if err := rows.Scan(&d.Device.ID, &d.Device.TypeCode, &d.Device.LocationID, &d.Device.Status,
			&d.Type.Code, &d.Type.Metric, &d.Type.Unit, &d.Type.ValidMin, &d.Type.ValidMax, &d.Type.MaxRatePerMin, &intervalS); err != nil {
			return nil, fmt.Errorf("read device registry: %w", err)
		}
		d.Type.ExpectedInterval = time.Duration(intervalS) * time.Second
		out[d.Device.ID] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read device registry: %w", err)
	}
	return out, nil
}

package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// rebuildWindowsSQL recomputes the windows of length win of device $1 in
// [$2, $3) from the readings the stream landed there, with their
// anomalies, by the same aggregation as a batch (windowSelect).
func rebuildWindowsSQL(win window.Length) string {
	return `INSERT INTO public.sensor_readings_stream_agg ` + windowColumns + "\n" + windowSelect(win,
		`(SELECT r.time, r.device_id, r.value, a.reasons
	  FROM public.sensor_readings r LEFT JOIN public.stream_anomalies a USING (device_id, time)
	  WHERE r.device_id = $1 AND r.time >= $2 AND r.time < $3 AND r.source = 'stream') raw`, "")
}

// RebuildWindows replaces, in tx, the stored windows of device in [from,
// to) (whole windows of length win) with windows of length win recomputed
// from the stream's raw readings and anomalies there, and returns how many
// it wrote. Every stored window starting in the range goes, whatever its
// length. A lease that merges into one of those windows meanwhile waits
// for tx (the rows are locked by the delete) and then adds to the rebuilt
// window; a lease that committed before the delete is in the
// recomputation.
func RebuildWindows(ctx context.Context, tx pgx.Tx, device string, from, to time.Time, win window.Length) (int64, error) {
	if _, err := tx.Exec(ctx, `DELETE FROM public.sensor_readings_stream_agg WHERE device_id = $1 AND window_start >= $2 AND window_start < $3`,
		device, from, to); err != nil {
		return 0, fmt.Errorf("rebuild windows of %s: %w", device, err)
	}
	tag, err := tx.Exec(ctx, rebuildWindowsSQL(win), device, from, to)
	if err != nil {
		return 0, fmt.Errorf("rebuild windows of %s: %w", device, err)
	}
	return tag.RowsAffected(), nil
}

package features_test

import (
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// BenchmarkAggregatorAdd: one device, one reading a minute.
func BenchmarkAggregatorAdd(b *testing.B) {
	g := features.NewAggregator()
	e := transform.Enriched{TypeCode: "TEMP", Zone: "north", Quality: 1}
	e.DeviceID, e.ValueValid = "TEMP-001", true
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e.Time = day.Add(time.Duration(i) * time.Minute)
		e.Value = float64(i % 17)
		g.Add(&e)
	}
}

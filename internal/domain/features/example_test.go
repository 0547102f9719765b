package features_test

import (
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/features"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

func ExampleBuild() {
	typ, _ := reading.TypeByCode("TEMP")
	s := transform.NewDeviceState(reading.Device{ID: "TEMP-001"}, typ, reading.Location{ID: "LOC-0001", Zone: "north"}, transform.DefaultParams())
	g := features.NewAggregator()
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	// Four hours, one reading a minute, rising 0.01 °C a minute; one jump
	// at 02:30.
	for i := range 4 * 60 {
		r := reading.Reading{Time: start.Add(time.Duration(i) * time.Minute), DeviceID: "TEMP-001", Value: 20 + 0.01*float64(i), ValueValid: true}
		if i == 150 {
			r.Value += 5
		}
		e := s.Push(r)
		g.Add(&e)
	}
	for _, row := range features.Build(g.Hours(), start, start.Add(4*time.Hour)) {
		fmt.Printf("%s %s count=%d mean=%.3f slope=%.3f anomalies=%d prev_mean=%.3f label=%v\n",
			row.DeviceID, row.Hour.Format("15:04"), row.Count, *row.Mean, *row.Slope, row.AnomalyCount, *row.PrevHourMean, row.Label)
	}
	// Output:
	// TEMP-001 01:00 count=60 mean=20.895 slope=0.010 anomalies=0 prev_mean=20.295 label=true
	// TEMP-001 02:00 count=60 mean=21.578 slope=0.010 anomalies=2 prev_mean=20.895 label=false
}

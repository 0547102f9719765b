package transform_test

import (
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

func ExampleDeviceState_Push() {
	typ, _ := reading.TypeByCode("TEMP")
	dev := reading.Device{ID: "TEMP-001", TypeCode: "TEMP", LocationID: "LOC-0001"}
	loc := reading.Location{ID: "LOC-0001", Site: "Rotterdam Botlek", Building: "RTM-A", Floor: 1, Zone: "north"}
	s := transform.NewDeviceState(dev, typ, loc, transform.DefaultParams())

	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	// An hour of readings alternating 20.9 and 21.1 °C.
	for i := range 60 {
		s.Push(reading.Reading{Time: start.Add(time.Duration(i) * time.Minute), DeviceID: dev.ID, Value: 21 + 0.1*float64(1-2*(i%2)), ValueValid: true})
	}
	for _, r := range []reading.Reading{
		{Time: start.Add(60 * time.Minute), DeviceID: dev.ID, Value: 21.05, ValueValid: true},
		{Time: start.Add(61 * time.Minute), DeviceID: dev.ID, Value: 26, ValueValid: true},
		{Time: start.Add(62 * time.Minute), DeviceID: dev.ID},
		{Time: start.Add(66 * time.Minute), DeviceID: dev.ID, Value: 99, ValueValid: true},
	} {
		e := s.Push(r)
		z := "-"
		if e.Rolling.HasZ {
			z = fmt.Sprintf("%.1f", e.Rolling.Z)
		}
		fmt.Printf("%s %s n=%d mean=%.2f z=%s reasons=%v quality=%.1f flags=%v kinds=%v\n",
			e.Time.Format("15:04"), e.Zone, e.Rolling.Count, e.Rolling.Mean, z, e.Reasons, e.Quality, e.QualityFlags, e.Kinds())
	}
	// Output:
	// 01:00 north n=60 mean=21.00 z=0.5 reasons=[] quality=1.0 flags=[] kinds=[]
	// 01:01 north n=60 mean=21.00 z=49.9 reasons=[zscore rate_of_change] quality=1.0 flags=[] kinds=[spike]
	// 01:02 north n=60 mean=21.08 z=- reasons=[] quality=0.0 flags=[null] kinds=[null]
	// 01:06 north n=56 mean=21.09 z=115.4 reasons=[zscore out_of_range rate_of_change gap] quality=0.2 flags=[out_of_range gap] kinds=[out_of_range gap]
}

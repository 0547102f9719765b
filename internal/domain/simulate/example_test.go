package simulate_test

import (
	"fmt"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/simulate"
)

func ExampleNewFleet() {
	f := simulate.NewFleet(42, 8)
	fmt.Println(len(f.Types), "types,", len(f.Locations), "locations")
	for _, d := range f.Devices[:7] {
		fmt.Println(d.ID, d.LocationID)
	}
	// Output:
	// 6 types, 4 locations
	// TEMP-001 LOC-0001
	// HUM-001 LOC-0002
	// PRES-001 LOC-0003
	// CO2-001 LOC-0004
	// VIB-001 LOC-0001
	// PWR-001 LOC-0002
	// TEMP-002 LOC-0002
}

func ExampleGenerator_Day() {
	fleet := simulate.NewFleet(42, 6)
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		panic(err)
	}
	d := gen.Day(fleet.Devices[0], time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC))
	fmt.Printf("%s: %d slots, %d readings, %d missing\n", d.DeviceID, d.Slots, len(d.Readings), d.Missing)
	r := d.Readings[0]
	fmt.Printf("%s %.3f °C battery %.2f%% rssi %d dBm\n", r.Time.Format(time.RFC3339), r.Value, r.Battery, r.RSSI)
	for _, a := range d.Anomalies {
		fmt.Printf("%s %s..%s magnitude %g\n", a.Kind, a.Start.Format("15:04"), a.End.Format("15:04"), a.Magnitude)
	}
	// Output:
	// TEMP-001: 1440 slots, 1435 readings, 5 missing
	// 2026-03-28T00:00:00Z 19.908 °C battery 81.57% rssi -66 dBm
	// spike 03:46..03:46 magnitude -6.341
	// spike 07:45..07:45 magnitude 8.157
	// spike 09:47..09:47 magnitude -8.139
	// out_of_range 14:21..14:21 magnitude 106.5
	// null 15:41..15:41 magnitude 1
	// null 17:52..17:52 magnitude 1
	// out_of_range 19:19..19:19 magnitude 116.498
	// out_of_range 22:08..22:08 magnitude 127.397
}

package reading

import "time"

// Catalog is the fixed set of device types the fleet is built from. Ranges
// are the physical limits of common industrial sensors of each kind.
var Catalog = []DeviceType{
	{Code: "TEMP", Metric: "temperature", Unit: "°C", ValidMin: -40, ValidMax: 85, MaxRatePerMin: 2, ExpectedInterval: time.Minute},
	{Code: "HUM", Metric: "humidity", Unit: "%RH", ValidMin: 0, ValidMax: 100, MaxRatePerMin: 5, ExpectedInterval: time.Minute},
	{Code: "PRES", Metric: "pressure", Unit: "hPa", ValidMin: 870, ValidMax: 1085, MaxRatePerMin: 1.5, ExpectedInterval: time.Minute},
	{Code: "CO2", Metric: "co2", Unit: "ppm", ValidMin: 300, ValidMax: 5000, MaxRatePerMin: 150, ExpectedInterval: time.Minute},
	{Code: "VIB", Metric: "vibration", Unit: "mm/s", ValidMin: 0, ValidMax: 50, MaxRatePerMin: 4, ExpectedInterval: time.Minute},
	{Code: "PWR", Metric: "power", Unit: "W", ValidMin: 0, ValidMax: 10000, MaxRatePerMin: 800, ExpectedInterval: time.Minute},
}

// TypeByCode returns the catalog entry for code.
func TypeByCode(code string) (DeviceType, bool) {
	for _, t := range Catalog {
		if t.Code == code {
			return t, true
		}
	}
	return DeviceType{}, false
}

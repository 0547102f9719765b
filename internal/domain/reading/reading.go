// Package reading defines the domain types shared by batch and stream ETL:
// device types with their valid ranges, devices, locations and readings.
// It does no I/O.
package reading

import "time"

// DeviceType is one kind of sensor with its physical limits. ValidMin and
// ValidMax bound what the sensor can physically report; MaxRatePerMin is the
// largest plausible change between two readings a minute apart.
type DeviceType struct {
	Code             string        `json:"code"`   // TEMP
	Metric           string        `json:"metric"` // temperature
	Unit             string        `json:"unit"`   // °C
	ValidMin         float64       `json:"valid_min"`
	ValidMax         float64       `json:"valid_max"`
	MaxRatePerMin    float64       `json:"max_rate_per_min"`
	ExpectedInterval time.Duration `json:"expected_interval"`
}

// InRange reports whether v is within the type's valid range, bounds included.
func (t DeviceType) InRange(v float64) bool { return v >= t.ValidMin && v <= t.ValidMax }

// Device is one installed sensor.
type Device struct {
	ID          string    `json:"device_id"` // TEMP-001
	TypeCode    string    `json:"type_code"`
	LocationID  string    `json:"location_id"`
	Model       string    `json:"model"`
	Firmware    string    `json:"firmware"`
	Status      string    `json:"status"` // active, maintenance, retired
	InstalledAt time.Time `json:"installed_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Location is where a device is installed.
type Location struct {
	ID        string    `json:"location_id"` // LOC-0001
	Site      string    `json:"site"`
	Building  string    `json:"building"`
	Floor     int       `json:"floor"`
	Zone      string    `json:"zone"`
	Latitude  float64   `json:"latitude"`
	Longitude float64   `json:"longitude"`
	Timezone  string    `json:"timezone"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Reading is one measurement. A reading may carry no value (the sensor
// reported, but the measurement was missing): ValueValid is then false.
type Reading struct {
	Time       time.Time
	DeviceID   string
	Value      float64
	ValueValid bool
	Battery    float64 // percent, 0..100
	RSSI       int32   // dBm
}

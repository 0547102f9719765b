package simulate

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Fleet is the device registry and the locations of one seed: what the seeder
// writes to MySQL and PostgreSQL, and what the generator simulates.
type Fleet struct {
	Seed           int64
	Types          []reading.DeviceType // reading.Catalog, in catalog order
	TypesUpdatedAt time.Time            // updated_at of every device type
	Locations      []reading.Location
	Devices        []reading.Device
}

// site is one of the four plants the fleet is spread over, with the climate
// the environment model needs.
type site struct {
	Name      string
	Code      string
	Latitude  float64
	Longitude float64
	Timezone  string
	Buildings []string
	// climate
	MeanTempC     float64 // annual mean outdoor temperature
	SeasonalAmpC  float64 // half the summer-winter difference; negative south of the equator
	DiurnalAmpC   float64 // half the day-night difference
	IndoorRH      float64 // typical indoor relative humidity, %
	StationPressH float64 // mean station pressure at the site's altitude, hPa
}

// sites are real places with their IANA time zones; pressure is the station
// pressure at the site's altitude (São Paulo is at about 760 m).
var sites = []site{
	{Name: "Rotterdam Botlek", Code: "RTM", Latitude: 51.8785, Longitude: 4.3160, Timezone: "Europe/Amsterdam",
		Buildings: []string{"RTM-A", "RTM-B", "RTM-C"}, MeanTempC: 10.8, SeasonalAmpC: 7.5, DiurnalAmpC: 3.5, IndoorRH: 48, StationPressH: 1013.5},
	{Name: "Chicago Pilsen", Code: "CHI", Latitude: 41.8525, Longitude: -87.6614, Timezone: "America/Chicago",
		Buildings: []string{"CHI-1", "CHI-2", "CHI-3"}, MeanTempC: 10.5, SeasonalAmpC: 13, DiurnalAmpC: 5, IndoorRH: 40, StationPressH: 992},
	{Name: "Singapore Jurong", Code: "SIN", Latitude: 1.3329, Longitude: 103.7436, Timezone: "Asia/Singapore",
		Buildings: []string{"SIN-N", "SIN-S", "SIN-W"}, MeanTempC: 27.8, SeasonalAmpC: 1, DiurnalAmpC: 3.5, IndoorRH: 60, StationPressH: 1009},
	{Name: "Sao Paulo Santo Amaro", Code: "SAO", Latitude: -23.6544, Longitude: -46.7094, Timezone: "America/Sao_Paulo",
		Buildings: []string{"SAO-P1", "SAO-P2", "SAO-P3"}, MeanTempC: 20.5, SeasonalAmpC: -3.5, DiurnalAmpC: 5, IndoorRH: 55, StationPressH: 928},
}

// zones are the parts of a floor a location names.
var zones = []string{"north", "south", "east", "west", "core"}

const floorsPerBuilding = 5

// models lists plausible hardware per device type.
var models = map[string][]string{
	"TEMP": {"Sensirion STS40", "TI TMP117", "Bosch BME280"},
	"HUM":  {"Sensirion SHT45", "Honeywell HIH8131", "Vaisala HMP60"},
	"PRES": {"Bosch BMP390", "TE MS5611", "Infineon DPS310"},
	"CO2":  {"Sensirion SCD41", "Senseair S8", "Vaisala GMP252"},
	"VIB":  {"SKF CMWA 8800", "Banner QM30VT2", "ifm VVB001"},
	"PWR":  {"Schneider PM5110", "Eastron SDM630", "Siemens PAC3200"},
}

// Fixed reference instants: fleet metadata must not depend on the wall clock.
var (
	typesUpdatedAt   = time.Date(2024, 1, 2, 9, 0, 0, 0, time.UTC)
	installedFrom    = time.Date(2022, 1, 10, 0, 0, 0, 0, time.UTC)
	locationsUpdated = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
)

// LocationCount is how many locations a fleet of devices devices has: one
// per four devices, at least four (one per site).
func LocationCount(devices int) int { return max(4, devices/4) }

// DeviceID is the id of the n-th device (1-based) of type code: TEMP-001.
func DeviceID(code string, n int) string { return fmt.Sprintf("%s-%03d", code, n) }

// NewFleet builds the fleet of seed: devices devices round-robin over the
// catalog types (TEMP-001, HUM-001, ..., PWR-001, TEMP-002, ...) installed in
// LocationCount(devices) locations spread over four sites. The same arguments
// always give the same fleet.
func NewFleet(seed int64, devices int) Fleet {
	devices = max(devices, 0)
	f := Fleet{Seed: seed, Types: slices.Clone(reading.Catalog), TypesUpdatedAt: typesUpdatedAt}
	s := uint64(seed)

	nLoc := LocationCount(devices)
	f.Locations = make([]reading.Location, nLoc)
	places := make([][]int, len(sites)) // per site, a seeded order of its building/floor/zone places
	for i := range places {
		places[i] = permutation(combine(s, uint64(i), 0x91ACE), len(sites[i].Buildings)*floorsPerBuilding*len(zones))
	}
	for i := range f.Locations {
		st := sites[i%len(sites)]
		p := places[i%len(sites)]
		// Each site's places are used once before any repeats.
		place := p[(i/len(sites))%len(p)]
		b := place % len(st.Buildings)
		floor := (place / len(st.Buildings)) % floorsPerBuilding
		zone := zones[place/(len(st.Buildings)*floorsPerBuilding)]
		// Buildings sit a few hundred metres from the site centre; zones a
		// few metres from the building centre.
		bk := combine(s, hashString(st.Buildings[b]))
		lat := st.Latitude + between(mix64(bk), -0.004, 0.004) + zoneShift(zone, 0)
		lon := st.Longitude + between(mix64(bk+1), -0.004, 0.004) + zoneShift(zone, 1)
		id := fmt.Sprintf("LOC-%04d", i+1)
		f.Locations[i] = reading.Location{
			ID:        id,
			Site:      st.Name,
			Building:  st.Buildings[b],
			Floor:     floor,
			Zone:      zone,
			Latitude:  round(lat, 6),
			Longitude: round(lon, 6),
			Timezone:  st.Timezone,
			UpdatedAt: locationsUpdated.Add(time.Duration(combine(s, hashString(id))%(180*24)) * time.Hour),
		}
	}

	f.Devices = make([]reading.Device, devices)
	for i := range f.Devices {
		t := reading.Catalog[i%len(reading.Catalog)]
		id := DeviceID(t.Code, i/len(reading.Catalog)+1)
		h := combine(s, hashString(id), 0xF1EE7)
		ms := models[t.Code]
		model := ms[mix64(h)%uint64(len(ms))]
		fw := fmt.Sprintf("%d.%d.%d", 1+mix64(h+1)%3, mix64(h+2)%10, mix64(h+3)%20)
		status := "active"
		switch r := unit(mix64(h + 4)); {
		case r >= 0.98:
			status = "retired"
		case r >= 0.93:
			status = "maintenance"
		}
		installed := installedFrom.Add(time.Duration(mix64(h+5)%(700*24*60)) * time.Minute)
		updated := installed.Add(time.Duration(1+mix64(h+6)%(300*24)) * time.Hour)
		f.Devices[i] = reading.Device{
			ID:          id,
			TypeCode:    t.Code,
			LocationID:  f.Locations[locationOf(i, nLoc)].ID,
			Model:       model,
			Firmware:    fw,
			Status:      status,
			InstalledAt: installed,
			UpdatedAt:   updated,
		}
	}
	return f
}

// locationOf is the location index of the i-th device: the devices of one
// type walk the locations in order, each type starting at a different
// offset, so every location holds a mix of types and every type is at every
// site.
func locationOf(i, nLoc int) int {
	n, typ := i/len(reading.Catalog), i%len(reading.Catalog)
	return (n + typ*(nLoc/len(reading.Catalog)+1)) % nLoc
}

// zoneShift offsets a zone from its building centre, in degrees (about 30 m).
func zoneShift(zone string, axis int) float64 {
	const d = 0.0003
	switch {
	case zone == "north" && axis == 0:
		return d
	case zone == "south" && axis == 0:
		return -d
	case zone == "east" && axis == 1:
		return d
	case zone == "west" && axis == 1:
		return -d
	}
	return 0
}

// permutation is a seeded Fisher-Yates shuffle of 0..n-1, spelled out
// here so the fleet never depends on a library's shuffle algorithm.
func permutation(key uint64, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(mix64(key+uint64(i)) % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// round rounds v to digits decimals.
func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

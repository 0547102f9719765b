package simulate

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

func TestNewFleetIsDeterministic(t *testing.T) {
	t.Parallel()
	if diff := cmp.Diff(NewFleet(42, 100), NewFleet(42, 100)); diff != "" {
		t.Errorf("same seed, different fleets (-first +second):\n%s", diff)
	}
	a, b := NewFleet(42, 100), NewFleet(43, 100)
	if cmp.Equal(a.Devices, b.Devices) || cmp.Equal(a.Locations, b.Locations) {
		t.Error("seeds 42 and 43 give the same devices or locations")
	}
}

func TestNewFleetShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		devices, locations int
		firstIDs           []string
		perType            map[string]int
	}{
		{0, 4, nil, map[string]int{}},
		{8, 4, []string{"TEMP-001", "HUM-001", "PRES-001", "CO2-001", "VIB-001", "PWR-001", "TEMP-002", "HUM-002"},
			map[string]int{"TEMP": 2, "HUM": 2, "PRES": 1, "CO2": 1, "VIB": 1, "PWR": 1}},
		{1000, 250, []string{"TEMP-001", "HUM-001", "PRES-001", "CO2-001", "VIB-001", "PWR-001", "TEMP-002", "HUM-002"},
			map[string]int{"TEMP": 167, "HUM": 167, "PRES": 167, "CO2": 167, "VIB": 166, "PWR": 166}},
		{6001, 1500, []string{"TEMP-001", "HUM-001", "PRES-001", "CO2-001", "VIB-001", "PWR-001", "TEMP-002", "HUM-002"},
			map[string]int{"TEMP": 1001, "HUM": 1000, "PRES": 1000, "CO2": 1000, "VIB": 1000, "PWR": 1000}},
	}
	for _, tc := range tests {
		f := NewFleet(42, tc.devices)
		if len(f.Devices) != tc.devices || len(f.Locations) != tc.locations {
			t.Errorf("NewFleet(42, %d): %d devices, %d locations, want %d and %d", tc.devices, len(f.Devices), len(f.Locations), tc.devices, tc.locations)
		}
		if diff := cmp.Diff(reading.Catalog, f.Types); diff != "" {
			t.Errorf("types differ from the catalog (-want +got):\n%s", diff)
		}
		var ids []string
		perType := map[string]int{}
		seen := map[string]bool{}
		locs := map[string]reading.Location{}
		sitesOfType := map[string]map[string]bool{}
		for _, l := range f.Locations {
			if _, err := time.LoadLocation(l.Timezone); err != nil || l.Latitude < -90 || l.Latitude > 90 || l.Longitude < -180 || l.Longitude > 180 {
				t.Errorf("location %+v: bad timezone or coordinates (%v)", l, err)
			}
			locs[l.ID] = l
		}
		for i, d := range f.Devices {
			if i < len(tc.firstIDs) {
				ids = append(ids, d.ID)
			}
			perType[d.TypeCode]++
			if seen[d.ID] {
				t.Errorf("duplicate device id %s", d.ID)
			}
			seen[d.ID] = true
			l, ok := locs[d.LocationID]
			if !ok {
				t.Errorf("%s: unknown location %s", d.ID, d.LocationID)
			}
			if sitesOfType[d.TypeCode] == nil {
				sitesOfType[d.TypeCode] = map[string]bool{}
			}
			sitesOfType[d.TypeCode][l.Site] = true
			if d.Status != "active" && d.Status != "maintenance" && d.Status != "retired" || d.Model == "" || d.Firmware == "" ||
				!d.UpdatedAt.After(d.InstalledAt) || d.UpdatedAt.Year() > 2025 {
				t.Errorf("device %+v: bad status, model, firmware or timestamps", d)
			}
		}
		if diff := cmp.Diff(tc.firstIDs, ids); diff != "" {
			t.Errorf("NewFleet(42, %d) first ids (-want +got):\n%s", tc.devices, diff)
		}
		if diff := cmp.Diff(tc.perType, perType); diff != "" {
			t.Errorf("NewFleet(42, %d) devices per type (-want +got):\n%s", tc.devices, diff)
		}
		if tc.devices >= 1000 {
			for typ, s := range sitesOfType {
				if len(s) != len(sites) {
					t.Errorf("type %s is at %d sites, want all %d", typ, len(s), len(sites))
				}
			}
		}
	}
}

func TestNewFleetStatusesAndPlaces(t *testing.T) {
	t.Parallel()
	f := NewFleet(42, 1000)
	statuses := map[string]int{}
	for _, d := range f.Devices {
		statuses[d.Status]++
	}
	if diff := cmp.Diff(map[string]int{"active": 937, "maintenance": 48, "retired": 15}, statuses); diff != "" {
		t.Errorf("statuses of NewFleet(42, 1000) (-want +got):\n%s", diff)
	}
	// 250 locations over 4 sites of 75 places each: no place repeats.
	places := map[[4]any]string{}
	for _, l := range f.Locations {
		k := [4]any{l.Site, l.Building, l.Floor, l.Zone}
		if prev, dup := places[k]; dup {
			t.Errorf("%s and %s are the same place %v", prev, l.ID, k)
		}
		places[k] = l.ID
	}
}

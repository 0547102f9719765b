package ingest_test

import (
	"slices"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

func TestRejudge(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 30, 0, time.UTC)
	valid := func(id string, at time.Time) []byte {
		return reading.Encode(nil, reading.Reading{DeviceID: id, Time: at, Value: 21.5, ValueValid: true, Battery: 90, RSSI: -60}, 1)
	}
	registry := reading.Limits{Devices: reading.NewDeviceSet([]string{"TEMP-001"})}
	lateErr := "window [2026-11-30T11:30:00Z, 2026-11-30T11:31:00Z) closed: partition watermark 2026-11-30T12:00:30Z, allowed lateness 10m0s"
	tests := []struct {
		name     string
		d        ingest.DeadLetter
		lateness time.Duration
		land     bool
		reason   string
	}{
		{"unknown device registered since", ingest.DeadLetter{Raw: valid("TEMP-001", t0), RecordTime: t0, Reason: "unknown_device"}, 10 * time.Minute, true, ""},
		{"unknown device still unknown", ingest.DeadLetter{Raw: valid("TEMP-999", t0), RecordTime: t0, Reason: "unknown_device"}, 10 * time.Minute, false, "unknown_device"},
		{"malformed stays malformed", ingest.DeadLetter{Raw: []byte(`{"device_id":`), RecordTime: t0, Reason: "not_json"}, time.Hour, false, "not_json"},
		{"late, lateness raised past it", ingest.DeadLetter{Raw: valid("TEMP-001", t0.Add(-30*time.Minute)), RecordTime: t0, Reason: "late", Error: lateErr, Watermark: t0}, time.Hour, true, ""},
		{"late, lateness not raised enough", ingest.DeadLetter{Raw: valid("TEMP-001", t0.Add(-30*time.Minute)), RecordTime: t0, Reason: "late", Error: lateErr, Watermark: t0}, 20 * time.Minute, false, "late"},
		{"late, watermark unknown", ingest.DeadLetter{Raw: valid("TEMP-001", t0.Add(-30*time.Minute)), RecordTime: t0, Reason: "late", Error: lateErr}, time.Hour, false, "late"},
		{"unknown device registered since, but late now", ingest.DeadLetter{Raw: valid("TEMP-001", t0.Add(-30*time.Minute)), RecordTime: t0, Reason: "unknown_device", Watermark: t0}, 10 * time.Minute, false, "late"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := ingest.Rejudge(tt.d, registry, 0, tt.lateness)
			if v.Land != tt.land || v.Reason != tt.reason {
				t.Fatalf("Rejudge: land %v reason %q (%s), want land %v reason %q", v.Land, v.Reason, v.Error, tt.land, tt.reason)
			}
			if v.Land && (v.Reading.DeviceID != "TEMP-001" || v.Reading.Value != 21.5) {
				t.Errorf("landed reading %+v", v.Reading)
			}
			if !v.Land && v.Error == "" {
				t.Error("a kept dead letter without an error")
			}
		})
	}
}

// TestFlagReplayed: a spike replayed among steady stored readings is
// flagged, as it would have been had it arrived in time; a replayed reading
// at the time of a stored one is not pushed and gets no flags.
func TestFlagReplayed(t *testing.T) {
	typ := reading.DeviceType{Code: "TEMP", ValidMin: -40, ValidMax: 85, MaxRatePerMin: 1000, ExpectedInterval: time.Minute}
	dev := ingest.Device{Device: reading.Device{ID: "TEMP-001", TypeCode: "TEMP", LocationID: "L1"}, Type: typ}
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var stored []reading.Reading
	for i := range 40 {
		stored = append(stored, reading.Reading{DeviceID: dev.Device.ID, Time: t0.Add(time.Duration(i) * time.Minute), Value: 20 + float64(i%2)*0.1, ValueValid: true, Battery: 90})
	}
	at := func(minute int, v float64) ingest.Reading {
		return ingest.Reading{Partition: 1, Offset: int64(minute), Reading: reading.Reading{DeviceID: dev.Device.ID, Time: t0.Add(time.Duration(minute)*time.Minute + 30*time.Second), Value: v, ValueValid: true, Battery: 90}}
	}
	dup := at(10, 99)
	dup.Time = stored[10].Time
	replayed := []ingest.Reading{at(35, 20.05), at(30, 84), dup}
	ingest.FlagReplayed(dev, transform.DefaultParams(), stored, replayed)
	if !slices.IsSortedFunc(replayed, func(a, b ingest.Reading) int { return a.Time.Compare(b.Time) }) {
		t.Fatal("replayed not sorted by time")
	}
	byOffset := map[int64][]string{}
	for _, r := range replayed {
		byOffset[r.Offset] = r.Reasons
	}
	if byOffset[30] == nil {
		t.Error("the spike (84 among 20) was not flagged")
	}
	if byOffset[35] != nil {
		t.Errorf("a steady reading was flagged: %v", byOffset[35])
	}
	if byOffset[10] != nil {
		t.Errorf("a reading at a stored one's time was flagged: %v", byOffset[10])
	}
}

package transform_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// benchReadings is a day-long smooth signal with noise, one reading per
// interval, with a few nulls: what the batch streams per device.
func benchReadings(n int, interval time.Duration) []reading.Reading {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]reading.Reading, n)
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	for i := range out {
		out[i] = reading.Reading{
			Time:       start.Add(time.Duration(i) * interval),
			DeviceID:   "TEMP-001",
			Value:      21 + 3*math.Sin(float64(i)*2*math.Pi/1440) + 0.1*rng.NormFloat64(),
			ValueValid: rng.IntN(200) != 0,
		}
	}
	return out
}

func benchmarkPush(b *testing.B, interval time.Duration) {
	typ, _ := reading.TypeByCode("TEMP")
	typ.ExpectedInterval = interval
	readings := benchReadings(1<<16, interval)
	s := transform.NewDeviceState(reading.Device{ID: "TEMP-001"}, typ, reading.Location{ID: "LOC-0001"}, transform.DefaultParams())
	// Warm up: the first hour grows the buffers.
	for _, r := range readings[:1<<12] {
		s.Push(r)
	}
	var sink int
	shift := time.Duration(len(readings)) * interval
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(readings)
		r := readings[j]
		// Keep time increasing across laps.
		r.Time = r.Time.Add(time.Duration(i/len(readings)+1) * shift)
		e := s.Push(r)
		sink += e.Rolling.Count
	}
	_ = sink
}

// BenchmarkPush: one reading a minute, 60 values in the window.
func BenchmarkPush(b *testing.B) { benchmarkPush(b, time.Minute) }

// BenchmarkPushDense: one reading a second, 3600 values in the window.
func BenchmarkPushDense(b *testing.B) { benchmarkPush(b, time.Second) }

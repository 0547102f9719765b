package reading

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var buf []byte
	for i := range 20000 {
		r, seq := randomReading(rng, true)
		want, err := json.Marshal(toJSONMessage(r, seq))
		if err != nil {
			t.Fatal(err)
		}
		buf = Encode(buf[:0], r, seq)
		if string(buf) != string(want) {
			t.Fatalf("case %d:\nEncode:        %s\nencoding/json: %s", i, buf, want)
		}
	}
}

func TestEncodeSpecialValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		r    Reading
		seq  int64
		want string
	}{
		{"valid", validReading, 12345, validMessage},
		{"null value", withReading(func(r *Reading) { r.ValueValid = false; r.Value = 99 }), 1,
			`{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":null,"battery":87.25,"rssi":-61,"seq":1}`},
		{"non-finite and negative seq", withReading(func(r *Reading) { r.Value = math.NaN(); r.Battery = math.Inf(-1) }), -1,
			`{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":"NaN","battery":"-Infinity","rssi":-61,"seq":-1}`},
		{"local time written in UTC", withReading(func(r *Reading) {
			r.Time = time.Date(2026, 11, 28, 15, 0, 0, 120_000_000, time.FixedZone("CET", 3600))
		}), 7, `{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.12Z","value":21.5,"battery":87.25,"rssi":-61,"seq":7}`},
		{"year beyond 9999", withReading(func(r *Reading) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), 7,
			`{"device_id":"TEMP-001","time":"10000-01-01T00:00:00Z","value":21.5,"battery":87.25,"rssi":-61,"seq":7}`},
		{"escapes and invalid UTF-8", withReading(func(r *Reading) { r.DeviceID = "a\"\\\x01\n\xff\u2029<" }), 7,
			`{"device_id":"a\"\\\u0001\n\ufffd\u2029<","time":"2026-11-28T14:00:00.123Z","value":21.5,"battery":87.25,"rssi":-61,"seq":7}`},
		{"exponent forms", withReading(func(r *Reading) { r.Value = 1e-7; r.Battery = 1e21 }), 7,
			`{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":1e-7,"battery":1e+21,"rssi":-61,"seq":7}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, string(Encode(nil, tc.r, tc.seq))); diff != "" {
				t.Errorf("Encode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCivilDays(t *testing.T) {
	t.Parallel()
	for days := int64(-800000); days <= 3000000; days += 7 {
		y, m, d := civilFromDays(days)
		want := time.Unix(days*86400, 0).UTC()
		if y != want.Year() || time.Month(m) != want.Month() || d != want.Day() {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %v", days, y, m, d, want)
		}
		if back := daysFromCivil(y, m, d); back != days {
			t.Fatalf("daysFromCivil(%d-%d-%d) = %d, want %d", y, m, d, back, days)
		}
	}
}

func ExampleEncode() {
	r := Reading{
		Time:     time.Date(2026, 11, 28, 14, 0, 0, 123_000_000, time.UTC),
		DeviceID: "TEMP-001", Value: 21.5, ValueValid: true, Battery: 87.25, RSSI: -61,
	}
	fmt.Println(string(Encode(nil, r, 12345)))
	// Output:
	// {"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":21.5,"battery":87.25,"rssi":-61,"seq":12345}
}

// The benchmarks compare the codec with encoding/json in the same run, so
// the ratio is meaningful on a noisy shared machine.

func BenchmarkEncode(b *testing.B) {
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 256)
		for b.Loop() {
			buf = Encode(buf[:0], validReading, 12345)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		m := toJSONMessage(validReading, 12345)
		var n int
		for b.Loop() {
			out, err := json.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			n = len(out)
		}
		b.SetBytes(int64(n))
	})
}

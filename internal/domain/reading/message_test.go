package reading

// Fixtures shared by the codec tests, and the tests of Encode and Decode together.

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recordTime is the Kafka record timestamp the tests decode against.
var recordTime = time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)

var testDevices = NewDeviceSet([]string{"TEMP-001", "HUM-002", "PWR-010"})

const validMessage = `{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":21.5,"battery":87.25,"rssi":-61,"seq":12345}`

var validReading = Reading{
	Time:       time.Date(2026, 11, 28, 14, 0, 0, 123_000_000, time.UTC),
	DeviceID:   "TEMP-001",
	Value:      21.5,
	ValueValid: true,
	Battery:    87.25,
	RSSI:       -61,
}

// msg builds a message from key/raw-JSON-value pairs, in order.
func msg(pairs ...string) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Quote(pairs[i]))
		sb.WriteByte(':')
		sb.WriteString(pairs[i+1])
	}
	sb.WriteByte('}')
	return sb.String()
}

// with returns the valid message's fields with some replaced ("" as the
// new value removes the field), plus extra pairs appended.
func with(changes ...string) string {
	base := []string{"device_id", `"TEMP-001"`, "time", `"2026-11-28T14:00:00.123Z"`, "value", "21.5", "battery", "87.25", "rssi", "-61", "seq", "12345"}
	var extra []string
	for i := 0; i < len(changes); i += 2 {
		found := false
		for j := 0; j < len(base); j += 2 {
			if base[j] == changes[i] {
				base[j+1] = changes[i+1]
				found = true
			}
		}
		if !found {
			extra = append(extra, changes[i], changes[i+1])
		}
	}
	var pairs []string
	for j := 0; j < len(base); j += 2 {
		if base[j+1] != "" {
			pairs = append(pairs, base[j], base[j+1])
		}
	}
	return msg(append(pairs, extra...)...)
}

func withReading(f func(r *Reading)) Reading {
	r := validReading
	f(&r)
	return r
}

func TestAllocations(t *testing.T) {
	raw := []byte(validMessage)
	cases := []struct {
		name string
		want float64
		run  func()
	}{
		{"Decode with DeviceSet", 0, func() { _, _, _ = Decode(raw, recordTime, Limits{Devices: testDevices}) }},
		{"Decode without registry", 1, func() { _, _, _ = Decode(raw, recordTime, Limits{}) }},
		{"Encode", 0, func() {
			var buf [256]byte
			_ = Encode(buf[:0], validReading, 12345)
		}},
	}
	for _, tc := range cases {
		if got := testing.AllocsPerRun(1000, tc.run); got != tc.want {
			t.Errorf("%s: %v allocations per run, want %v", tc.name, got, tc.want)
		}
	}
}

// jsonMessage is the message as encoding/json sees it: the reference the
// codec is compared against.
type jsonMessage struct {
	DeviceID string    `json:"device_id"`
	Time     time.Time `json:"time"`
	Value    *float64  `json:"value"`
	Battery  float64   `json:"battery"`
	RSSI     int32     `json:"rssi"`
	Seq      int64     `json:"seq"`
}

func (m jsonMessage) reading() Reading {
	r := Reading{DeviceID: m.DeviceID, Time: m.Time.UTC().Truncate(time.Microsecond), Battery: m.Battery, RSSI: m.RSSI}
	if m.Value != nil {
		r.Value, r.ValueValid = *m.Value, true
	}
	return r
}

func toJSONMessage(r Reading, seq int64) jsonMessage {
	m := jsonMessage{DeviceID: r.DeviceID, Time: r.Time, Battery: r.Battery, RSSI: r.RSSI, Seq: seq}
	if r.ValueValid {
		v := r.Value
		m.Value = &v
	}
	return m
}

// randomFloat draws finite floats across the whole float64 range, with the
// awkward ones (zeros, subnormals, integers, extremes) overrepresented.
func randomFloat(rng *rand.Rand) float64 {
	switch rng.IntN(8) {
	case 0:
		for {
			if f := math.Float64frombits(rng.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	case 1:
		return []float64{0, math.Copysign(0, -1), math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 5e-324 * 3, 1e21, 1e-7, 999999999999999999999}[rng.IntN(9)]
	case 2:
		return float64(rng.IntN(2001) - 1000)
	case 3:
		return math.Ldexp(rng.Float64(), rng.IntN(2100)-1075)
	default:
		return math.Round((rng.Float64()*2000-1000)*1e4) / 1e4
	}
}

// randomDeviceID draws ids with characters that need escaping.
func randomDeviceID(rng *rand.Rand, htmlSafe bool) string {
	alphabet := []string{"A", "Z", "0", "9", "-", "_", ".", "é", "温", "😀", `"`, `\`, "/", " ", "\u2028", "\u007f"}
	if !htmlSafe {
		alphabet = append(alphabet, "<", ">", "&")
	}
	var sb strings.Builder
	for n := 1 + rng.IntN(12); n > 0; n-- {
		sb.WriteString(alphabet[rng.IntN(len(alphabet))])
	}
	id := sb.String()
	if strings.ContainsRune(id, 0x7f) {
		return strings.ReplaceAll(id, "\u007f", "x") // control characters are rejected
	}
	return id
}

// randomReading draws a reading that Decode accepts against recordTime.
func randomReading(rng *rand.Rand, htmlSafe bool) (Reading, int64) {
	span := int64(DefaultMaxPast + DefaultMaxFuture)
	r := Reading{
		DeviceID:   randomDeviceID(rng, htmlSafe),
		Time:       recordTime.Add(-DefaultMaxPast + time.Duration(rng.Int64N(span+1))).Truncate(time.Microsecond),
		Value:      randomFloat(rng),
		ValueValid: rng.IntN(5) != 0,
		Battery:    randomFloat(rng),
		RSSI:       int32(rng.Uint32()),
	}
	if !r.ValueValid {
		r.Value = 0
	}
	if rng.IntN(4) == 0 {
		r.Time = r.Time.Truncate(time.Second) // no fraction
	}
	return r, rng.Int64N(math.MaxInt64)
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := range 20000 {
		want, wantSeq := randomReading(rng, false)
		buf = Encode(buf[:0], want, wantSeq)
		got, seq, err := Decode(buf, recordTime, Limits{})
		if err != nil {
			t.Fatalf("case %d: Decode(%s): %v", i, buf, err)
		}
		// cmp would call -0 and 0 equal; the bits must survive too.
		if diff := cmp.Diff(want, got); diff != "" || math.Float64bits(want.Value) != math.Float64bits(got.Value) || math.Float64bits(want.Battery) != math.Float64bits(got.Battery) {
			t.Fatalf("case %d: %s (-want +got):\n%s", i, buf, diff)
		}
		if seq != wantSeq {
			t.Fatalf("case %d: seq %d, want %d", i, seq, wantSeq)
		}
	}
}

// BenchmarkSpeedup alternates the codec and encoding/json in chunks of 256
// messages, so both see the same machine load, and reports each one's
// ns/message and the ratio. On a shared machine this ratio is steadier than
// the ratio of two separate benchmarks.
func BenchmarkSpeedup(b *testing.B) {
	const chunk = 256
	raw := []byte(validMessage)
	lim := Limits{Devices: testDevices}
	m := toJSONMessage(validReading, 12345)
	var decCodec, decStd, encCodec, encStd time.Duration
	buf := make([]byte, 0, 256)
	for b.Loop() {
		start := time.Now()
		for range chunk {
			_, _, _ = Decode(raw, recordTime, lim)
		}
		decCodec += time.Since(start)
		start = time.Now()
		for range chunk {
			var out jsonMessage
			_ = json.Unmarshal(raw, &out)
		}
		decStd += time.Since(start)
		start = time.Now()
		for range chunk {
			buf = Encode(buf[:0], validReading, 12345)
		}
		encCodec += time.Since(start)
		start = time.Now()
		for range chunk {
			_, _ = json.Marshal(m)
		}
		encStd += time.Since(start)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*chunk) }
	b.ReportMetric(per(decCodec), "decode-ns/msg")
	b.ReportMetric(per(decStd), "json-unmarshal-ns/msg")
	b.ReportMetric(float64(decStd)/float64(decCodec), "decode-speedup")
	b.ReportMetric(per(encCodec), "encode-ns/msg")
	b.ReportMetric(per(encStd), "json-marshal-ns/msg")
	b.ReportMetric(float64(encStd)/float64(encCodec), "encode-speedup")
	b.ReportMetric(0, "ns/op") // an op is 4×256 messages; the per-message figures above are the result
}

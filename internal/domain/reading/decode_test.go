package reading

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	registry := Limits{Devices: testDevices}
	small := Limits{MaxBytes: len(validMessage), Devices: testDevices}
	cases := []struct {
		name    string
		raw     string
		lim     Limits
		want    Reading // when wantErr is ""
		wantSeq int64
		wantErr Reason
	}{
		{name: "valid", raw: validMessage, lim: registry, want: validReading, wantSeq: 12345},
		{name: "valid without registry", raw: validMessage, want: validReading, wantSeq: 12345},
		{name: "value null is a reading without a value", raw: with("value", "null"), lim: registry,
			want: withReading(func(r *Reading) { r.Value, r.ValueValid = 0, false }), wantSeq: 12345},
		{name: "whitespace and reordered keys", raw: " \n{ \"seq\" : 12345 ,\t\"rssi\":-61,\"battery\":87.25,\"value\":21.5,\"time\":\"2026-11-28T14:00:00.123Z\",\"device_id\":\"TEMP-001\" }\r\n", lim: registry,
			want: validReading, wantSeq: 12345},
		{name: "unknown fields are ignored", raw: with("fw", `{"v":[1,2.5e3,"x",true,false,null,{}],"n":{}}`, "note", `"\u00e9\"\\"`), lim: registry,
			want: validReading, wantSeq: 12345},
		{name: "duplicate key: last wins over a bad earlier value", raw: `{"value":"abc",` + validMessage[1:], lim: registry,
			want: validReading, wantSeq: 12345},
		{name: "duplicate key: last wins", raw: with("value", "1", "value", "2"), lim: registry,
			want: withReading(func(r *Reading) { r.Value = 2 }), wantSeq: 12345},
		{name: "escaped device id and key", raw: strings.TrimSuffix(with("device_id", `"TEMP\u002d001"`), "}") + `,"d\u0065vice_id":"HUM\u002d002"}`, lim: registry,
			want: withReading(func(r *Reading) { r.DeviceID = "HUM-002" }), wantSeq: 12345},
		{name: "keys are case-sensitive", raw: with("Value", `"abc"`), lim: registry, want: validReading, wantSeq: 12345},
		{name: "offset converted to UTC", raw: with("time", `"2026-11-28T15:30:00.123+01:30"`), lim: registry, want: validReading, wantSeq: 12345},
		{name: "negative offset", raw: with("time", `"2026-11-28T08:00:00.123-06:00"`), lim: registry, want: validReading, wantSeq: 12345},
		{name: "escaped time", raw: with("time", `"2026-11-28\u005414:00:00.123Z"`), lim: registry, want: validReading, wantSeq: 12345},
		{name: "lower-case t and z", raw: with("time", `"2026-11-28t14:00:00.123z"`), lim: registry, want: validReading, wantSeq: 12345},
		{name: "no fraction", raw: with("time", `"2026-11-28T14:00:00Z"`), lim: registry,
			want: withReading(func(r *Reading) { r.Time = recordTime }), wantSeq: 12345},
		{name: "fraction truncated to microseconds", raw: with("time", `"2026-11-28T14:00:00.1234567899999Z"`), lim: registry,
			want: withReading(func(r *Reading) { r.Time = recordTime.Add(123456 * time.Microsecond) }), wantSeq: 12345},
		{name: "out of the device range is still a reading", raw: with("value", "-1e6"), lim: registry,
			want: withReading(func(r *Reading) { r.Value = -1e6 }), wantSeq: 12345},
		{name: "underflow rounds to zero", raw: with("value", "1e-400"), lim: registry,
			want: withReading(func(r *Reading) { r.Value = 0 }), wantSeq: 12345},
		{name: "exponent number", raw: with("value", "2.15E+1", "battery", "8725e-2"), lim: registry, want: validReading, wantSeq: 12345},
		{name: "seq zero, negative zero and max", raw: with("seq", "9223372036854775807"), lim: registry, want: validReading, wantSeq: math.MaxInt64},
		{name: "seq -0 is zero", raw: with("seq", "-0"), lim: registry, want: validReading, wantSeq: 0},
		{name: "rssi int32 bounds", raw: with("rssi", "-2147483648"), lim: registry,
			want: withReading(func(r *Reading) { r.RSSI = math.MinInt32 }), wantSeq: 12345},

		{name: "exactly MaxBytes", raw: validMessage, lim: small, want: validReading, wantSeq: 12345},
		{name: "MaxBytes+1", raw: validMessage + " ", lim: small, wantErr: ReasonOversized},
		{name: "exactly the default MaxBytes", raw: validMessage + strings.Repeat(" ", DefaultMaxBytes-len(validMessage)), lim: registry, want: validReading, wantSeq: 12345},
		{name: "default MaxBytes+1", raw: validMessage + strings.Repeat(" ", DefaultMaxBytes-len(validMessage)+1), lim: registry, wantErr: ReasonOversized},
		{name: "oversized is checked before UTF-8", raw: "\xff" + validMessage, lim: small, wantErr: ReasonOversized},

		{name: "invalid UTF-8 in a string", raw: with("device_id", "\"TEMP-\xff01\""), lim: registry, wantErr: ReasonInvalidUTF8},
		{name: "invalid UTF-8 outside strings", raw: validMessage + "\xc3", lim: registry, wantErr: ReasonInvalidUTF8},
		{name: "UTF-8 surrogate encoding", raw: with("note", "\"\xed\xa0\x80\""), lim: registry, wantErr: ReasonInvalidUTF8},

		{name: "empty", raw: "", lim: registry, wantErr: ReasonNotJSON},
		{name: "only spaces", raw: "  ", lim: registry, wantErr: ReasonNotJSON},
		{name: "array", raw: "[" + validMessage + "]", lim: registry, wantErr: ReasonNotJSON},
		{name: "number", raw: "42", lim: registry, wantErr: ReasonNotJSON},
		{name: "string", raw: `"TEMP-001"`, lim: registry, wantErr: ReasonNotJSON},
		{name: "truncated", raw: validMessage[:len(validMessage)-1], lim: registry, wantErr: ReasonNotJSON},
		{name: "trailing garbage", raw: validMessage + "x", lim: registry, wantErr: ReasonNotJSON},
		{name: "two objects", raw: validMessage + validMessage, lim: registry, wantErr: ReasonNotJSON},
		{name: "trailing comma", raw: validMessage[:len(validMessage)-1] + ",}", lim: registry, wantErr: ReasonNotJSON},
		{name: "single quotes", raw: strings.ReplaceAll(validMessage, `"`, `'`), lim: registry, wantErr: ReasonNotJSON},
		{name: "leading zero", raw: with("seq", "012345"), lim: registry, wantErr: ReasonNotJSON},
		{name: "plus sign", raw: with("value", "+21.5"), lim: registry, wantErr: ReasonNotJSON},
		{name: "dot without digits", raw: with("value", "21."), lim: registry, wantErr: ReasonNotJSON},
		{name: "raw control character in a string", raw: with("device_id", "\"TEMP\t001\""), lim: registry, wantErr: ReasonNotJSON},
		{name: "bad escape", raw: with("device_id", `"TEMP\x01"`), lim: registry, wantErr: ReasonNotJSON},
		{name: "short unicode escape", raw: with("device_id", `"TEMP\u00"`), lim: registry, wantErr: ReasonNotJSON},
		{name: "bare NaN in an unknown field", raw: with("extra", "NaN"), lim: registry, wantErr: ReasonNotJSON},
		{name: "bad literal", raw: with("value", "nul"), lim: registry, wantErr: ReasonNotJSON},
		{name: "unbalanced nesting", raw: with("extra", "[{]}"), lim: registry, wantErr: ReasonNotJSON},
		{name: "missing colon", raw: `{"device_id" "TEMP-001"}`, lim: registry, wantErr: ReasonNotJSON},
		{name: "syntax error wins over field errors", raw: `{"value":"abc",`, lim: registry, wantErr: ReasonNotJSON},

		{name: "empty object", raw: "{}", lim: registry, wantErr: ReasonMissingField},
		{name: "no device_id", raw: with("device_id", ""), lim: registry, wantErr: ReasonMissingField},
		{name: "device_id null", raw: with("device_id", "null"), lim: registry, wantErr: ReasonMissingField},
		{name: "device_id empty", raw: with("device_id", `""`), lim: registry, wantErr: ReasonMissingField},
		{name: "no time", raw: with("time", ""), lim: registry, wantErr: ReasonMissingField},
		{name: "time empty", raw: with("time", `""`), lim: registry, wantErr: ReasonMissingField},
		{name: "no value", raw: with("value", ""), lim: registry, wantErr: ReasonMissingField},
		{name: "no battery", raw: with("battery", ""), lim: registry, wantErr: ReasonMissingField},
		{name: "battery null", raw: with("battery", "null"), lim: registry, wantErr: ReasonMissingField},
		{name: "no rssi", raw: with("rssi", ""), lim: registry, wantErr: ReasonMissingField},
		{name: "no seq", raw: with("seq", ""), lim: registry, wantErr: ReasonMissingField},
		{name: "seq null", raw: with("seq", "null"), lim: registry, wantErr: ReasonMissingField},

		{name: "value string", raw: with("value", `"abc"`), lim: registry, wantErr: ReasonWrongType},
		{name: "value numeric string", raw: with("value", `"21.5"`), lim: registry, wantErr: ReasonWrongType},
		{name: "value bool", raw: with("value", "true"), lim: registry, wantErr: ReasonWrongType},
		{name: "value object", raw: with("value", `{"v":1}`), lim: registry, wantErr: ReasonWrongType},
		{name: "battery array", raw: with("battery", "[87]"), lim: registry, wantErr: ReasonWrongType},
		{name: "rssi fraction", raw: with("rssi", "1.5"), lim: registry, wantErr: ReasonWrongType},
		{name: "rssi integral float", raw: with("rssi", "-61.0"), lim: registry, wantErr: ReasonWrongType},
		{name: "rssi exponent", raw: with("rssi", "1e2"), lim: registry, wantErr: ReasonWrongType},
		{name: "rssi beyond int32", raw: with("rssi", "2147483648"), lim: registry, wantErr: ReasonWrongType},
		{name: "rssi string", raw: with("rssi", `"-61"`), lim: registry, wantErr: ReasonWrongType},
		{name: "rssi NaN", raw: with("rssi", "NaN"), lim: registry, wantErr: ReasonWrongType},
		{name: "seq negative", raw: with("seq", "-1"), lim: registry, wantErr: ReasonWrongType},
		{name: "seq beyond int64", raw: with("seq", "9223372036854775808"), lim: registry, wantErr: ReasonWrongType},
		{name: "seq huge", raw: with("seq", "123456789012345678901234567890"), lim: registry, wantErr: ReasonWrongType},
		{name: "seq fraction", raw: with("seq", "1.0"), lim: registry, wantErr: ReasonWrongType},
		{name: "device_id number", raw: with("device_id", "1"), lim: registry, wantErr: ReasonWrongType},
		{name: "device_id control character", raw: with("device_id", `"TEMP\u0000001"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time not RFC 3339", raw: with("time", `"yesterday"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time without offset", raw: with("time", `"2026-11-28T14:00:00"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time space separator", raw: with("time", `"2026-11-28 14:00:00Z"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time February 30", raw: with("time", `"2026-02-30T14:00:00Z"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time leap second", raw: with("time", `"2026-11-28T13:59:60Z"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time offset hour 24", raw: with("time", `"2026-11-28T14:00:00+24:00"`), lim: registry, wantErr: ReasonWrongType},
		{name: "time number", raw: with("time", "1764338400"), lim: registry, wantErr: ReasonWrongType},
		{name: "fields checked in order", raw: with("device_id", "1", "time", ""), lim: registry, wantErr: ReasonWrongType},

		{name: "value NaN string", raw: with("value", `"NaN"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "value Infinity string", raw: with("value", `"Infinity"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "value -Infinity string", raw: with("value", `"-Infinity"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "value +Inf string", raw: with("value", `"+Inf"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "value inf string", raw: with("value", `"inf"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "value escaped nan", raw: with("value", `"n\u0061n"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "value bare NaN", raw: with("value", "NaN"), lim: registry, wantErr: ReasonNonFinite},
		{name: "value bare Infinity", raw: with("value", "Infinity"), lim: registry, wantErr: ReasonNonFinite},
		{name: "value bare -Infinity", raw: with("value", "-Infinity"), lim: registry, wantErr: ReasonNonFinite},
		{name: "value overflow", raw: with("value", "1e400"), lim: registry, wantErr: ReasonNonFinite},
		{name: "value negative overflow", raw: with("value", "-1.8e308"), lim: registry, wantErr: ReasonNonFinite},
		{name: "battery NaN", raw: with("battery", `"nan"`), lim: registry, wantErr: ReasonNonFinite},
		{name: "battery overflow", raw: with("battery", "1e309"), lim: registry, wantErr: ReasonNonFinite},

		{name: "unknown device", raw: with("device_id", `"TEMP-999"`), lim: registry, wantErr: ReasonUnknownDevice},
		{name: "device ids are case-sensitive", raw: with("device_id", `"temp-001"`), lim: registry, wantErr: ReasonUnknownDevice},
		{name: "empty registry knows nothing", raw: validMessage, lim: Limits{Devices: NewDeviceSet(nil)}, wantErr: ReasonUnknownDevice},
		{name: "nil DeviceSet knows nothing", raw: validMessage, lim: Limits{Devices: (*DeviceSet)(nil)}, wantErr: ReasonUnknownDevice},
		{name: "KnownFunc", raw: validMessage, lim: Limits{Devices: KnownFunc(func(id string) bool { return id == "TEMP-001" })},
			want: validReading, wantSeq: 12345},
		{name: "KnownFunc rejects", raw: validMessage, lim: Limits{Devices: KnownFunc(func(string) bool { return false })}, wantErr: ReasonUnknownDevice},
		{name: "unknown device is checked before time", raw: with("device_id", `"X"`, "time", `"2030-01-01T00:00:00Z"`), lim: registry, wantErr: ReasonUnknownDevice},

		{name: "exactly MaxFuture ahead", raw: with("time", `"2026-11-28T14:05:00Z"`), lim: registry,
			want: withReading(func(r *Reading) { r.Time = recordTime.Add(5 * time.Minute) }), wantSeq: 12345},
		{name: "MaxFuture plus a nanosecond truncates to the bound", raw: with("time", `"2026-11-28T14:05:00.000000999Z"`), lim: registry,
			want: withReading(func(r *Reading) { r.Time = recordTime.Add(5 * time.Minute) }), wantSeq: 12345},
		{name: "MaxFuture plus a microsecond", raw: with("time", `"2026-11-28T14:05:00.000001Z"`), lim: registry, wantErr: ReasonTimeInFuture},
		{name: "custom MaxFuture", raw: with("time", `"2026-11-28T14:00:01Z"`), lim: Limits{MaxFuture: time.Second}, want: withReading(func(r *Reading) { r.Time = recordTime.Add(time.Second) }), wantSeq: 12345},
		{name: "custom MaxFuture exceeded", raw: with("time", `"2026-11-28T14:00:01.5Z"`), lim: Limits{MaxFuture: time.Second}, wantErr: ReasonTimeInFuture},
		{name: "far future", raw: with("time", `"9999-12-31T23:59:59Z"`), lim: registry, wantErr: ReasonTimeInFuture},

		{name: "exactly MaxPast behind", raw: with("time", `"2026-11-21T14:00:00Z"`), lim: registry,
			want: withReading(func(r *Reading) { r.Time = recordTime.Add(-DefaultMaxPast) }), wantSeq: 12345},
		{name: "MaxPast plus a microsecond", raw: with("time", `"2026-11-21T13:59:59.999999Z"`), lim: registry, wantErr: ReasonTimeTooOld},
		{name: "epoch", raw: with("time", `"1970-01-01T00:00:00Z"`), lim: registry, wantErr: ReasonTimeTooOld},
		{name: "year zero", raw: with("time", `"0000-01-01T00:00:00Z"`), lim: registry, wantErr: ReasonTimeTooOld},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, seq, err := Decode([]byte(tc.raw), recordTime, tc.lim)
			if tc.wantErr != "" {
				reason, ok := RejectionReason(err)
				if !ok || reason != tc.wantErr {
					t.Fatalf("Decode(%q) = %+v, %v; want reason %s", tc.raw, got, err, tc.wantErr)
				}
				if !utf8.ValidString(err.Error()) || len(err.Error()) > 400 {
					t.Errorf("Detail must be short valid UTF-8, got %q", err.Error())
				}
				if got != (Reading{}) || seq != 0 {
					t.Errorf("a rejection returns zero values, got %+v, %d", got, seq)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tc.raw, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("reading (-want +got):\n%s", diff)
			}
			if seq != tc.wantSeq {
				t.Errorf("seq = %d, want %d", seq, tc.wantSeq)
			}
		})
	}
}

func TestRejectionDetail(t *testing.T) {
	t.Parallel()
	registry := Limits{Devices: testDevices}
	cases := []struct {
		raw  string
		lim  Limits
		want string
	}{
		{validMessage + " ", Limits{MaxBytes: 100}, "oversized: message is 111 bytes, limit 100"},
		{"{\"a\":\"\xff\"}", registry, "invalid_utf8: invalid UTF-8 at byte 6"},
		{`{"a":1,}`, registry, "not_json: expected an object key at byte 7"},
		{with("rssi", "1.5"), registry, `wrong_type: field rssi must be an integer within int32, got "1.5"`},
		{with("seq", ""), registry, "missing_field: field seq is required"},
		{with("value", "1e400"), registry, `non_finite: field value overflows float64, got "1e400"`},
		{with("device_id", `"TEMP-999"`), registry, `unknown_device: device_id "TEMP-999" is not registered`},
		{with("time", `"2026-11-28T14:10:00Z"`), registry, "time_in_future: time 2026-11-28T14:10:00Z is 10m0s after the record timestamp 2026-11-28T14:00:00Z (limit 5m0s)"},
		{with("device_id", `"`+strings.Repeat("é", 40)+`"`), registry, `unknown_device: device_id "` + strings.Repeat("é", 32) + `"… is not registered`},
	}
	for _, tc := range cases {
		_, _, err := Decode([]byte(tc.raw), recordTime, tc.lim)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Decode(%q) error = %v, want %s", tc.raw, err, tc.want)
		}
	}
}

func TestDecodeInternsDeviceIDs(t *testing.T) {
	t.Parallel()
	a, _, err := Decode([]byte(validMessage), recordTime, Limits{Devices: testDevices})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Decode([]byte(with("value", "1")), recordTime, Limits{Devices: testDevices})
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(a.DeviceID) != unsafe.StringData(b.DeviceID) {
		t.Error("readings of one device do not share the interned id string")
	}
}

// TestDecodeAgreesWithEncodingJSON writes random readings in many valid
// JSON spellings and checks both decoders read the same reading.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -(9*3600 + 30*60)), time.FixedZone("", 14*3600)}
	for i := range 20000 {
		r, seq := randomReading(rng, false)
		raw := randomSpelling(rng, r, seq, zones[rng.IntN(len(zones))])
		want := r
		var ref jsonMessage
		if err := json.Unmarshal(raw, &ref); err != nil {
			t.Fatalf("case %d: encoding/json rejects %s: %v", i, raw, err)
		}
		if diff := cmp.Diff(want, ref.reading()); diff != "" {
			t.Fatalf("case %d: the test spelled %s wrongly (-want +encoding/json):\n%s", i, raw, diff)
		}
		got, gotSeq, err := Decode(raw, recordTime, Limits{})
		if err != nil {
			t.Fatalf("case %d: Decode(%s): %v", i, raw, err)
		}
		if diff := cmp.Diff(ref.reading(), got); diff != "" || gotSeq != ref.Seq {
			t.Fatalf("case %d: %s: seq %d, want %d (-encoding/json +Decode):\n%s", i, raw, gotSeq, ref.Seq, diff)
		}
	}
}

// randomSpelling writes a valid JSON message for r in a random key order,
// with random whitespace, string escapes, number forms, time offsets and
// unknown fields.
func randomSpelling(rng *rand.Rand, r Reading, seq int64, zone *time.Location) []byte {
	space := func() string { return []string{"", "", " ", "\n\t", "\r\n  "}[rng.IntN(5)] }
	str := func(s string) string {
		if rng.IntN(2) == 0 {
			b, _ := json.Marshal(s) // escapes <, >, &
			return string(b)
		}
		return escapeEverything(s)
	}
	num := func(f float64) string {
		formats := []byte{'e', 'E', 'f', 'g', 'G'}
		s := strconv.FormatFloat(f, formats[rng.IntN(len(formats))], -1, 64)
		return strings.Replace(s, "e+", []string{"e+", "e"}[rng.IntN(2)], 1)
	}
	value := "null"
	if r.ValueValid {
		value = num(r.Value)
	}
	fields := [][2]string{
		{"device_id", str(r.DeviceID)},
		// time.Time.UnmarshalJSON does not unescape, so the time is
		// spelled plainly here; TestDecode covers an escaped one.
		{"time", `"` + r.Time.In(zone).Format(time.RFC3339Nano) + `"`},
		{"value", value},
		{"battery", num(r.Battery)},
		{"rssi", strconv.Itoa(int(r.RSSI))},
		{"seq", strconv.FormatInt(seq, 10)},
	}
	for range rng.IntN(3) {
		extras := []string{`{"a":[1,{"b":null}],"c":"\ud83d\ude00"}`, `[]`, `"x"`, `-0.5e-3`, `true`, `{}`}
		fields = append(fields, [2]string{fmt.Sprintf("extra%d", rng.IntN(100)), extras[rng.IntN(len(extras))]})
	}
	if rng.IntN(4) == 0 {
		// An earlier occurrence that the real field overrides. (encoding/json
		// reports a type error even for an overridden value, so the decoy is
		// a number here; TestDecode covers a bad one.)
		fields = append([][2]string{{"value", "-12345.5"}}, fields...)
	}
	rng.Shuffle(len(fields), func(i, j int) {
		if fields[i][0] != "value" && fields[j][0] != "value" { // keep the decoy first
			fields[i], fields[j] = fields[j], fields[i]
		}
	})
	var sb strings.Builder
	sb.WriteString(space() + "{")
	for i, f := range fields {
		if i > 0 {
			sb.WriteString(",")
		}
		key := str(f[0])
		sb.WriteString(space() + key + space() + ":" + space() + f[1] + space())
	}
	sb.WriteString("}" + space())
	return []byte(sb.String())
}

// escapeEverything spells every character of s as a \u escape, using
// surrogate pairs beyond the BMP.
func escapeEverything(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		if r > 0xFFFF {
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&sb, `\u%04X\u%04x`, r1, r2)
			continue
		}
		fmt.Fprintf(&sb, `\u%04x`, r)
	}
	sb.WriteByte('"')
	return sb.String()
}

func TestParseRFC3339AgreesWithTimePackage(t *testing.T) {
	t.Parallel()
	cases := []string{
		"2026-11-28T14:00:00Z", "2026-11-28T14:00:00.5Z", "2026-11-28T14:00:00.123456789Z",
		"2026-11-28T14:00:00.1234567891234Z", "2026-11-28T23:59:59.999999999-23:59", "2026-11-28T00:00:00+23:59",
		"2024-02-29T12:00:00Z", "2000-02-29T12:00:00Z", "0000-01-01T00:00:00Z", "0000-03-01T00:00:00+01:00",
		"9999-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999Z", "1900-03-01T00:00:00-00:00",
		// Invalid for both.
		"2023-02-29T12:00:00Z", "1900-02-29T12:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2026-11-31T00:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28T14:60:00Z", "2026-11-28T14:00:60Z",
		"2026-11-28T14:00:00.Z", "2026-11-28T14:00:00+0100", "2026-11-28T14:00:00 Z",
		"2026-11-28T14:00:00ZZ", "2026-11-28T14:00Z", "2026-1-28T14:00:00Z", "+2026-11-28T14:00:00Z", "2026-11-28T14:00:00",
		"20261128T140000Z", "2026-11-28T14:00:00.5+01:00:00",
	}
	// time.Parse is lenient here (go.dev/issue/54580); RFC 3339 is not.
	goAcceptsRFCRejects := map[string]bool{"2026-11-28T14:00:00+01:60": true, "2026-11-28T14:00:00,5Z": true}
	for s := range goAcceptsRFCRejects {
		if _, ok := parseRFC3339([]byte(s)); ok {
			t.Errorf("parseRFC3339(%q) accepted", s)
		}
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5000 {
		t := time.Unix(rng.Int64N(253402300800)-62167219200, rng.Int64N(1e9)).In(time.FixedZone("", (rng.IntN(48*60)-24*60+1)*60))
		cases = append(cases, t.Format(time.RFC3339Nano))
	}
	for _, s := range cases {
		want, wantErr := time.Parse(time.RFC3339Nano, s)
		got, ok := parseRFC3339([]byte(s))
		if ok != (wantErr == nil) {
			t.Errorf("parseRFC3339(%q) ok = %v, time.Parse error = %v", s, ok, wantErr)
			continue
		}
		if ok && !got.Equal(want) {
			t.Errorf("parseRFC3339(%q) = %v, want %v", s, got, want)
		}
		if ok && got.Location() != time.UTC {
			t.Errorf("parseRFC3339(%q) is in %v, want UTC", s, got.Location())
		}
	}
}

func ExampleDecode() {
	devices := NewDeviceSet([]string{"TEMP-001"})
	record := time.Date(2026, 11, 28, 14, 0, 1, 0, time.UTC) // the Kafka record timestamp
	for _, raw := range []string{
		`{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":21.5,"battery":87.25,"rssi":-61,"seq":12345}`,
		`{"device_id":"TEMP-001","time":"2026-11-28T14:00:00Z","value":null,"battery":87.25,"rssi":-61,"seq":12346}`,
		`{"device_id":"TEMP-001","time":"2026-11-28T14:00:00Z","value":"NaN","battery":87.25,"rssi":-61,"seq":12347}`,
		`{"device_id":"TEMP-002","time":"2026-11-28T14:00:00Z","value":1,"battery":87.25,"rssi":-61,"seq":1}`,
	} {
		r, seq, err := Decode([]byte(raw), record, Limits{Devices: devices})
		if reason, ok := RejectionReason(err); ok {
			fmt.Println("quarantine:", reason)
			continue
		}
		fmt.Println(r.DeviceID, r.Time.Format(time.RFC3339Nano), r.Value, r.ValueValid, seq)
	}
	// Output:
	// TEMP-001 2026-11-28T14:00:00.123Z 21.5 true 12345
	// TEMP-001 2026-11-28T14:00:00Z 0 false 12346
	// quarantine: non_finite
	// quarantine: unknown_device
}

// The benchmarks compare the codec with encoding/json in the same run, so
// the ratio is meaningful on a noisy shared machine.

func BenchmarkDecode(b *testing.B) {
	raw := []byte(validMessage)
	b.Run("codec/interned", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		lim := Limits{Devices: testDevices}
		for b.Loop() {
			if _, _, err := Decode(raw, recordTime, lim); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec/no_registry", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, _, err := Decode(raw, recordTime, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			var m jsonMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	rejected := []byte(with("value", `"abc"`))
	b.Run("codec/rejected", func(b *testing.B) {
		b.ReportAllocs()
		lim := Limits{Devices: testDevices}
		for b.Loop() {
			if _, _, err := Decode(rejected, recordTime, lim); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}

func TestParseFloatFastAgreesWithStrconv(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	cases := []string{"0", "-0", "0.0", "-0.0e5", "1", "-1", "21.5", "0.1", "0.3", "1e22", "1e23", "1e-22", "1e-23",
		"123456789012345", "1234567890123456", "9007199254740993", "0.000000000000000000000000001", "100e-2",
		"999999999999999e22", "999999999999999e-22", "1E+3", "1e-0", "4.35", "87.25", "-61.125"}
	for range 100000 {
		var sb strings.Builder
		if rng.IntN(2) == 0 {
			sb.WriteByte('-')
		}
		intDigits := 1 + rng.IntN(10)
		sb.WriteByte(byte('1' + rng.IntN(9)))
		for range intDigits - 1 {
			sb.WriteByte(byte('0' + rng.IntN(10)))
		}
		if fracDigits := rng.IntN(10); fracDigits > 0 {
			sb.WriteByte('.')
			for range fracDigits {
				sb.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		if rng.IntN(3) == 0 {
			fmt.Fprintf(&sb, "e%d", rng.IntN(61)-30)
		}
		cases = append(cases, sb.String())
	}
	fast := 0
	for _, s := range cases {
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("bad test number %q: %v", s, err)
		}
		got, ok := parseFloatFast([]byte(s))
		if !ok {
			continue
		}
		fast++
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("parseFloatFast(%q) = %v, strconv says %v", s, got, want)
		}
	}
	// The seed is fixed, so the count is too: it proves the fast path runs.
	if want := 82237; fast != want {
		t.Errorf("the fast path took %d of %d numbers, want %d", fast, len(cases), want)
	}
}

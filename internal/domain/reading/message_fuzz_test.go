package reading

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecode throws arbitrary bytes at Decode. The seed corpus in
// testdata/fuzz/FuzzDecode has an accepted message and an example of every
// reason.
//
// The properties, for any input: Decode never panics; it gives exactly one
// known reason; not_json is given exactly when encoding/json finds no JSON
// object; an accepted message reads as encoding/json reads it and re-encodes
// to a message that decodes to the identical reading; the device registry
// changes nothing but unknown_device.
//
//	go test -fuzz=FuzzDecode ./internal/domain/reading
func FuzzDecode(f *testing.F) {
	f.Add([]byte(validMessage))
	registry := Limits{Devices: testDevices}
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, seq, err := Decode(raw, recordTime, Limits{})
		if err != nil {
			reason := checkRejection(t, raw, err)
			if (reason == ReasonOversized) != (len(raw) > DefaultMaxBytes) {
				t.Fatalf("reason %s for %d bytes", reason, len(raw))
			}
			// not_json is exactly: not JSON, or JSON but not an object. The
			// bare tokens NaN and Infinity are allowed as values of known
			// fields (for non_finite), so inputs holding them are skipped.
			bareNonFinite := bytes.Contains(raw, []byte("NaN")) || bytes.Contains(raw, []byte("Infinity"))
			if len(raw) <= DefaultMaxBytes && utf8.Valid(raw) && !bareNonFinite {
				isObject := json.Valid(raw) && bytes.TrimLeft(raw, " \t\r\n")[0] == '{'
				if (reason == ReasonNotJSON) == isObject {
					t.Fatalf("reason %s, but json.Valid = %v for %q", reason, json.Valid(raw), raw)
				}
			}
			// The registry is consulted after the field checks and before
			// the time bounds.
			_, _, regErr := Decode(raw, recordTime, registry)
			regReason := checkRejection(t, raw, regErr)
			timeReason := reason == ReasonTimeInFuture || reason == ReasonTimeTooOld
			if regReason != reason && (!timeReason || regReason != ReasonUnknownDevice) {
				t.Fatalf("reason %s without registry, %s with it", reason, regReason)
			}
			return
		}

		if !json.Valid(raw) {
			t.Fatalf("accepted a message that is not JSON: %q", raw)
		}
		checkAgainstEncodingJSON(t, raw, r, seq)

		encoded := Encode(nil, r, seq)
		again, againSeq, err := Decode(encoded, recordTime, Limits{})
		if err != nil {
			t.Fatalf("re-encoded %q as %q, which is rejected: %v", raw, encoded, err)
		}
		if !sameReading(r, again) || seq != againSeq {
			t.Fatalf("%q re-encoded as %q decodes to %+v seq %d, want %+v seq %d", raw, encoded, again, againSeq, r, seq)
		}

		regReading, regSeq, regErr := Decode(raw, recordTime, registry)
		_, known := testDevices.Lookup([]byte(r.DeviceID))
		switch {
		case known && (regErr != nil || !sameReading(r, regReading) || regSeq != seq):
			t.Fatalf("with the registry: %+v, %d, %v; want %+v, %d", regReading, regSeq, regErr, r, seq)
		case !known:
			if reason, _ := RejectionReason(regErr); reason != ReasonUnknownDevice {
				t.Fatalf("device %q is not registered, but the error is %v", r.DeviceID, regErr)
			}
		}
	})
}

func checkRejection(t *testing.T, raw []byte, err error) Reason {
	t.Helper()
	reason, ok := RejectionReason(err)
	if !ok {
		t.Fatalf("Decode(%q) error %v is not a *Rejection", raw, err)
	}
	if !slices.Contains(Reasons(), reason) || reason == ReasonLate {
		t.Fatalf("Decode(%q) gave unknown reason %q", raw, reason)
	}
	if msg := err.Error(); !utf8.ValidString(msg) || len(msg) > 400 {
		t.Fatalf("Decode(%q) detail is not short valid UTF-8: %q", raw, msg)
	}
	return reason
}

func sameReading(a, b Reading) bool {
	return a.DeviceID == b.DeviceID && a.Time.Equal(b.Time) && a.Time.Location() == b.Time.Location() && a.ValueValid == b.ValueValid && a.RSSI == b.RSSI &&
		math.Float64bits(a.Value) == math.Float64bits(b.Value) && math.Float64bits(a.Battery) == math.Float64bits(b.Battery)
}

// checkAgainstEncodingJSON reads the accepted message with encoding/json
// (into a map, so a duplicate key is last-wins and keys match exactly) and
// checks every field agrees.
func checkAgainstEncodingJSON(t *testing.T, raw []byte, r Reading, seq int64) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("encoding/json rejects accepted %q: %v", raw, err)
	}
	var id, ts string
	var battery float64
	var rssi int32
	var refSeq int64
	for _, field := range []struct {
		key string
		dst any
	}{{"device_id", &id}, {"time", &ts}, {"battery", &battery}, {"rssi", &rssi}, {"seq", &refSeq}} {
		if err := json.Unmarshal(m[field.key], field.dst); err != nil {
			t.Fatalf("encoding/json cannot read %s of accepted %q: %v", field.key, raw, err)
		}
	}
	refTime, err := time.Parse(time.RFC3339Nano, strings.ToUpper(ts))
	if err != nil {
		t.Fatalf("time.Parse rejects the accepted time %q: %v", ts, err)
	}
	ref := Reading{DeviceID: id, Time: refTime.UTC().Truncate(time.Microsecond), Battery: battery, RSSI: rssi}
	if v := m["value"]; string(v) != "null" {
		if err := json.Unmarshal(v, &ref.Value); err != nil {
			t.Fatalf("encoding/json cannot read the value of accepted %q: %v", raw, err)
		}
		ref.ValueValid = true
	}
	if !sameReading(ref, r) || refSeq != seq {
		t.Fatalf("%q: Decode gives %+v seq %d, encoding/json %+v seq %d", raw, r, seq, ref, refSeq)
	}
}

// TestFuzzCorpusCoversEveryReason keeps the seed corpus honest: it must hold
// an accepted message and an example of every reason Decode gives.
func TestFuzzCorpusCoversEveryReason(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzDecode", "*"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		header, body, _ := bytes.Cut(b, []byte("\n"))
		body = bytes.TrimSpace(body)
		if string(header) != "go test fuzz v1" || !bytes.HasPrefix(body, []byte("[]byte(")) || !bytes.HasSuffix(body, []byte(")")) {
			t.Fatalf("%s is not a one-argument fuzz corpus file", path)
		}
		raw, err := strconv.Unquote(string(body[len("[]byte(") : len(body)-1]))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		_, _, err = Decode([]byte(raw), recordTime, Limits{Devices: testDevices})
		reason, _ := RejectionReason(err)
		if err == nil {
			reason = "accepted"
		}
		seen[string(reason)]++
	}
	for _, want := range append(Reasons(), "accepted") {
		if want != ReasonLate && seen[string(want)] == 0 {
			t.Errorf("the seed corpus has no example of %s (has %v)", want, seen)
		}
	}
}

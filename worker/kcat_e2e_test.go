package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// kcatVia is the kcat invocation that produces a message: each has its
// partition, input mode, compression and headers (see kcatRuns).
type kcatVia int

const (
	viaStdin  kcatVia = iota // stdin split by -D and -K, uncompressed, partition 0
	viaFiles                 // one file per message, no key, uncompressed, partition 1
	viaGzip                  // -l file, gzip, garbage headers, partition 1
	viaSnappy                // -l file, snappy, -Z (an empty value is NULL), partition 2
	viaLZ4                   // -l file, lz4, partition 3
	viaZstd                  // -l file, zstd, partition 0
)

// kcatInput is how kcat reads the messages of an invocation.
type kcatInput int

const (
	inputStdin kcatInput = iota // standard input, split by -D, keys by -K
	inputList                   // one file read with -l, split by -D, keys by -K
	inputFiles                  // one file per message, no key
)

// kcatRun is one kcat invocation.
type kcatRun struct {
	via       kcatVia
	name      string
	partition int32
	input     kcatInput
	args      []string
}

// kcatRuns are the invocations in the order they run; the partitions of
// viaStdin and viaZstd (0) and of viaFiles and viaGzip (1) are shared, so
// their offsets follow on.
var kcatRuns = []kcatRun{
	{viaStdin, "stdin", 0, inputStdin, nil},
	{viaFiles, "files", 1, inputFiles, nil},
	{viaGzip, "gzip+headers", 1, inputList, []string{"-z", "gzip",
		"-H", "content-type=application/json",
		"-H", "garbage\xff\xfe=\x01\x02\xff\xc0\xaf\x7f",
		"-H", "no-equals-sign",
		"-H", "dup=1", "-H", "dup=2",
		"-H", "device_id=NOT-A-DEVICE",
		"-H", "big=" + strings.Repeat("h", 8<<10)}},
	{viaSnappy, "snappy+null", 2, inputList, []string{"-z", "snappy", "-Z"}},
	{viaLZ4, "lz4", 3, inputList, []string{"-z", "lz4"}},
	{viaZstd, "zstd", 0, inputList, []string{"-z", "zstd"}},
}

// kcatDelim and kcatKeyDelim split kcat's input into messages and each
// message into key and value (-D, -K). No key or value of the corpus
// contains them, so values may hold newlines, NUL and any other byte.
const (
	kcatDelim    = "@@END@@"
	kcatKeyDelim = "@@KEY@@"
)

// kcatKind is one kind of bad message of the corpus and the dead-letter
// reason it must get.
type kcatKind struct {
	name   string
	via    kcatVia
	key    []byte // nil: no key
	value  []byte // nil: a NULL value (a tombstone; needs the -Z of viaSnappy)
	reason reading.Reason
}

// kcatEdge is a message that looks odd but is a valid reading: it must land
// as want.
type kcatEdge struct {
	name string
	via  kcatVia
	// message renders the edge case for reading r of the stream's sequence
	// (sequence number seq): the record's key and value, and the reading
	// that must land (r, unless the rendering changes it).
	message func(r reading.Reading, seq int64) (key, value []byte, want reading.Reading)
}

// omit, as the raw value in an edit of msgTemplate.with, drops the field.
const omit = "\x00omit"

// msgTemplate is a valid message as pairs of a key and its raw JSON
// value; with edits a copy.
type msgTemplate []string

// with returns the message with edits (pairs of a key and a raw value:
// replaces the key's value, omit drops it, a new key is appended).
func (m msgTemplate) with(edits ...string) []byte {
	pairs := slices.Clone(m)
	for i := 0; i < len(edits); i += 2 {
		k, raw := edits[i], edits[i+1]
		j := 0
		for ; j < len(pairs) && pairs[j] != k; j += 2 {
		}
		switch {
		case j == len(pairs):
			pairs = append(pairs, k, raw)
		case raw == omit:
			pairs = slices.Delete(pairs, j, j+2)
		default:
			pairs[j+1] = raw
		}
	}
	return jsonObject(pairs...)
}

// jsonObject writes an object of pairs of a key and a raw JSON value.
func jsonObject(pairs ...string) []byte {
	b := []byte{'{'}
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, pairs[i])
		b = append(b, ':')
		b = append(b, pairs[i+1]...)
	}
	return append(b, '}')
}

// readingFields are r's message fields as pairs of a key and a raw JSON
// value, numbers in the shortest form that reads back exactly.
func readingFields(r reading.Reading, seq int64) msgTemplate {
	value := "null"
	if r.ValueValid {
		value = strconv.FormatFloat(r.Value, 'g', -1, 64)
	}
	return msgTemplate{"device_id", strconv.Quote(r.DeviceID), "time", strconv.Quote(r.Time.UTC().Format(time.RFC3339Nano)),
		"value", value, "battery", strconv.FormatFloat(r.Battery, 'g', -1, 64),
		"rssi", strconv.Itoa(int(r.RSSI)), "seq", strconv.FormatInt(seq, 10)}
}

// utf16Bytes encodes s as UTF-16 in the byte order, after bom.
func utf16Bytes(s string, order binary.AppendByteOrder, bom []byte) []byte {
	b := slices.Clone(bom)
	for _, u := range utf16.Encode([]rune(s)) {
		b = order.AppendUint16(b, u)
	}
	return b
}

// kcatCorpus is the corpus of bad kinds for the registered device dev, a
// reading time at inside the time bounds, and now, the time the records
// are produced.
func kcatCorpus(dev string, at, now time.Time) []kcatKind {
	q := strconv.Quote
	ts := func(t time.Time) string { return q(t.UTC().Format(time.RFC3339Nano)) }
	tmpl := msgTemplate{"device_id", q(dev), "time", ts(at), "value", "21.5", "battery", "87.25", "rssi", "-61", "seq", "1"}
	valid := tmpl.with()
	cat := func(parts ...string) []byte { return []byte(strings.Join(parts, "")) }
	withKey := func(k kcatKind) kcatKind { k.key = []byte(dev); return k }
	pad4097 := tmpl.with("pad", `""`)
	pad4097 = tmpl.with("pad", q(strings.Repeat("x", reading.DefaultMaxBytes+1-len(pad4097))))

	return []kcatKind{
		// The message is no JSON object.
		withKey(kcatKind{name: "empty value", via: viaStdin, value: []byte{}, reason: reading.ReasonNotJSON}),
		withKey(kcatKind{name: "NULL value (tombstone, kcat -Z)", via: viaSnappy, reason: reading.ReasonNotJSON}),
		{name: "whitespace only", via: viaStdin, value: []byte(" \t\r\n  \n"), reason: reading.ReasonNotJSON},
		{name: "truncated after a key", via: viaStdin, value: cat(`{"device_id":`, q(dev), `,"time":`), reason: reading.ReasonNotJSON},
		{name: "truncated inside a string", via: viaStdin, value: []byte(`{"device_id":"TEMP-0`), reason: reading.ReasonNotJSON},
		{name: "closing brace missing", via: viaStdin, value: valid[:len(valid)-1], reason: reading.ReasonNotJSON},
		{name: "array holding a reading", via: viaStdin, value: cat("[", string(valid), "]"), reason: reading.ReasonNotJSON},
		{name: "JSON string", via: viaStdin, value: []byte(`"TEMP-001 21.5"`), reason: reading.ReasonNotJSON},
		{name: "JSON number", via: viaStdin, value: []byte(`21.5`), reason: reading.ReasonNotJSON},
		{name: "JSON null", via: viaStdin, value: []byte(`null`), reason: reading.ReasonNotJSON},
		{name: "JSON true", via: viaStdin, value: []byte(`true`), reason: reading.ReasonNotJSON},
		{name: "trailing garbage", via: viaStdin, value: cat(string(valid), "garbage"), reason: reading.ReasonNotJSON},
		{name: "two objects in one record (NDJSON)", via: viaStdin, value: cat(string(valid), "\n", string(valid)), reason: reading.ReasonNotJSON},
		{name: "trailing comma", via: viaStdin, value: cat(string(valid[:len(valid)-1]), ",}"), reason: reading.ReasonNotJSON},
		{name: "single-quoted strings", via: viaStdin, value: []byte(`{'device_id':'TEMP-001','time':'2026-11-28T14:00:00Z','value':21.5,'battery':87.25,'rssi':-61,'seq':1}`), reason: reading.ReasonNotJSON},
		{name: "unquoted keys", via: viaStdin, value: cat(`{device_id:`, q(dev), `,time:`, ts(at), `,value:21.5,battery:87.25,rssi:-61,seq:1}`), reason: reading.ReasonNotJSON},
		{name: "comment", via: viaStdin, value: cat(`{/* sensor */`, string(valid[1:])), reason: reading.ReasonNotJSON},
		{name: "raw NUL after the object", via: viaStdin, value: cat(string(valid), "\x00"), reason: reading.ReasonNotJSON},
		{name: "raw NUL inside a string", via: viaStdin, value: tmpl.with("device_id", "\"TEMP\x00-001\""), reason: reading.ReasonNotJSON},
		{name: "raw newline inside a string", via: viaStdin, value: tmpl.with("device_id", "\"TEMP-\n001\""), reason: reading.ReasonNotJSON},
		{name: "UTF-8 byte order mark", via: viaStdin, value: cat("\xef\xbb\xbf", string(valid)), reason: reading.ReasonNotJSON},
		{name: "invalid escape \\x41", via: viaStdin, value: tmpl.with("device_id", `"TEMP\x41-001"`), reason: reading.ReasonNotJSON},
		{name: "truncated \\u escape", via: viaStdin, value: tmpl.with("device_id", `"TEMP\u00-001"`), reason: reading.ReasonNotJSON},
		{name: "bare NaN in an unknown field", via: viaStdin, value: tmpl.with("extra", "NaN"), reason: reading.ReasonNotJSON},
		{name: "Python None literal", via: viaStdin, value: tmpl.with("value", "None"), reason: reading.ReasonNotJSON},
		{name: "number with a leading plus", via: viaStdin, value: tmpl.with("value", "+21.5"), reason: reading.ReasonNotJSON},
		{name: "number with a leading zero", via: viaStdin, value: tmpl.with("rssi", "-061"), reason: reading.ReasonNotJSON},
		{name: "hexadecimal number", via: viaStdin, value: tmpl.with("value", "0x15"), reason: reading.ReasonNotJSON},
		{name: "unclosed deep nesting (3000 levels)", via: viaStdin, value: cat(`{"meta":`, strings.Repeat("[", 3000)), reason: reading.ReasonNotJSON},
		{name: "XML", via: viaStdin, value: cat(`<reading device_id="`, dev, `" value="21.5"/>`), reason: reading.ReasonNotJSON},
		{name: "CSV line", via: viaStdin, value: cat(dev, ",2026-11-28T14:00:00Z,21.5,87.25,-61,1"), reason: reading.ReasonNotJSON},
		{name: "UTF-16BE without byte order mark", via: viaFiles, value: utf16Bytes(string(valid), binary.BigEndian, nil), reason: reading.ReasonNotJSON},

		// The bytes are no UTF-8.
		{name: "invalid UTF-8 byte 0xff", via: viaFiles, value: tmpl.with("device_id", "\"TEMP-\xff001\""), reason: reading.ReasonInvalidUTF8},
		{name: "UTF-16LE with byte order mark", via: viaFiles, value: utf16Bytes(string(valid), binary.LittleEndian, []byte{0xff, 0xfe}), reason: reading.ReasonInvalidUTF8},
		{name: "UTF-16BE with byte order mark", via: viaFiles, value: utf16Bytes(string(valid), binary.BigEndian, []byte{0xfe, 0xff}), reason: reading.ReasonInvalidUTF8},
		{name: "overlong encoding of '/' (C0 AF)", via: viaFiles, value: tmpl.with("note", "\"a\xc0\xafb\""), reason: reading.ReasonInvalidUTF8},
		{name: "overlong NUL (C0 80, Java modified UTF-8)", via: viaFiles, value: tmpl.with("device_id", "\"TEMP\xc0\x80-001\""), reason: reading.ReasonInvalidUTF8},
		{name: "UTF-8-encoded surrogate (CESU-8, ED A0 80)", via: viaFiles, value: tmpl.with("note", "\"\xed\xa0\x80\""), reason: reading.ReasonInvalidUTF8},
		{name: "code point beyond U+10FFFF (F4 90 80 80)", via: viaFiles, value: tmpl.with("note", "\"\xf4\x90\x80\x80\""), reason: reading.ReasonInvalidUTF8},
		{name: "multibyte sequence cut at the end", via: viaFiles, value: cat(string(valid), "\xe2\x82"), reason: reading.ReasonInvalidUTF8},
		{name: "Latin-1 text", via: viaFiles, value: tmpl.with("note", "\"Temp\xe9rature\""), reason: reading.ReasonInvalidUTF8},
		{name: "lone continuation byte", via: viaFiles, value: tmpl.with("value", "21.5\x80"), reason: reading.ReasonInvalidUTF8},

		// Longer than the decoder's limit.
		{name: "one byte over the limit (4097 bytes)", via: viaStdin, value: pad4097, reason: reading.ReasonOversized},
		{name: "256 KiB value", via: viaFiles, value: tmpl.with("pad", q(strings.Repeat("0123456789abcdef", 16<<10))), reason: reading.ReasonOversized},
		{name: "100000 nesting levels", via: viaFiles, value: tmpl.with("meta", strings.Repeat("[", 100000)+strings.Repeat("]", 100000)), reason: reading.ReasonOversized},
		{name: "512 KiB of spaces, gzip-compressed", via: viaGzip, value: cat(string(valid), strings.Repeat(" ", 512<<10)), reason: reading.ReasonOversized},

		// A required field carries nothing.
		{name: "device_id missing", via: viaGzip, value: tmpl.with("device_id", omit), reason: reading.ReasonMissingField},
		{name: "time missing", via: viaGzip, value: tmpl.with("time", omit), reason: reading.ReasonMissingField},
		{name: "value missing", via: viaGzip, value: tmpl.with("value", omit), reason: reading.ReasonMissingField},
		{name: "battery missing", via: viaGzip, value: tmpl.with("battery", omit), reason: reading.ReasonMissingField},
		{name: "rssi missing", via: viaGzip, value: tmpl.with("rssi", omit), reason: reading.ReasonMissingField},
		{name: "seq missing", via: viaGzip, value: tmpl.with("seq", omit), reason: reading.ReasonMissingField},
		{name: "empty object", via: viaGzip, value: []byte(`{}`), reason: reading.ReasonMissingField},
		{name: "keys in another case (Device_ID)", via: viaGzip, value: tmpl.with("device_id", omit, "Device_ID", q(dev)), reason: reading.ReasonMissingField},
		{name: "device_id null", via: viaGzip, value: tmpl.with("device_id", "null"), reason: reading.ReasonMissingField},
		{name: "time null", via: viaGzip, value: tmpl.with("time", "null"), reason: reading.ReasonMissingField},
		{name: "battery null", via: viaGzip, value: tmpl.with("battery", "null"), reason: reading.ReasonMissingField},
		{name: "rssi null", via: viaGzip, value: tmpl.with("rssi", "null"), reason: reading.ReasonMissingField},
		{name: "seq null", via: viaGzip, value: tmpl.with("seq", "null"), reason: reading.ReasonMissingField},
		{name: "device_id empty string", via: viaGzip, value: tmpl.with("device_id", `""`), reason: reading.ReasonMissingField},
		{name: "time empty string", via: viaGzip, value: tmpl.with("time", `""`), reason: reading.ReasonMissingField},

		// A field has a value of the wrong kind.
		{name: "device_id a number", via: viaSnappy, value: tmpl.with("device_id", "1001"), reason: reading.ReasonWrongType},
		{name: "device_id an array", via: viaSnappy, value: tmpl.with("device_id", `["TEMP-001"]`), reason: reading.ReasonWrongType},
		{name: "device_id with an escaped control character (\\u0007)", via: viaSnappy, value: tmpl.with("device_id", `"TEMP-\u0007001"`), reason: reading.ReasonWrongType},
		{name: "device_id with an escaped NUL (\\u0000)", via: viaSnappy, value: tmpl.with("device_id", `"TEMP-001\u0000"`), reason: reading.ReasonWrongType},
		{name: "time unparseable (yesterday)", via: viaSnappy, value: tmpl.with("time", `"yesterday"`), reason: reading.ReasonWrongType},
		{name: "time as epoch milliseconds", via: viaSnappy, value: tmpl.with("time", strconv.FormatInt(at.UnixMilli(), 10)), reason: reading.ReasonWrongType},
		{name: "time as an object ($date)", via: viaSnappy, value: tmpl.with("time", `{"$date":`+ts(at)+`}`), reason: reading.ReasonWrongType},
		{name: "time without offset", via: viaSnappy, value: tmpl.with("time", q(at.Format("2006-01-02T15:04:05"))), reason: reading.ReasonWrongType},
		{name: "time with a space for T", via: viaSnappy, value: tmpl.with("time", q(at.Format("2006-01-02 15:04:05Z07:00"))), reason: reading.ReasonWrongType},
		{name: "time February 30", via: viaSnappy, value: tmpl.with("time", `"2026-02-30T12:00:00Z"`), reason: reading.ReasonWrongType},
		{name: "time leap second 23:59:60", via: viaSnappy, value: tmpl.with("time", `"2026-06-30T23:59:60Z"`), reason: reading.ReasonWrongType},
		{name: "time offset +24:00", via: viaSnappy, value: tmpl.with("time", `"2026-11-28T14:00:00+24:00"`), reason: reading.ReasonWrongType},
		{name: "time year 10000", via: viaSnappy, value: tmpl.with("time", `"+10000-01-01T00:00:00Z"`), reason: reading.ReasonWrongType},
		{name: "time with an escaped lone surrogate (\\ud800)", via: viaSnappy, value: tmpl.with("time", q(at.Format("2006-01-02T15:04:05"))[:20]+`\ud800Z"`), reason: reading.ReasonWrongType},
		{name: "value a numeric string", via: viaLZ4, value: tmpl.with("value", `"21.5"`), reason: reading.ReasonWrongType},
		{name: "value an empty string", via: viaLZ4, value: tmpl.with("value", `""`), reason: reading.ReasonWrongType},
		{name: "value a boolean", via: viaLZ4, value: tmpl.with("value", "true"), reason: reading.ReasonWrongType},
		{name: "value an object", via: viaLZ4, value: tmpl.with("value", `{"celsius":21.5}`), reason: reading.ReasonWrongType},
		{name: "value nested 1500 levels deep", via: viaLZ4, value: tmpl.with("value", strings.Repeat("[", 1500)+"21.5"+strings.Repeat("]", 1500)), reason: reading.ReasonWrongType},
		{name: "battery a string", via: viaLZ4, value: tmpl.with("battery", `"87%"`), reason: reading.ReasonWrongType},
		{name: "rssi a string", via: viaLZ4, value: tmpl.with("rssi", `"-61"`), reason: reading.ReasonWrongType},
		{name: "rssi with a fraction", via: viaLZ4, value: tmpl.with("rssi", "-61.5"), reason: reading.ReasonWrongType},
		{name: "rssi in exponent form", via: viaLZ4, value: tmpl.with("rssi", "-6.1e1"), reason: reading.ReasonWrongType},
		{name: "rssi beyond int32", via: viaLZ4, value: tmpl.with("rssi", "-2147483649"), reason: reading.ReasonWrongType},
		{name: "seq negative", via: viaLZ4, value: tmpl.with("seq", "-1"), reason: reading.ReasonWrongType},
		{name: "seq beyond int64", via: viaLZ4, value: tmpl.with("seq", "9223372036854775808"), reason: reading.ReasonWrongType},
		{name: "seq 1.0", via: viaLZ4, value: tmpl.with("seq", "1.0"), reason: reading.ReasonWrongType},
		{name: "duplicate key, the last one bad", via: viaLZ4, value: cat(string(valid[:len(valid)-1]), `,"value":"abc"}`), reason: reading.ReasonWrongType},

		// value or battery is not finite.
		{name: "value the string NaN", via: viaLZ4, value: tmpl.with("value", `"NaN"`), reason: reading.ReasonNonFinite},
		{name: "value the string -inf", via: viaLZ4, value: tmpl.with("value", `"-inf"`), reason: reading.ReasonNonFinite},
		{name: "value bare NaN", via: viaLZ4, value: tmpl.with("value", "NaN"), reason: reading.ReasonNonFinite},
		{name: "value bare Infinity", via: viaLZ4, value: tmpl.with("value", "Infinity"), reason: reading.ReasonNonFinite},
		{name: "value bare -Infinity", via: viaLZ4, value: tmpl.with("value", "-Infinity"), reason: reading.ReasonNonFinite},
		{name: "value 1e999 (overflow)", via: viaLZ4, value: tmpl.with("value", "1e999"), reason: reading.ReasonNonFinite},
		{name: "battery -1.8e308 (overflow)", via: viaLZ4, value: tmpl.with("battery", "-1.8e308"), reason: reading.ReasonNonFinite},

		// device_id is not registered.
		{name: "unregistered device", via: viaZstd, key: []byte("TEMP-999"), value: tmpl.with("device_id", `"TEMP-999"`), reason: reading.ReasonUnknownDevice},
		{name: "SQL injection as device_id", via: viaZstd, value: tmpl.with("device_id", q(dev+"'); DROP TABLE public.sensor_readings; --")), reason: reading.ReasonUnknownDevice},
		{name: "device_id of 3000 characters", via: viaZstd, value: tmpl.with("device_id", q(dev+strings.Repeat("0", 3000))), reason: reading.ReasonUnknownDevice},
		{name: "device_id in lower case", via: viaZstd, value: tmpl.with("device_id", q(strings.ToLower(dev))), reason: reading.ReasonUnknownDevice},
		{name: "device_id with a trailing space", via: viaZstd, value: tmpl.with("device_id", q(dev+" ")), reason: reading.ReasonUnknownDevice},
		{name: "device_id with a Cyrillic homoglyph", via: viaZstd, value: tmpl.with("device_id", q("\u0422"+dev[1:])), reason: reading.ReasonUnknownDevice},
		{name: "device_id with an escaped lone surrogate (\\ud800)", via: viaZstd, value: tmpl.with("device_id", q(dev)[:len(dev)+1]+`\ud800"`), reason: reading.ReasonUnknownDevice},

		// The time is far from the record timestamp.
		{name: "time a day ahead of the record", via: viaZstd, value: tmpl.with("time", ts(now.Add(24*time.Hour))), reason: reading.ReasonTimeInFuture},
		{name: "time 9999-12-31T23:59:59.999999999Z", via: viaZstd, value: tmpl.with("time", `"9999-12-31T23:59:59.999999999Z"`), reason: reading.ReasonTimeInFuture},
		{name: "time 8 days behind the record", via: viaZstd, value: tmpl.with("time", ts(now.Add(-8*24*time.Hour))), reason: reading.ReasonTimeTooOld},
		{name: "time the Unix epoch", via: viaZstd, value: tmpl.with("time", `"1970-01-01T00:00:00Z"`), reason: reading.ReasonTimeTooOld},
		{name: "time year 0000", via: viaZstd, value: tmpl.with("time", `"0000-01-01T00:00:00Z"`), reason: reading.ReasonTimeTooOld},

		// A valid reading whose window closed: after the partition's
		// watermark passed it by more than the allowed lateness.
		withKey(kcatKind{name: "reading 30 minutes behind the watermark", via: viaZstd, value: tmpl.with("time", ts(at.Add(-30*time.Minute))), reason: reading.ReasonLate}),
	}
}

// kcatEdges are the messages that look odd but are valid readings.
func kcatEdges() []kcatEdge {
	encode := func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
		return []byte(r.DeviceID), reading.Encode(nil, r, seq), r
	}
	return []kcatEdge{
		{"key naming another device", viaStdin, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			_, v, want := encode(r, seq)
			return []byte("TEMP-999"), v, want
		}},
		{"no key", viaStdin, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			_, v, want := encode(r, seq)
			return nil, v, want
		}},
		{"binary key (NUL, 0xff)", viaLZ4, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			_, v, want := encode(r, seq)
			return []byte("\x00\xff\xfekey\x01"), v, want
		}},
		{"garbage headers (all of the gzip run)", viaGzip, encode},
		{"value null (no measurement)", viaSnappy, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			r.ValueValid, r.Value = false, 0
			return encode(r, seq)
		}},
		{"negative zero value, rssi and seq", viaSnappy, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			r.Value, r.RSSI = math.Copysign(0, -1), 0
			return []byte(r.DeviceID), readingFields(r, seq).with("value", "-0", "rssi", "-0", "seq", "-0"), r
		}},
		{"duplicate key, the last one good", viaGzip, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			return []byte(r.DeviceID), jsonObject(append(msgTemplate{"value", `"abc"`, "battery", "null"}, readingFields(r, seq)...)...), r
		}},
		{"escaped keys and device_id", viaZstd, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			f := readingFields(r, seq)
			b := bytes.Replace(f.with(), []byte(`"device_id":"`+r.DeviceID[:1]), fmt.Appendf(nil, `"device\u005fid":"\u%04x`, r.DeviceID[0]), 1)
			b = bytes.Replace(b, []byte(`"time"`), []byte(`"\u0074ime"`), 1)
			return []byte(r.DeviceID), b, r
		}},
		{"unknown fields with nesting, NUL and lone-surrogate escapes", viaZstd, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			return []byte(r.DeviceID), readingFields(r, seq).with("meta", `{"fw":[1,2.5e-3,{"x":null}],"note":"\u0000\ud800 \u00e9"}`,
				"Value", `"not the value"`, "DEVICE_ID", "42"), r
		}},
		{"exactly 4096 bytes", viaStdin, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			f := readingFields(r, seq)
			n := reading.DefaultMaxBytes - len(f.with("pad", `""`))
			return []byte(r.DeviceID), f.with("pad", strconv.Quote(strings.Repeat("x", n))), r
		}},
		{"time in +05:30, lower-case t, 12 fraction digits", viaLZ4, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			t := r.Time.Add(123456789 * time.Nanosecond).In(time.FixedZone("IST", 5*3600+1800))
			r.Time = r.Time.Add(123456 * time.Microsecond)
			return []byte(r.DeviceID), readingFields(r, seq).with("time", strconv.Quote(t.Format("2006-01-02t15:04:05")+".123456789999+05:30")), r
		}},
		{"time with a lower-case z", viaLZ4, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			return []byte(r.DeviceID), readingFields(r, seq).with("time", strconv.Quote(r.Time.UTC().Format("2006-01-02T15:04:05z"))), r
		}},
		{"pretty-printed over several lines", viaStdin, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			b := readingFields(r, seq).with()
			b = bytes.ReplaceAll(b, []byte(`,"`), []byte(",\n\t\""))
			b = bytes.ReplaceAll(b, []byte(`":`), []byte(`" : `))
			return []byte(r.DeviceID), append(append([]byte("\r\n{\n\t"), b[1:len(b)-1]...), "\n}\n"...), r
		}},
		{"battery 1e-400 (underflow reads 0)", viaSnappy, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			r.Battery = 0
			return []byte(r.DeviceID), readingFields(r, seq).with("battery", "1e-400"), r
		}},
		{"numbers in exponent form", viaGzip, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			return []byte(r.DeviceID), readingFields(r, seq).with("value", strconv.FormatFloat(r.Value, 'e', -1, 64),
				"battery", strconv.FormatFloat(r.Battery, 'E', -1, 64)), r
		}},
		{"value far beyond the device type's range", viaFiles, func(r reading.Reading, seq int64) ([]byte, []byte, reading.Reading) {
			r.Value = 1e6
			_, v, want := encode(r, seq)
			return nil, v, want
		}},
	}
}

// kcatMsg is one message an invocation produces.
type kcatMsg struct {
	name       string
	key, value []byte
	reason     reading.Reason  // "" for a valid reading
	want       reading.Reading // the reading that must land
}

// TestKcatCorpusQuarantined produces, with kcat (a Kafka client that is not
// part of the project), a corpus of bad messages interleaved with valid
// readings through every input mode and compression codec kcat has, with
// garbage headers, binary keys and NULL values. Every bad message must be
// exactly one dead letter with its reason at its partition and offset,
// every valid reading exactly one row, no lease may fail and the worker
// must still be running.
func TestKcatCorpusQuarantined(t *testing.T) {
	testenv.Integration(t)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		testenv.Unavailable(t, "kcat", err)
	}
	s := e2e.NewStream(t, 4)
	run := s.Start(workflows.StreamInput{Leases: 2, LeaseDuration: 20 * time.Second, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})

	now := time.Now().UTC()
	base := now.Truncate(time.Minute).Add(-time.Hour)
	kinds := kcatCorpus(s.Fleet.Devices[0].ID, base, now)
	edges := kcatEdges()
	checkCorpus(t, kinds, edges)

	gen, err := simulate.NewGenerator(s.Fleet, simulate.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	seq := int64(0)
	// next is the next reading of the sequence: devices round-robin, one
	// second apart, so every partition sees them in event-time order.
	next := func() (reading.Reading, int64) {
		dev := s.Fleet.Devices[seq%int64(len(s.Fleet.Devices))]
		r := gen.Live(dev, base.Add(time.Duration(seq)*time.Second), rng, 0)
		seq++
		return r, seq - 1
	}
	validMsg := func() kcatMsg {
		r, n := next()
		return kcatMsg{name: "reading", key: []byte(r.DeviceID), value: reading.Encode(nil, r, n), want: r}
	}

	type position struct {
		partition int32
		offset    int64
	}
	produced := map[position]kcatMsg{}
	nextOffset := map[int32]int64{}
	for _, kr := range kcatRuns {
		var msgs []kcatMsg
		for _, k := range kinds {
			if k.via == kr.via {
				msgs = append(msgs, validMsg(), kcatMsg{name: k.name, key: k.key, value: k.value, reason: k.reason})
			}
		}
		for _, e := range edges {
			if e.via == kr.via {
				r, n := next()
				key, value, want := e.message(r, n)
				msgs = append(msgs, validMsg(), kcatMsg{name: e.name, key: key, value: value, want: want})
			}
		}
		msgs = append(msgs, validMsg())
		if kr.input == inputFiles {
			for i := range msgs {
				msgs[i].key = nil // a file is a value only
			}
		}
		produceKcat(t, kcat, s.Stack.Config.Kafka.BootstrapServers[0], s.Topic, kr, msgs)
		for _, m := range msgs {
			produced[position{kr.partition, nextOffset[kr.partition]}] = m
			nextOffset[kr.partition]++
		}
		t.Logf("kcat run %-12s partition %d: %d messages", kr.name, kr.partition, len(msgs))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hwms, err := kafka.HighWatermarks(ctx, s.Prod, s.Topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(4) {
		if hwms[p] != nextOffset[p] {
			t.Fatalf("partition %d: high watermark %d, kcat produced %d", p, hwms[p], nextOffset[p])
		}
	}

	total := int64(len(produced))
	s.WaitConsumedN(total, 2*time.Minute)

	// Every bad message is one dead letter, at its position, with its
	// reason, its bytes and its key.
	rows, err := s.Stack.Timescale.Query(ctx, `SELECT partition, "offset", key, raw, reason, error FROM public.stream_dead_letters WHERE topic = $1`, s.Topic)
	if err != nil {
		t.Fatal(err)
	}
	type deadLetter struct {
		key, raw       []byte
		reason, detail string
	}
	dead := map[position]deadLetter{}
	var pos position
	var d deadLetter
	if _, err := pgx.ForEachRow(rows, []any{&pos.partition, &pos.offset, &d.key, &d.raw, &d.reason, &d.detail}, func() error {
		dead[pos] = d
		d = deadLetter{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	byReason := map[string]int64{}
	var quarantined int64
	for _, p := range slices.SortedFunc(maps.Keys(produced), func(a, b position) int {
		return cmp.Or(cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset))
	}) {
		m := produced[p]
		got, isDead := dead[p]
		if m.reason == "" {
			if isDead {
				t.Errorf("%s (partition %d offset %d) is valid but quarantined: %s: %s", m.name, p.partition, p.offset, got.reason, got.detail)
			}
			continue
		}
		quarantined++
		byReason[string(m.reason)]++
		switch {
		case !isDead:
			t.Errorf("%s (partition %d offset %d): no dead letter, want %s", m.name, p.partition, p.offset, m.reason)
		case got.reason != string(m.reason):
			t.Errorf("%s (partition %d offset %d): reason %s (%s), want %s", m.name, p.partition, p.offset, got.reason, got.detail, m.reason)
		case !bytes.Equal(got.raw, m.value):
			t.Errorf("%s (partition %d offset %d): raw is %d bytes %.40q, want %d bytes %.40q", m.name, p.partition, p.offset, len(got.raw), got.raw, len(m.value), m.value)
		case !bytes.Equal(got.key, m.key) || (got.key == nil) != (m.key == nil):
			t.Errorf("%s (partition %d offset %d): key %q, want %q", m.name, p.partition, p.offset, got.key, m.key)
		default:
			detail := got.detail
			if len(detail) > 90 {
				detail = detail[:87] + "..."
			}
			t.Logf("%-58s p%d@%-3d %-14s %s", m.name, p.partition, p.offset, got.reason, detail)
		}
	}
	if int64(len(dead)) != quarantined {
		t.Errorf("%d dead letters, want %d", len(dead), quarantined)
	}

	// Every valid reading is one row, as it was sent.
	rows, err = s.Stack.Timescale.Query(ctx, `SELECT device_id, time, value, battery, rssi FROM public.sensor_readings WHERE source = 'stream'`)
	if err != nil {
		t.Fatal(err)
	}
	type readingKey struct {
		device string
		micros int64
	}
	landed := map[readingKey]reading.Reading{}
	var r reading.Reading
	var value *float64
	if _, err := pgx.ForEachRow(rows, []any{&r.DeviceID, &r.Time, &value, &r.Battery, &r.RSSI}, func() error {
		if value != nil {
			r.Value, r.ValueValid = *value, true
		}
		landed[readingKey{r.DeviceID, r.Time.UnixMicro()}] = r
		r, value = reading.Reading{}, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var valid int64
	for p, m := range produced {
		if m.reason != "" {
			continue
		}
		valid++
		got, ok := landed[readingKey{m.want.DeviceID, m.want.Time.UnixMicro()}]
		switch {
		case !ok:
			t.Errorf("%s (partition %d offset %d): reading %s at %s did not land", m.name, p.partition, p.offset, m.want.DeviceID, m.want.Time)
		case got.ValueValid != m.want.ValueValid || got.Value != m.want.Value || got.Battery != m.want.Battery || got.RSSI != m.want.RSSI:
			t.Errorf("%s (partition %d offset %d): landed %+v, want %+v", m.name, p.partition, p.offset, got, m.want)
		}
	}
	if int64(len(landed)) != valid {
		t.Errorf("%d readings landed, want %d", len(landed), valid)
	}

	e2e.CheckStreamExact(t, s.Stack, s.Prod, s.Topic, e2e.StreamExpect{Produced: total, Quarantined: quarantined, ByReason: byReason})
	st := s.StatusUntil("reporting every record", func(st workflows.StreamStatus) bool { return st.Totals.Records == total })
	if st.LeaseFailures != 0 || st.LastError != "" || st.Totals.DeadLetters != quarantined || st.Totals.Inserted != valid || st.Totals.Duplicates != 0 {
		t.Errorf("status = %+v, want no lease failure, %d dead letters, %d inserted", st, quarantined, valid)
	}
	if err := syscall.Kill(s.Worker.Pid(), 0); err != nil {
		t.Errorf("the worker process is gone: %v", err)
	}
	if log := s.Worker.Log(); strings.Contains(log, "panic") {
		t.Errorf("the worker panicked:\n%s", log)
	}
	for _, reason := range reading.Reasons() {
		t.Logf("reason %-14s %3d dead letters", reason, byReason[string(reason)])
	}
	t.Logf("%d malformed kinds, %d late, %d odd but valid kinds; %d messages: %d quarantined, %d readings landed; %d lease attempts, %d failures",
		len(kinds)-int(byReason[string(reading.ReasonLate)]), byReason[string(reading.ReasonLate)], len(edges), total, quarantined, valid,
		st.LeaseAttempts, st.LeaseFailures)

	s.Signal(workflows.SignalStop)
	stopCtx, stopCancel := context.WithTimeout(context.Background(), time.Minute)
	defer stopCancel()
	if err := run.Get(stopCtx, nil); err != nil {
		t.Fatalf("stream workflow: %v", err)
	}
}

// checkCorpus fails the test when the corpus cannot be produced as it
// says: names must be unique, kcat must be able to send each message in
// its invocation's input mode, and keys and values must not contain the
// delimiters.
func checkCorpus(t *testing.T, kinds []kcatKind, edges []kcatEdge) {
	t.Helper()
	names := map[string]bool{}
	for _, e := range edges {
		names[e.name] = true
	}
	for _, k := range kinds {
		if names[k.name] {
			t.Fatalf("corpus: %q twice", k.name)
		}
		names[k.name] = true
		input := kcatRuns[slices.IndexFunc(kcatRuns, func(r kcatRun) bool { return r.via == k.via })].input
		switch {
		case input == inputFiles && (k.key != nil || len(k.value) == 0):
			t.Fatalf("corpus: %q: a file is a non-empty value without key", k.name)
		case input != inputFiles && k.key == nil && len(k.value) == 0:
			t.Fatalf("corpus: %q: kcat skips an empty message", k.name)
		case k.value == nil && k.via != viaSnappy:
			t.Fatalf("corpus: %q: a NULL value needs -Z", k.name)
		case k.value != nil && len(k.value) == 0 && k.via == viaSnappy:
			t.Fatalf("corpus: %q: -Z sends an empty value as NULL", k.name)
		}
	}
	if bad := len(kinds) - 1; bad < 30 { // the late reading is not malformed
		t.Fatalf("corpus has %d malformed kinds, want at least 30", bad)
	}
}

// produceKcat sends msgs, in order, to the partition of run with kcat.
func produceKcat(t *testing.T, kcat, broker, topic string, run kcatRun, msgs []kcatMsg) {
	t.Helper()
	args := []string{"-P", "-b", broker, "-t", topic, "-p", strconv.Itoa(int(run.partition)), "-X", "enable.idempotence=true"}
	args = append(args, run.args...)
	var input []byte
	for _, m := range msgs {
		if bytes.Contains(m.key, []byte(kcatKeyDelim)) || bytes.Contains(m.key, []byte(kcatDelim)) ||
			bytes.Contains(m.value, []byte(kcatDelim)) || bytes.Contains(m.value, []byte(kcatKeyDelim)) {
			t.Fatalf("%s: the message contains a kcat delimiter", m.name)
		}
		if m.key != nil {
			input = append(append(input, m.key...), kcatKeyDelim...)
		}
		input = append(append(input, m.value...), kcatDelim...)
	}
	dir := t.TempDir()
	var stdin *bytes.Reader
	switch run.input {
	case inputStdin:
		args = append(args, "-D", kcatDelim, "-K", kcatKeyDelim)
		stdin = bytes.NewReader(input)
	case inputList:
		path := filepath.Join(dir, "messages")
		if err := os.WriteFile(path, input, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-D", kcatDelim, "-K", kcatKeyDelim, "-l", path)
	case inputFiles:
		for i, m := range msgs {
			path := filepath.Join(dir, fmt.Sprintf("message-%03d", i))
			if err := os.WriteFile(path, m.value, 0o600); err != nil {
				t.Fatal(err)
			}
			args = append(args, path)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("kcat %s: %v\n%s", run.name, err, out)
	}
}

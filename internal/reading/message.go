package reading

// The stream message codec. Readings travel on the Kafka topic
// iot-sensor-stream as one flat JSON object per record, keyed by device_id:
//
//	{"device_id":"TEMP-001","time":"2026-11-28T14:00:00.123Z","value":21.5,"battery":87.25,"rssi":-61,"seq":12345}
//
// The decoder is a hand-rolled scanner for exactly this shape: it validates
// the whole document as strict JSON, keeps the byte span of the last
// occurrence of each known key and converts the six fields without
// reflection. It allocates nothing on the common path when Limits.Devices
// interns device ids (DeviceSet), and one string otherwise.
//
// Every way a message can be bad maps to exactly one Reason, decided in a
// fixed order so that a replayed batch quarantines the same messages for the
// same reasons: oversized, invalid_utf8, not_json, then the fields in the
// order device_id, time, value, battery, rssi, seq (missing_field, wrong_type
// or non_finite; the first failing field wins), then unknown_device,
// time_in_future and time_too_old. Time bounds are measured against the
// Kafka record timestamp, never the wall clock.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Reason says why a stream message was quarantined. The strings are stored
// in the dead-letter table; never change them.
type Reason string

// The quarantine reasons, in the order the decoder checks them. ReasonLate is
// decided by the window stage (see internal/window), not by Decode.
const (
	ReasonOversized     Reason = "oversized"      // longer than Limits.MaxBytes
	ReasonInvalidUTF8   Reason = "invalid_utf8"   // not valid UTF-8
	ReasonNotJSON       Reason = "not_json"       // syntax error, not an object, trailing garbage
	ReasonMissingField  Reason = "missing_field"  // a required field is absent, null or ""
	ReasonWrongType     Reason = "wrong_type"     // a field has a value of the wrong kind
	ReasonNonFinite     Reason = "non_finite"     // value or battery is NaN or ±Inf
	ReasonUnknownDevice Reason = "unknown_device" // device_id is not in the registry
	ReasonTimeInFuture  Reason = "time_in_future" // time > record time + MaxFuture
	ReasonTimeTooOld    Reason = "time_too_old"   // time < record time − MaxPast
	ReasonLate          Reason = "late"           // its window closed (internal/window)
)

// Reasons lists every quarantine reason in check order.
func Reasons() []Reason {
	return []Reason{
		ReasonOversized, ReasonInvalidUTF8, ReasonNotJSON, ReasonMissingField,
		ReasonWrongType, ReasonNonFinite, ReasonUnknownDevice, ReasonTimeInFuture,
		ReasonTimeTooOld, ReasonLate,
	}
}

// Rejection is the error Decode returns for a message that must be
// quarantined. Detail is for people: valid UTF-8, at most a few hundred
// bytes, never the whole message.
type Rejection struct {
	Reason Reason
	Detail string
}

func (r *Rejection) Error() string { return string(r.Reason) + ": " + r.Detail }

// RejectionReason returns the reason of a *Rejection in err's chain.
func RejectionReason(err error) (Reason, bool) {
	var r *Rejection
	if errors.As(err, &r) {
		return r.Reason, true
	}
	return "", false
}

// Defaults for the zero fields of Limits.
const (
	DefaultMaxBytes  = 4096
	DefaultMaxFuture = 5 * time.Minute
	DefaultMaxPast   = 7 * 24 * time.Hour
)

// Limits bound what Decode accepts. Zero fields take the defaults above.
type Limits struct {
	// MaxBytes is the largest accepted message; longer ones are rejected
	// as oversized before any parsing.
	MaxBytes int
	// MaxFuture and MaxPast bound the reading time around the Kafka record
	// timestamp: a clock that is a little fast is tolerated, one that is far
	// off is not. Both bounds are inclusive.
	MaxFuture time.Duration
	MaxPast   time.Duration
	// Devices is the device registry; nil accepts every device id.
	Devices DeviceLookup
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultMaxFuture
	}
	if l.MaxPast <= 0 {
		l.MaxPast = DefaultMaxPast
	}
	return l
}

// DeviceLookup tells whether a device id is registered, and returns the id
// as a string. Implementations that return a shared canonical string (as
// DeviceSet does) spare the decoder an allocation per message. id is only
// valid during the call.
type DeviceLookup interface {
	Lookup(id []byte) (canonical string, known bool)
}

// KnownFunc adapts a predicate on device ids to DeviceLookup. It allocates
// the id string on every call; prefer DeviceSet on hot paths.
type KnownFunc func(deviceID string) bool

// Lookup implements DeviceLookup.
func (f KnownFunc) Lookup(id []byte) (string, bool) {
	s := string(id)
	return s, f(s)
}

// DeviceSet is an immutable set of registered device ids that interns them:
// every decoded reading of a device shares one id string. It is safe for
// concurrent use; to follow registry changes, build a new set and swap it.
type DeviceSet struct {
	ids map[string]string
}

// NewDeviceSet returns the set of ids.
func NewDeviceSet(ids []string) *DeviceSet {
	s := &DeviceSet{ids: make(map[string]string, len(ids))}
	for _, id := range ids {
		s.ids[id] = id
	}
	return s
}

// Lookup implements DeviceLookup without allocating. A nil set knows no
// device.
func (s *DeviceSet) Lookup(id []byte) (string, bool) {
	if s == nil {
		return "", false
	}
	canonical, ok := s.ids[string(id)]
	return canonical, ok
}

// Len is the number of ids in the set.
func (s *DeviceSet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.ids)
}

// Encode appends the JSON message for r with sequence number seq to dst and
// returns the extended slice. It does not allocate when dst has room.
//
// The output is byte-for-byte what encoding/json produces for the same
// fields, except that device ids are not HTML-escaped. Time is written in UTC
// with the fraction trimmed of trailing zeros. Encode never fails, so it can
// also write messages Decode rejects: a non-finite value or battery becomes
// the string "NaN", "Infinity" or "-Infinity" (non_finite), a negative seq
// stays negative (wrong_type), and a year outside 0000–9999 is written in
// Go's extended form (wrong_type).
func Encode(dst []byte, r Reading, seq int64) []byte {
	dst = append(dst, `{"device_id":`...)
	dst = appendJSONString(dst, r.DeviceID)
	dst = append(dst, `,"time":"`...)
	dst = appendRFC3339(dst, r.Time)
	dst = append(dst, `","value":`...)
	if r.ValueValid {
		dst = appendJSONFloat(dst, r.Value)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"battery":`...)
	dst = appendJSONFloat(dst, r.Battery)
	dst = append(dst, `,"rssi":`...)
	dst = strconv.AppendInt(dst, int64(r.RSSI), 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does, minus HTML escaping:
// control characters as \u00XX (or their short forms), U+2028 and U+2029 as
// \u2028 and \u2029, invalid UTF-8 as U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendJSONFloat formats f like encoding/json: the shortest decimal that
// reads back to the same float64, in exponent form only for very small or
// very large magnitudes.
func appendJSONFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendRFC3339 writes t in UTC as RFC 3339 with nanoseconds, trailing zeros
// trimmed (time.RFC3339Nano), without the cost of time.AppendFormat.
func appendRFC3339(dst []byte, t time.Time) []byte {
	t = t.UTC()
	sec := t.Unix()
	days := sec / 86400
	daySec := sec % 86400
	if daySec < 0 {
		daySec += 86400
		days--
	}
	year, month, day := civilFromDays(days)
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	dst = append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T')
	h, m, s := int(daySec/3600), int(daySec/60%60), int(daySec%60)
	dst = append(dst,
		byte('0'+h/10), byte('0'+h%10), ':',
		byte('0'+m/10), byte('0'+m%10), ':',
		byte('0'+s/10), byte('0'+s%10))
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, 'Z')
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's algorithm).
func civilFromDays(z int64) (year, month, day int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return int(y), int(m), int(d)
}

// daysFromCivil is the inverse of civilFromDays.
func daysFromCivil(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := int64((month + 9) % 12)
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// Decode parses and validates one stream message. recordTime is the Kafka
// record timestamp: the time bounds are measured from it, so decoding the
// same record again gives the same answer. It returns the reading, the
// producer's per-device sequence number, and a *Rejection for a message to
// quarantine.
//
// Semantics beyond the schema:
//   - A duplicate key: the last occurrence wins (as in encoding/json); an
//     earlier bad occurrence does not reject the message.
//   - Keys are case-sensitive; unknown keys are ignored (their values must
//     still be valid JSON).
//   - Absent, null or "" in a required field is missing_field; value is
//     required too, but null means "no measurement" (ValueValid false).
//   - value and battery: a JSON number; the strings "NaN", "Inf",
//     "Infinity" (any case, optional sign), the bare tokens NaN, Infinity,
//     -Infinity (as Python writes them) and numbers beyond float64 such as
//     1e400 are non_finite; any other kind is wrong_type.
//   - rssi: an integer within int32, seq: an integer 0 ≤ seq ≤ 2^63−1, both
//     without fraction or exponent (1.0 and 1e2 are wrong_type).
//   - device_id must not contain control characters (wrong_type).
//   - time: RFC 3339, "T"/"Z" in either case, any number of fraction digits
//     (beyond nanoseconds truncated), any offset. The reading time is
//     converted to UTC and truncated to the microsecond, the precision of
//     PostgreSQL timestamptz, so the window, the (device_id, time) key and
//     the time bounds are decided on the value that is stored.
//   - A reading outside its device type's valid range is accepted: range
//     checks are anomaly detection, not decoding.
func Decode(raw []byte, recordTime time.Time, lim Limits) (Reading, int64, error) {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxBytes {
		return reject(ReasonOversized, fmt.Sprintf("message is %d bytes, limit %d", len(raw), lim.MaxBytes))
	}
	if !utf8.Valid(raw) {
		return reject(ReasonInvalidUTF8, fmt.Sprintf("invalid UTF-8 at byte %d", firstInvalidUTF8(raw)))
	}
	var fields [numFields]token
	if pos, what := scanMessage(raw, &fields); what != "" {
		return reject(ReasonNotJSON, fmt.Sprintf("%s at byte %d", what, pos))
	}

	var r Reading
	var id []byte
	var seq int64

	// device_id
	tok := fields[fieldDeviceID]
	switch tok.kind {
	case tokAbsent, tokNull:
		return rejectField(ReasonMissingField, fieldDeviceID, raw, tok, "is required")
	case tokString:
		id = stringContent(raw, tok)
		if len(id) == 0 {
			return rejectField(ReasonMissingField, fieldDeviceID, raw, tok, "is empty")
		}
		for _, c := range id {
			if c < 0x20 || c == 0x7f {
				return rejectField(ReasonWrongType, fieldDeviceID, raw, tok, "contains a control character")
			}
		}
	default:
		return rejectField(ReasonWrongType, fieldDeviceID, raw, tok, "must be a string")
	}

	// time
	tok = fields[fieldTime]
	switch tok.kind {
	case tokAbsent, tokNull:
		return rejectField(ReasonMissingField, fieldTime, raw, tok, "is required")
	case tokString:
		s := stringContent(raw, tok)
		if len(s) == 0 {
			return rejectField(ReasonMissingField, fieldTime, raw, tok, "is empty")
		}
		t, ok := parseRFC3339(s)
		if !ok {
			return rejectField(ReasonWrongType, fieldTime, raw, tok, "is not an RFC 3339 time")
		}
		r.Time = t.Truncate(time.Microsecond)
	default:
		return rejectField(ReasonWrongType, fieldTime, raw, tok, "must be an RFC 3339 string")
	}

	// value
	tok = fields[fieldValue]
	switch tok.kind {
	case tokAbsent:
		return rejectField(ReasonMissingField, fieldValue, raw, tok, "is required (null when there is no measurement)")
	case tokNull:
		r.ValueValid = false
	default:
		v, reason, why := parseFloatToken(raw, tok)
		if reason != "" {
			return rejectField(reason, fieldValue, raw, tok, why)
		}
		r.Value, r.ValueValid = v, true
	}

	// battery
	tok = fields[fieldBattery]
	switch tok.kind {
	case tokAbsent, tokNull:
		return rejectField(ReasonMissingField, fieldBattery, raw, tok, "is required")
	default:
		v, reason, why := parseFloatToken(raw, tok)
		if reason != "" {
			return rejectField(reason, fieldBattery, raw, tok, why)
		}
		r.Battery = v
	}

	// rssi
	tok = fields[fieldRSSI]
	switch tok.kind {
	case tokAbsent, tokNull:
		return rejectField(ReasonMissingField, fieldRSSI, raw, tok, "is required")
	default:
		v, ok := parseIntToken(raw, tok, math.MinInt32, math.MaxInt32)
		if !ok {
			return rejectField(ReasonWrongType, fieldRSSI, raw, tok, "must be an integer within int32")
		}
		r.RSSI = int32(v)
	}

	// seq
	tok = fields[fieldSeq]
	switch tok.kind {
	case tokAbsent, tokNull:
		return rejectField(ReasonMissingField, fieldSeq, raw, tok, "is required")
	default:
		v, ok := parseIntToken(raw, tok, 0, math.MaxInt64)
		if !ok {
			return rejectField(ReasonWrongType, fieldSeq, raw, tok, "must be a non-negative integer")
		}
		seq = v
	}

	if lim.Devices == nil {
		r.DeviceID = string(id)
	} else {
		canonical, known := lim.Devices.Lookup(id)
		if !known {
			return reject(ReasonUnknownDevice, "device_id "+quoteSnippet(id)+" is not registered")
		}
		r.DeviceID = canonical
	}

	if latest := recordTime.Add(lim.MaxFuture); r.Time.After(latest) {
		return reject(ReasonTimeInFuture, fmt.Sprintf("time %s is %s after the record timestamp %s (limit %s)",
			r.Time.Format(time.RFC3339Nano), r.Time.Sub(recordTime), recordTime.UTC().Format(time.RFC3339Nano), lim.MaxFuture))
	}
	if earliest := recordTime.Add(-lim.MaxPast); r.Time.Before(earliest) {
		return reject(ReasonTimeTooOld, fmt.Sprintf("time %s is %s before the record timestamp %s (limit %s)",
			r.Time.Format(time.RFC3339Nano), recordTime.Sub(r.Time), recordTime.UTC().Format(time.RFC3339Nano), lim.MaxPast))
	}
	return r, seq, nil
}

func reject(reason Reason, detail string) (Reading, int64, error) {
	return Reading{}, 0, &Rejection{Reason: reason, Detail: detail}
}

func rejectField(reason Reason, f fieldID, raw []byte, tok token, why string) (Reading, int64, error) {
	if tok.kind == tokAbsent {
		return reject(reason, "field "+fieldNames[f]+" "+why)
	}
	return reject(reason, "field "+fieldNames[f]+" "+why+", got "+quoteSnippet(raw[tok.start:tok.end]))
}

// quoteSnippet quotes at most 64 bytes of b for a Detail.
func quoteSnippet(b []byte) string {
	const maxSnippet = 64
	if len(b) <= maxSnippet {
		return strconv.Quote(string(b))
	}
	cut := maxSnippet
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return strconv.Quote(string(b[:cut])) + "…"
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// parseFloatToken converts a value or battery token. A non-empty reason
// rejects it.
func parseFloatToken(raw []byte, tok token) (float64, Reason, string) {
	switch tok.kind {
	case tokNumber:
		num := raw[tok.start:tok.end]
		if v, ok := parseFloatFast(num); ok {
			return v, "", ""
		}
		// The bytes are a valid JSON number, so the only possible error is
		// ErrRange: overflow to ±Inf (underflow rounds to 0 without error,
		// as in encoding/json). unsafe.String avoids a copy; strconv clones
		// the string into any error it returns.
		v, err := strconv.ParseFloat(unsafe.String(&num[0], len(num)), 64)
		if err != nil || math.IsInf(v, 0) {
			return 0, ReasonNonFinite, "overflows float64"
		}
		return v, "", ""
	case tokNonFinite:
		return 0, ReasonNonFinite, "is not a finite number"
	case tokString:
		if isNonFiniteSpelling(stringContent(raw, tok)) {
			return 0, ReasonNonFinite, "is not a finite number"
		}
		return 0, ReasonWrongType, "must be a number"
	default:
		return 0, ReasonWrongType, "must be a number"
	}
}

// exactPow10 holds the powers of ten that float64 represents exactly.
var exactPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloatFast converts a valid JSON number whose decimal mantissa fits in
// 53 bits and whose decimal exponent is at most 22 in magnitude, which
// covers sensor readings. Both operands of the one multiplication or
// division are then exact, so IEEE rounding gives the correctly rounded
// result, identical to strconv.ParseFloat (Clinger's fast path, which
// strconv also takes, after more general parsing). ok is false for any
// other number.
func parseFloatFast(num []byte) (float64, bool) {
	i := 0
	negative := num[0] == '-'
	if negative {
		i++
	}
	var mantissa uint64
	digits, exp := 0, 0
	for ; i < len(num) && '0' <= num[i] && num[i] <= '9'; i++ {
		mantissa = mantissa*10 + uint64(num[i]-'0')
		if mantissa != 0 {
			digits++
		}
	}
	if i < len(num) && num[i] == '.' {
		for i++; i < len(num) && '0' <= num[i] && num[i] <= '9'; i++ {
			mantissa = mantissa*10 + uint64(num[i]-'0')
			if mantissa != 0 {
				digits++
			}
			exp--
		}
	}
	if digits > 15 { // beyond 15 digits the mantissa may exceed 2^53 (or uint64)
		return 0, false
	}
	if i < len(num) { // exponent
		i++
		expNegative := false
		if num[i] == '+' || num[i] == '-' {
			expNegative = num[i] == '-'
			i++
		}
		e := 0
		for ; i < len(num); i++ {
			e = e*10 + int(num[i]-'0')
			if e > 1000 {
				return 0, false
			}
		}
		if expNegative {
			e = -e
		}
		exp += e
	}
	f := float64(mantissa)
	switch {
	case mantissa == 0:
	case exp == 0:
	case exp > 0 && exp <= 22:
		f *= exactPow10[exp]
	case exp < 0 && exp >= -22:
		f /= exactPow10[-exp]
	default:
		return 0, false
	}
	if negative {
		f = -f
	}
	return f, true
}

// isNonFiniteSpelling recognises the usual spellings of NaN and infinity:
// nan, inf, infinity in any case, with an optional sign.
func isNonFiniteSpelling(s []byte) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if len(s) != 3 && len(s) != 8 {
		return false
	}
	var lower [8]byte
	for i, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	switch string(lower[:len(s)]) {
	case "nan", "inf", "infinity":
		return true
	}
	return false
}

// parseIntToken converts an integer token (no fraction, no exponent) within
// [lo, hi].
func parseIntToken(raw []byte, tok token, lo, hi int64) (int64, bool) {
	if tok.kind != tokNumber || !tok.integer {
		return 0, false
	}
	digits := raw[tok.start:tok.end]
	negative := digits[0] == '-'
	if negative {
		digits = digits[1:]
	}
	// Accumulate the magnitude as uint64 to detect overflow exactly.
	var mag uint64
	for _, c := range digits {
		d := uint64(c - '0')
		if mag > (math.MaxUint64-d)/10 {
			return 0, false
		}
		mag = mag*10 + d
	}
	var v int64
	if negative {
		if mag > 1<<63 {
			return 0, false
		}
		v = int64(-mag) // wraps correctly for mag == 1<<63
	} else {
		if mag > math.MaxInt64 {
			return 0, false
		}
		v = int64(mag)
	}
	if v < lo || v > hi {
		return 0, false
	}
	return v, true
}

// parseRFC3339 parses an RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS, an
// optional fraction of any length (digits beyond nanoseconds truncated, as
// Go's time package does) and Z or ±HH:MM. "T" and "Z" may be lower case
// (RFC 3339 §5.6). The result is in UTC.
func parseRFC3339(s []byte) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	ok := true
	num := func(b []byte, lo, hi int) int {
		x := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				ok = false
				return 0
			}
			x = x*10 + int(c-'0')
		}
		if x < lo || x > hi {
			ok = false
		}
		return x
	}
	year := num(s[0:4], 0, 9999)
	month := num(s[5:7], 1, 12)
	if !ok {
		return time.Time{}, false
	}
	day := num(s[8:10], 1, daysIn(month, year))
	hour := num(s[11:13], 0, 23)
	minute := num(s[14:16], 0, 59)
	second := num(s[17:19], 0, 59)
	if !ok || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	s = s[19:]
	nsec := 0
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		n := 1
		scale := 100_000_000
		for ; n < len(s) && '0' <= s[n] && s[n] <= '9'; n++ {
			nsec += int(s[n]-'0') * scale
			scale /= 10
		}
		s = s[n:]
	}
	var offset int
	switch {
	case len(s) == 1 && (s[0] == 'Z' || s[0] == 'z'):
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		oh := num(s[1:3], 0, 23)
		om := num(s[4:6], 0, 59)
		if !ok {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return time.Time{}, false
	}
	unix := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+second) - int64(offset)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// The scanner.

type fieldID uint8

const (
	fieldDeviceID fieldID = iota
	fieldTime
	fieldValue
	fieldBattery
	fieldRSSI
	fieldSeq
	numFields
)

var fieldNames = [numFields]string{"device_id", "time", "value", "battery", "rssi", "seq"}

type tokKind uint8

const (
	tokAbsent    tokKind = iota
	tokString            // span includes the quotes
	tokNumber            // a valid JSON number
	tokNull              //
	tokBool              //
	tokComposite         // an object or an array
	tokNonFinite         // the bare tokens NaN, Infinity, -Infinity
)

// token is the byte span of one field value in the message.
type token struct {
	start, end int
	kind       tokKind
	escaped    bool // a string with backslash escapes
	integer    bool // a number without fraction or exponent
}

// maxDepth bounds nesting in ignored fields, as encoding/json does.
const maxDepth = 10000

// scanMessage checks that b is one JSON object and records the last value of
// each known key. It returns the position and a description of the first
// syntax error, or "" when b is valid.
func scanMessage(b []byte, fields *[numFields]token) (int, string) {
	i := skipSpace(b, 0)
	if i == len(b) {
		return i, "empty message"
	}
	if b[i] != '{' {
		return i, "message is not a JSON object"
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return checkEnd(b, i+1)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, "expected an object key"
		}
		keyStart := i
		var escaped bool
		var what string
		i, escaped, what = scanString(b, i)
		if what != "" {
			return i, what
		}
		f := matchKey(b[keyStart+1:i-1], escaped)
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return i, "expected ':' after an object key"
		}
		i = skipSpace(b, i+1)
		if f < numFields {
			// Written in place: returning the token by value and copying it
			// cost a tenth of the decode time.
			tok := &fields[f]
			if i, what = scanFieldValue(b, i, tok); what != "" {
				return i, what
			}
		} else {
			i, what = skipValue(b, i, 1)
			if what != "" {
				return i, what
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return i, "unexpected end of message"
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return checkEnd(b, i+1)
		default:
			return i, "expected ',' or '}' after an object value"
		}
	}
}

func checkEnd(b []byte, i int) (int, string) {
	i = skipSpace(b, i)
	if i != len(b) {
		return i, "trailing data after the object"
	}
	return 0, ""
}

func skipSpace(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' { // the compact common case
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// matchKey maps a key (the bytes between the quotes) to a field, or
// numFields for an unknown key.
func matchKey(key []byte, escaped bool) fieldID {
	if escaped {
		// Only keys of known length can match; a short buffer suffices.
		if len(key) > 6*len("device_id") {
			return numFields
		}
		var buf [6 * len("device_id")]byte
		key = appendUnescaped(buf[:0], key)
	}
	switch string(key) {
	case "device_id":
		return fieldDeviceID
	case "time":
		return fieldTime
	case "value":
		return fieldValue
	case "battery":
		return fieldBattery
	case "rssi":
		return fieldRSSI
	case "seq":
		return fieldSeq
	}
	return numFields
}

// scanFieldValue scans the value of a known key. Besides JSON it accepts
// the bare tokens NaN, Infinity and -Infinity, so that Decode can call them
// non_finite rather than not_json.
func scanFieldValue(b []byte, i int, tok *token) (end int, what string) {
	*tok = token{start: i}
	if i >= len(b) {
		return i, "unexpected end of message"
	}
	switch c := b[i]; {
	case c == '"':
		tok.kind = tokString
		end, tok.escaped, what = scanString(b, i)
	case c == '-' || ('0' <= c && c <= '9'):
		if c == '-' && hasPrefix(b[i:], "-Infinity") {
			tok.kind, end = tokNonFinite, i+len("-Infinity")
			break
		}
		tok.kind = tokNumber
		end, tok.integer, what = scanNumber(b, i)
	case c == 'n':
		tok.kind = tokNull
		end, what = scanLiteral(b, i, "null")
	case c == 't':
		tok.kind = tokBool
		end, what = scanLiteral(b, i, "true")
	case c == 'f':
		tok.kind = tokBool
		end, what = scanLiteral(b, i, "false")
	case c == 'N':
		tok.kind = tokNonFinite
		end, what = scanLiteral(b, i, "NaN")
	case c == 'I':
		tok.kind = tokNonFinite
		end, what = scanLiteral(b, i, "Infinity")
	case c == '{' || c == '[':
		tok.kind = tokComposite
		end, what = skipValue(b, i, 1)
	default:
		end = i
		what = "invalid character " + strconv.QuoteRune(rune(c)) + " at the start of a value"
		if c >= utf8.RuneSelf {
			what = "invalid character at the start of a value"
		}
	}
	tok.end = end
	return end, what
}

func hasPrefix(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

func scanLiteral(b []byte, i int, lit string) (int, string) {
	if !hasPrefix(b[i:], lit) {
		return i, "invalid literal (expected " + lit + ")"
	}
	return i + len(lit), ""
}

// skipValue validates and skips one JSON value at b[i].
func skipValue(b []byte, i, depth int) (int, string) {
	if i >= len(b) {
		return i, "unexpected end of message"
	}
	switch c := b[i]; {
	case c == '"':
		end, _, what := scanString(b, i)
		return end, what
	case c == '-' || ('0' <= c && c <= '9'):
		end, _, what := scanNumber(b, i)
		return end, what
	case c == 'n':
		return scanLiteral(b, i, "null")
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == '{':
		if depth >= maxDepth {
			return i, "nesting too deep"
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, ""
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, "expected an object key"
			}
			var what string
			if i, _, what = scanString(b, i); what != "" {
				return i, what
			}
			i = skipSpace(b, i)
			if i >= len(b) || b[i] != ':' {
				return i, "expected ':' after an object key"
			}
			if i, what = skipValue(b, skipSpace(b, i+1), depth+1); what != "" {
				return i, what
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, "unexpected end of message"
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case '}':
				return i + 1, ""
			default:
				return i, "expected ',' or '}' after an object value"
			}
		}
	case c == '[':
		if depth >= maxDepth {
			return i, "nesting too deep"
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, ""
		}
		for {
			var what string
			if i, what = skipValue(b, i, depth+1); what != "" {
				return i, what
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, "unexpected end of message"
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case ']':
				return i + 1, ""
			default:
				return i, "expected ',' or ']' after an array element"
			}
		}
	default:
		return i, "invalid character at the start of a value"
	}
}

// scanString validates the JSON string starting with the quote at b[i] and
// returns the index just past its closing quote. The message is known to be
// valid UTF-8, so only escapes and control characters need checking.
func scanString(b []byte, i int) (end int, escaped bool, what string) {
	i++
	for i < len(b) {
		c := b[i]
		if plainStringByte[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, escaped, ""
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, "unexpected end of message in a string escape"
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, escaped, "invalid \\u escape in a string"
				}
				i += 6
			default:
				return i, escaped, "invalid escape in a string"
			}
		case c < 0x20:
			return i, escaped, "control character in a string"
		default:
			i++
		}
	}
	return i, escaped, "unterminated string"
}

// plainStringByte marks the bytes a JSON string holds as they are: all but
// the quote, the backslash and control characters.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// scanNumber validates the JSON number at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) (end int, integer bool, what string) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return i, false, "unexpected end of message in a number"
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return i, false, "invalid number"
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		j := skipDigits(b, i+1)
		if j == i+1 {
			return j, false, "invalid number: no digits after the decimal point"
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return j, false, "invalid number: no digits in the exponent"
		}
		i = j
	}
	return i, integer, ""
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// stringContent returns the decoded content of a string token: a sub-slice
// of raw when it has no escapes (the common case, no copy), else a fresh
// unescaped copy.
func stringContent(raw []byte, tok token) []byte {
	content := raw[tok.start+1 : tok.end-1]
	if !tok.escaped {
		return content
	}
	return appendUnescaped(make([]byte, 0, len(content)), content)
}

// appendUnescaped decodes the escapes of a scanned (valid) JSON string body
// exactly as encoding/json does, including U+FFFD for unpaired surrogates.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = hex4(s[i+2 : i+6])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					dst = utf8.AppendRune(dst, dec)
					i += 6
					continue
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

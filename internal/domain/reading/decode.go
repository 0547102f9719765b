package reading

// Decoding: Decode, its rejections, and number and RFC 3339 time parsing.

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

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

package reading

// Encoding: Encode and its JSON, RFC 3339 and civil-date helpers.

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

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

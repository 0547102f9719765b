package reading

// The JSON scanner: strict validation, field tokens and string unescaping.

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

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
		// separator's work, written out: this loop runs for every field of
		// every message, and the call costs 5-15% of the decode time.
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

// separator reads what follows an object value or an array element: a
// comma, when more follow (next is the start of the next one), or closer,
// at the end (next is just after it). expect is the complaint otherwise.
func separator(b []byte, i int, closer byte, expect string) (next int, end bool, what string) {
	i = skipSpace(b, i)
	switch {
	case i >= len(b):
		return i, false, "unexpected end of message"
	case b[i] == ',':
		return skipSpace(b, i+1), false, ""
	case b[i] == closer:
		return i + 1, true, ""
	}
	return i, false, expect
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
			var end bool
			if i, end, what = separator(b, i, '}', "expected ',' or '}' after an object value"); what != "" || end {
				return i, what
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
			var end bool
			if i, end, what = separator(b, i, ']', "expected ',' or ']' after an array element"); what != "" || end {
				return i, what
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

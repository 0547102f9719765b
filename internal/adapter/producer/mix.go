package producer

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// ratioScale is the resolution of the bad ratio: parts per million.
const ratioScale = 1_000_000

// The distances that make a message's time fail the decoder's bounds with
// any sane configuration (the defaults are 5 minutes ahead, 7 days behind
// the record timestamp): a device clock a day fast, or a month slow.
const (
	futureSkew = 24 * time.Hour
	pastSkew   = 30 * 24 * time.Hour
)

// oversizedBytes is the length of an oversized message: twice the decoder's
// default limit, still far below a Kafka batch.
const oversizedBytes = 2 * reading.DefaultMaxBytes

// BadReasons lists the quarantine reasons the simulator injects: every
// reason reading.Decode can give. (ReasonLate depends on the consumer's
// watermark, not on the message.)
func BadReasons() []reading.Reason {
	return []reading.Reason{
		reading.ReasonOversized, reading.ReasonInvalidUTF8, reading.ReasonNotJSON,
		reading.ReasonMissingField, reading.ReasonWrongType, reading.ReasonNonFinite,
		reading.ReasonUnknownDevice, reading.ReasonTimeInFuture, reading.ReasonTimeTooOld,
	}
}

// Mix decides which messages are malformed and why. It is a pure function of
// the seed, the ratio and the message number, so a test can tell exactly
// which of the first n messages are bad:
//
//   - message i is bad when floor((i+1)·r + φ) > floor(i·r + φ), with r the
//     ratio in parts per million and φ a seeded phase: exactly
//     floor(n·r + φ) of the first n messages are bad, spread evenly;
//   - the k-th bad message gets reason order[k mod 9], order being a seeded
//     permutation of BadReasons, so the reasons are equally represented.
//
// Devices are drawn in a fresh seeded order every round, so the bad messages
// do not all fall on the same devices however the ratio and the fleet size
// divide.
type Mix struct {
	ppm   int64
	phase int64
	order []reading.Reason
}

// NewMix returns the mix of seed with a share badRatio (0..1, resolution
// 1e-6) of malformed messages.
func NewMix(seed int64, badRatio float64) Mix {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xBAD5EED))
	m := Mix{
		ppm:   int64(math.Round(min(max(badRatio, 0), 1) * ratioScale)),
		phase: rng.Int64N(ratioScale),
		order: BadReasons(),
	}
	rng.Shuffle(len(m.order), func(i, j int) { m.order[i], m.order[j] = m.order[j], m.order[i] })
	return m
}

// bads is how many of the first n messages are bad.
func (m Mix) bads(n int64) int64 { return (n*m.ppm + m.phase) / ratioScale }

// Bad says whether message i (0-based) is malformed, and with which reason.
func (m Mix) Bad(i int64) (reading.Reason, bool) {
	k := m.bads(i)
	if m.bads(i+1) == k {
		return "", false
	}
	return m.order[k%int64(len(m.order))], true
}

// Count is how many of the first n messages are bad, per reason.
func (m Mix) Count(n int64) map[reading.Reason]int64 {
	total := m.bads(n)
	out := make(map[reading.Reason]int64, len(m.order))
	for j, reason := range m.order {
		c := total / int64(len(m.order))
		if int64(j) < total%int64(len(m.order)) {
			c++
		}
		if c > 0 {
			out[reason] = c
		}
	}
	return out
}

// appendBad appends to dst a message that reading.Decode rejects with
// reason when its record timestamp is r.Time: the reading r, corrupted the
// way real devices and gateways corrupt messages.
func appendBad(dst []byte, reason reading.Reason, r reading.Reading, seq int64) []byte {
	switch reason {
	case reading.ReasonNonFinite: // a firmware that prints NaN as a string
		r.Value, r.ValueValid = math.NaN(), true
	case reading.ReasonUnknownDevice: // a replacement device not yet registered
		r.DeviceID = unregisteredID(r.DeviceID)
	case reading.ReasonTimeInFuture: // a clock far ahead
		r.Time = r.Time.Add(futureSkew)
	case reading.ReasonTimeTooOld: // a clock reset to an old date
		r.Time = r.Time.Add(-pastSkew)
	}
	start := len(dst)
	dst = reading.Encode(dst, r, seq)
	msg := dst[start:]
	body := msg[:len(msg)-1] // without the closing brace
	switch reason {
	case reading.ReasonOversized: // a debug dump appended by a gateway
		const field = `,"debug":"`
		pad := oversizedBytes - len(body) - len(field) - len(`"}`)
		dst = append(dst[:start+len(body)], field...)
		dst = append(dst, strings.Repeat("x", pad)...)
		dst = append(dst, `"}`...)
	case reading.ReasonInvalidUTF8: // a Latin-1 site name: 0xE3 is ã
		dst = append(dst[:start+len(body)], ",\"site\":\"S\xe3o Paulo\"}"...)
	case reading.ReasonNotJSON: // a message cut in half
		dst = dst[:start+len(msg)/2]
	case reading.ReasonMissingField: // a firmware that omits seq
		cut := bytes.LastIndex(msg, []byte(`,"seq":`))
		dst = append(dst[:start+cut], '}')
	case reading.ReasonWrongType: // the value quoted as a string
		from := bytes.Index(msg, []byte(`"value":`)) + len(`"value":`)
		to := bytes.Index(msg, []byte(`,"battery":`))
		quoted := make([]byte, 0, len(msg)+2)
		quoted = append(quoted, msg[:from]...)
		quoted = append(quoted, '"')
		quoted = append(quoted, msg[from:to]...)
		quoted = append(quoted, '"')
		quoted = append(quoted, msg[to:]...)
		dst = append(dst[:start], quoted...)
	}
	return dst
}

// unregisteredID turns TEMP-001 into TEMP-X001: an id of the same type that
// no fleet holds, since fleet ids end in digits only.
func unregisteredID(id string) string {
	code, n, ok := strings.Cut(id, "-")
	if !ok {
		return id + "-X"
	}
	return code + "-X" + n
}

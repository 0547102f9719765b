package reading

// Quarantine reasons, the Rejection error, Decode's Limits and device lookups.

import (
	"errors"
	"time"
)

// Reason says why a stream message was quarantined. The strings are stored
// in the dead-letter table; never change them.
type Reason string

// The quarantine reasons, in the order the decoder checks them. ReasonLate is
// decided by the window stage (see internal/domain/window), not by Decode.
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
	ReasonLate          Reason = "late"           // its window closed (internal/domain/window)
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

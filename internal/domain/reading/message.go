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
//
// Encode is in encode.go, Decode in decode.go and its JSON scanner in
// scan.go; the quarantine reasons, Limits and the device lookups are in
// limits.go. This file holds the fields of the message.

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

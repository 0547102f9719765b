package ingest

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// Verdict is what a replay decides for one stored dead letter.
type Verdict struct {
	// Land: the record is a valid reading now; Reading is it.
	Land    bool
	Reading reading.Reading
	// Reason and Error are why it stays quarantined when it does not land
	// (today's reason, which may differ from the stored one).
	Reason string
	Error  string
}

// Rejudge decides again on a dead letter with today's registry and rules
// (lim), window length and allowed lateness: it decodes the stored raw bytes as the
// consumer would, then judges lateness against the partition's watermark
// at the time the record was quarantined. A late dead letter whose
// watermark is unknown stays late: there is nothing to judge it against.
func Rejudge(d DeadLetter, lim reading.Limits, win window.Length, allowedLateness time.Duration) Verdict {
	r, _, err := reading.Decode(d.Raw, d.RecordTime, lim)
	if err != nil {
		reason, _ := reading.RejectionReason(err)
		return Verdict{Reason: string(reason), Error: err.Error()}
	}
	if d.Watermark.IsZero() && d.Reason == string(window.ReasonLate) {
		return Verdict{Reason: d.Reason, Error: d.Error}
	}
	if wm := window.RestoreWatermark(d.Watermark); wm.Late(r.Time, win, allowedLateness) {
		return Verdict{Reason: string(window.ReasonLate), Error: fmt.Sprintf(
			"window [%s, %s) closed: partition watermark %s, allowed lateness %s",
			win.Start(r.Time).Format(time.RFC3339), win.End(r.Time).Format(time.RFC3339),
			wm.Time().Format(time.RFC3339Nano), allowedLateness)}
	}
	return Verdict{Land: true, Reading: r}
}

// FlagReplayed runs the shared transform over one device's replayed
// readings as if they had arrived in time order among its stored ones:
// stored and replayed readings from the Params.Window before the first
// replayed one are pushed through one device state in time order, and each
// replayed reading gets the anomaly reasons it was given (nil when none
// fired). A replayed reading at the time of a stored one is not pushed: it
// is a duplicate and will not land. replayed is sorted by time in place.
func FlagReplayed(d Device, params transform.Params, stored []reading.Reading, replayed []Reading) {
	slices.SortFunc(replayed, func(a, b Reading) int { return a.Time.Compare(b.Time) })
	slices.SortFunc(stored, func(a, b reading.Reading) int { return a.Time.Compare(b.Time) })
	have := make(map[int64]bool, len(stored))
	for _, s := range stored {
		have[s.Time.UnixMicro()] = true
	}
	state := transform.NewDeviceState(d.Device, d.Type, reading.Location{ID: d.Device.LocationID}, params)
	i := 0
	for k := range replayed {
		r := &replayed[k]
		for ; i < len(stored) && stored[i].Time.Before(r.Time); i++ {
			state.Push(stored[i])
		}
		r.Reasons = nil
		if have[r.Time.UnixMicro()] {
			continue
		}
		if e := state.Push(r.Reading); e.Anomaly {
			r.Reasons = e.Reasons
		}
	}
}

// ReplayCounts are what a replay did with the dead letters of one stored
// reason.
type ReplayCounts struct {
	DeadLetters int64 `json:"dead_letters"` // examined
	Landed      int64 `json:"landed"`       // new rows in sensor_readings
	Duplicates  int64 `json:"duplicates"`   // valid now, but the reading was stored already
	Anomalies   int64 `json:"anomalies"`    // landed and flagged
	Kept        int64 `json:"kept"`         // still dead letters
	Rereasoned  int64 `json:"rereasoned"`   // kept, with another reason than before
}

// Add adds o to c.
func (c *ReplayCounts) Add(o ReplayCounts) {
	c.DeadLetters += o.DeadLetters
	c.Landed += o.Landed
	c.Duplicates += o.Duplicates
	c.Anomalies += o.Anomalies
	c.Kept += o.Kept
	c.Rereasoned += o.Rereasoned
}

// SortedReasons are the keys of counts by count of dead letters, then name.
func SortedReasons(counts map[string]ReplayCounts) []string {
	out := make([]string, 0, len(counts))
	for r := range counts {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b].DeadLetters, counts[a].DeadLetters), cmp.Compare(a, b))
	})
	return out
}

package activities

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/domain/ingest"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/domain/window"
)

// DefaultReplayPage is how many dead letters one ReplayDeadLetters call
// takes: one transaction.
const DefaultReplayPage = 1000

// ReplayPageInput selects the next page of a dead-letter replay.
type ReplayPageInput struct {
	Topic  string    `json:"topic"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	Until  time.Time `json:"until,omitzero"`
	// Partition restricts the replay to one partition; negative: all.
	Partition int32 `json:"partition"`
	// AfterID: the page starts after this dead-letter id.
	AfterID  int64 `json:"after_id"`
	PageSize int   `json:"page_size"`
	// AllowedLateness is today's rule for late dead letters.
	AllowedLateness time.Duration `json:"allowed_lateness"`
	// Window is the length of the stream's windows, which the landed
	// readings merge into and lateness is judged by; 0 means the worker's
	// STREAM_WINDOW.
	Window time.Duration `json:"window,omitempty"`
	// DryRun decides and counts, and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// ReplayPageResult is what one page did, by the dead letters' stored reason.
type ReplayPageResult struct {
	// LastID is the highest dead-letter id of the page; Done is set when
	// the page was empty (nothing is left after AfterID).
	LastID int64                          `json:"last_id"`
	Done   bool                           `json:"done"`
	Counts map[string]ingest.ReplayCounts `json:"counts"`
}

// ReplayDeadLetters replays one page of the topic's open dead letters: it
// decodes each stored record again against today's device registry and
// rules (ingest.Rejudge); the readings that are valid now land exactly as
// a consumer lease lands them (raw reading, window merge, anomaly flags
// computed among the device's stored readings) in one transaction with
// the marks that close their dead letters (sink.Replay); the others stay,
// with their reason updated when it changed. A page run again (a retry
// after a crash) finds its landed dead letters closed and lands nothing
// twice.
func (s *Stream) ReplayDeadLetters(ctx context.Context, in ReplayPageInput) (ReplayPageResult, error) {
	hb := startHeartbeat(ctx, in.AfterID)
	defer hb.Stop()
	if in.PageSize <= 0 {
		in.PageSize = DefaultReplayPage
	}
	runID := activity.GetInfo(ctx).WorkflowExecution.RunID
	filter := sink.ReplayFilter{Topic: in.Topic, Reason: in.Reason, Since: in.Since, Until: in.Until, Partition: in.Partition}
	rows, err := sink.ReplayPage(ctx, s.Timescale, filter, runID, in.AfterID, in.PageSize)
	if err != nil {
		return ReplayPageResult{}, err
	}
	out := ReplayPageResult{LastID: in.AfterID, Done: len(rows) == 0, Counts: map[string]ingest.ReplayCounts{}}
	if out.Done {
		return out, nil
	}
	out.LastID = rows[len(rows)-1].ID
	// What an earlier attempt of this page closed is counted as it was
	// closed; the rest is decided now.
	var page []sink.DeadLetterRow
	outcome := map[int64]string{}
	for _, r := range rows {
		if r.Outcome != "" {
			outcome[r.ID] = r.Outcome
		} else {
			page = append(page, r.DeadLetterRow)
		}
	}
	devices, err := sink.Registry(ctx, s.MySQL)
	if err != nil {
		return ReplayPageResult{}, err
	}
	ids := make([]string, 0, len(devices))
	for id := range devices {
		ids = append(ids, id)
	}
	lim := reading.Limits{Devices: reading.NewDeviceSet(ids)}

	win := s.windowLength(in.Window)
	plan := planReplay(page, lim, win, in.AllowedLateness)
	snk, err := sink.Open(ctx, s.Timescale, in.Topic, win)
	if err != nil {
		return ReplayPageResult{}, err
	}
	defer func() { _ = snk.Close(context.WithoutCancel(ctx)) }()
	params := s.Params
	if params == (transform.Params{}) {
		params = transform.DefaultParams()
	}
	stored := map[int64]bool{} // landings whose reading is stored already
	for dev, readings := range plan.byDevice {
		first, last := readings[0].Time, readings[0].Time
		for _, r := range readings {
			first, last = minTime(first, r.Time), maxTime(last, r.Time)
		}
		history, err := snk.RecentReadings(ctx, []string{dev}, last, last.Sub(first)+params.Window)
		if err != nil {
			return ReplayPageResult{}, err
		}
		ingest.FlagReplayed(devices[dev], params, history, readings)
		have := make(map[int64]bool, len(history))
		for _, h := range history {
			have[h.Time.UnixMicro()] = true
		}
		for _, r := range readings {
			if have[r.Time.UnixMicro()] {
				stored[plan.idOf[record{r.Partition, r.Offset}]] = true
			}
		}
	}
	var land []sink.ReplayLanding
	for _, readings := range plan.byDevice {
		for _, r := range readings {
			land = append(land, sink.ReplayLanding{ID: plan.idOf[record{r.Partition, r.Offset}], Reading: r})
		}
	}

	if in.DryRun {
		for _, l := range land {
			outcome[l.ID] = sink.ReplayLanded
			if stored[l.ID] {
				outcome[l.ID] = sink.ReplayDuplicate
			}
		}
		for _, id := range plan.duplicates {
			outcome[id] = sink.ReplayDuplicate
		}
		for _, k := range plan.kept {
			outcome[k.ID] = sink.ReplayKeptSame
			if k.Reason != plan.reason[k.ID] {
				outcome[k.ID] = sink.ReplayRereasoned
			}
		}
	} else {
		applied, err := snk.Replay(ctx, runID, land, plan.duplicates, plan.kept)
		if err != nil {
			return ReplayPageResult{}, err
		}
		maps.Copy(outcome, applied)
	}
	flagged := map[int64]bool{}
	for _, l := range land {
		flagged[l.ID] = l.Reading.Reasons != nil
	}
	for _, d := range rows {
		c := out.Counts[d.Reason]
		c.DeadLetters++
		switch outcome[d.ID] {
		case sink.ReplayLanded:
			c.Landed++
			if flagged[d.ID] {
				c.Anomalies++
			}
		case sink.ReplayDuplicate:
			c.Duplicates++
		case sink.ReplayKeptSame:
			c.Kept++
		case sink.ReplayRereasoned:
			c.Kept++
			c.Rereasoned++
		}
		out.Counts[d.Reason] = c
	}
	hb.Beat(out.LastID)
	return out, nil
}

// record is a Kafka record of the topic: (partition, offset).
type record struct {
	partition int32
	offset    int64
}

// replayPlan is a page's verdicts: the readings that land, by device;
// the valid dead letters whose reading another of the page carries; and
// those that stay.
type replayPlan struct {
	byDevice   map[string][]ingest.Reading
	idOf       map[record]int64
	duplicates []int64
	kept       []sink.ReplayKept
	reason     map[int64]string // stored reason by id
}

func planReplay(page []sink.DeadLetterRow, lim reading.Limits, win window.Length, lateness time.Duration) replayPlan {
	p := replayPlan{byDevice: map[string][]ingest.Reading{}, idOf: map[record]int64{}, reason: map[int64]string{}}
	seen := map[string]bool{} // device and time of the page's readings
	for _, d := range page {
		p.reason[d.ID] = d.Reason
		v := ingest.Rejudge(d.DeadLetter, lim, win, lateness)
		if !v.Land {
			p.kept = append(p.kept, sink.ReplayKept{ID: d.ID, Reason: v.Reason, Error: v.Error})
			continue
		}
		key := fmt.Sprintf("%s\x00%d", v.Reading.DeviceID, v.Reading.Time.UnixMicro())
		if seen[key] {
			p.duplicates = append(p.duplicates, d.ID)
			continue
		}
		seen[key] = true
		p.idOf[record{d.Partition, d.Offset}] = d.ID
		p.byDevice[v.Reading.DeviceID] = append(p.byDevice[v.Reading.DeviceID], ingest.Reading{Partition: d.Partition, Offset: d.Offset, Reading: v.Reading})
	}
	return p
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

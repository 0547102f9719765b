package activities

import (
	"context"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/store/warehouse"
	"github.com/iot-etl/iot-etl/internal/domain/anomaly"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
)

// shardDetections scores a shard's detections against its ground truth as
// the transform writes them, a commit at a time. Score matches per device,
// so the scores of the devices each commit covers add up (anomaly.Combine)
// to what scoring the shard's flagged facts after the load gives.
type shardDetections struct {
	truth map[string][]anomaly.TruthEvent // by device, until scored
	// untransformed are the events of the shard's devices that have no
	// output (type or location unknown): found by nothing, they count in
	// the shard's last commit.
	untransformed []anomaly.TruthEvent
	pending       []anomaly.Detection // since the last commit
	devices       []string            // of the pending commit
}

// newShardDetections reads the ground truth of the shard's staged devices
// in w; devices are the shard's devices that the transform enriches.
func newShardDetections(ctx context.Context, run warehouse.Run, w batch.Window, shard int, devices []warehouse.ShardDevice) (*shardDetections, error) {
	truth, err := run.GroundTruth(ctx, w, shard)
	if err != nil {
		return nil, err
	}
	s := &shardDetections{truth: map[string][]anomaly.TruthEvent{}}
	known := make(map[string]bool, len(devices))
	for _, d := range devices {
		known[d.Device.ID] = true
	}
	for _, ev := range truthEvents(truth) {
		if known[ev.DeviceID] {
			s.truth[ev.DeviceID] = append(s.truth[ev.DeviceID], ev)
		} else {
			s.untransformed = append(s.untransformed, ev)
		}
	}
	return s, nil
}

// device starts the next device's output.
func (s *shardDetections) device(id string) { s.devices = append(s.devices, id) }

// add records one output row's evidence, if it has any.
func (s *shardDetections) add(e *transform.Enriched) {
	if kinds := e.Kinds(); len(kinds) > 0 {
		s.pending = append(s.pending, anomaly.Detection{DeviceID: e.DeviceID, Time: e.Time, Kinds: kinds})
	}
}

// commit scores the devices since the last commit (with the untransformed
// devices' events when last) and returns d with them added; d is not
// modified, for it may be in a heartbeat being sent.
func (s *shardDetections) commit(d *Detection, last bool) *Detection {
	var events []anomaly.TruthEvent
	for _, id := range s.devices {
		events = append(events, s.truth[id]...)
	}
	if last {
		events = append(events, s.untransformed...)
	}
	out := &Detection{
		Truth: d.Truth || len(events) > 0,
		Kinds: anomaly.Combine(d.Kinds, anomaly.Score(events, s.pending, time.Minute)),
	}
	s.pending, s.devices = s.pending[:0], s.devices[:0]
	return out
}

// truthEvents are the injected anomalies as anomaly.Score takes them.
func truthEvents(truth []warehouse.TruthEvent) []anomaly.TruthEvent {
	out := make([]anomaly.TruthEvent, len(truth))
	for i, t := range truth {
		out[i] = anomaly.TruthEvent{DeviceID: t.DeviceID, Kind: anomaly.Kind(t.Kind), Start: t.Start, End: t.End}
	}
	return out
}

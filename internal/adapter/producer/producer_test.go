package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
)

// fakeClock is a wall clock that only moves when the simulator sleeps.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
	// cancelAfter cancels cancel on that many sleeps (0: never).
	cancelAfter int
	cancel      context.CancelFunc
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	if c.cancelAfter > 0 && len(c.sleeps) == c.cancelAfter {
		c.cancel()
	}
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// memoryPublisher keeps every message and acknowledges it at once, or fails
// the message numbered failAt (1-based; 0 never).
type memoryPublisher struct {
	mu      sync.Mutex
	msgs    []Message
	failAt  int
	flushes int
}

func (p *memoryPublisher) Publish(_ context.Context, m Message, done func(error)) {
	p.mu.Lock()
	p.msgs = append(p.msgs, m)
	n := len(p.msgs)
	p.mu.Unlock()
	if n == p.failAt {
		done(fmt.Errorf("broker said no to message %d", n))
		return
	}
	done(nil)
}

func (p *memoryPublisher) Flush(context.Context) error {
	p.mu.Lock()
	p.flushes++
	p.mu.Unlock()
	return nil
}

func fleetSet(f simulate.Fleet) *reading.DeviceSet {
	ids := make([]string, len(f.Devices))
	for i, d := range f.Devices {
		ids[i] = d.ID
	}
	return reading.NewDeviceSet(ids)
}

// decodeAll tallies what the consumer's decoder makes of msgs.
func decodeAll(t *testing.T, msgs []Message, devices *reading.DeviceSet) (good int64, bad map[reading.Reason]int64) {
	t.Helper()
	bad = map[reading.Reason]int64{}
	for _, m := range msgs {
		// Kafka keeps record timestamps in milliseconds.
		r, _, err := reading.Decode(m.Value, m.Timestamp.Truncate(time.Millisecond), reading.Limits{Devices: devices})
		if err != nil {
			reason, ok := reading.RejectionReason(err)
			if !ok {
				t.Fatalf("decode %q: %v is not a rejection", m.Value, err)
			}
			bad[reason]++
			continue
		}
		if r.DeviceID != string(m.Key) {
			t.Errorf("message keyed %s carries device %s", m.Key, r.DeviceID)
		}
		good++
	}
	return good, bad
}

func TestBadMessagesDecodeWithTheirReason(t *testing.T) {
	t.Parallel()
	fleet := simulate.NewFleet(7, 12)
	devices := fleetSet(fleet)
	at := time.Date(2026, 11, 28, 14, 0, 0, 123_000_000, time.UTC)
	readings := map[string]reading.Reading{
		"with value": {Time: at, DeviceID: "HUM-002", Value: 41.275, ValueValid: true, Battery: 73.5, RSSI: -70},
		"null value": {Time: at, DeviceID: "CO2-001", Battery: 12, RSSI: -81},
	}
	for name, r := range readings {
		good := reading.Encode(nil, r, 9)
		if _, _, err := reading.Decode(good, at, reading.Limits{Devices: devices}); err != nil {
			t.Fatalf("%s: the uncorrupted message is rejected: %v", name, err)
		}
		for _, want := range BadReasons() {
			t.Run(name+"/"+string(want), func(t *testing.T) {
				t.Parallel()
				msg := appendBad([]byte("prefix"), want, r, 9)
				if !bytes.HasPrefix(msg, []byte("prefix")) {
					t.Fatalf("appendBad overwrote dst: %q", msg)
				}
				msg = msg[len("prefix"):]
				_, _, err := reading.Decode(msg, at, reading.Limits{Devices: devices})
				got, _ := reading.RejectionReason(err)
				if got != want {
					t.Errorf("Decode(%q) = %v, want reason %s", msg, err, want)
				}
				if bytes.IndexByte(msg, '\n') >= 0 {
					t.Errorf("message %q holds a newline: test mode prints one message a line", msg)
				}
				if want == reading.ReasonOversized && len(msg) != oversizedBytes {
					t.Errorf("oversized message is %d bytes, want %d", len(msg), oversizedBytes)
				}
			})
		}
	}
}

func TestMixCountsExactly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seed      int64
		ratio     float64
		n         int64
		wantTotal int64
	}{
		{seed: 1, ratio: 0, n: 10_000, wantTotal: 0},
		{seed: 1, ratio: 0.1, n: 1000, wantTotal: 100},
		{seed: 2, ratio: 0.1, n: 1000, wantTotal: 100},
		{seed: 3, ratio: 0.09, n: 1000, wantTotal: 90},
		{seed: 4, ratio: 1, n: 50, wantTotal: 50},
		{seed: 5, ratio: 0.25, n: 36, wantTotal: 9},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("seed%d_ratio%g_n%d", tt.seed, tt.ratio, tt.n), func(t *testing.T) {
			t.Parallel()
			m := NewMix(tt.seed, tt.ratio)
			walked := map[reading.Reason]int64{}
			for i := range tt.n {
				if reason, bad := m.Bad(i); bad {
					walked[reason]++
				}
			}
			if diff := cmp.Diff(walked, m.Count(tt.n)); diff != "" {
				t.Errorf("Count disagrees with Bad (-walked +Count):\n%s", diff)
			}
			var total int64
			for _, c := range walked {
				total += c
			}
			if total != tt.wantTotal {
				t.Errorf("%d bad of %d, want %d", total, tt.n, tt.wantTotal)
			}
			// The reasons take turns: no two counts differ by more than one.
			if tt.wantTotal >= int64(len(BadReasons())) {
				for _, reason := range BadReasons() {
					if c := walked[reason]; c < tt.wantTotal/9 || c > tt.wantTotal/9+1 {
						t.Errorf("reason %s: %d of %d", reason, c, tt.wantTotal)
					}
				}
			}
		})
	}
}

func TestRunPacesExactlyAndCountsWhatDecodeSees(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pub := &memoryPublisher{}
	sim, err := New(Options{
		Seed: 42, Devices: 30, Rate: 500, MaxMessages: 1000, Duration: time.Hour,
		AnomalyRatio: 0.05, BadRatio: 0.09, Now: clock.Now, Sleep: clock.Sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sim.Run(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.msgs) != 1000 || rep.Sent != 1000 || rep.Failed != 0 || rep.Stopped || pub.flushes != 1 {
		t.Fatalf("published %d, report %+v, %d flushes; want 1000 sent and one flush", len(pub.msgs), rep, pub.flushes)
	}
	// The last message (number 999) is due at 999/500 s; batching by the
	// minimum pause may send it up to one pause later.
	if due := 1998 * time.Millisecond; rep.Elapsed < due || rep.Elapsed > due+DefaultMinPause {
		t.Errorf("elapsed %s, want %s to %s", rep.Elapsed, due, due+DefaultMinPause)
	}
	// No busy waiting: every pause is at least the minimum, and there are
	// no more pauses than batches of the minimum length.
	for _, d := range clock.sleeps {
		if d < DefaultMinPause {
			t.Fatalf("slept %s, less than %s", d, DefaultMinPause)
		}
	}
	if len(clock.sleeps) > 2000/5+1 {
		t.Errorf("%d sleeps for 2 s of sending", len(clock.sleeps))
	}

	good, bad := decodeAll(t, pub.msgs, fleetSet(sim.Fleet()))
	if diff := cmp.Diff(rep.Bad, bad); diff != "" {
		t.Errorf("bad per reason (-report +decoded):\n%s", diff)
	}
	if diff := cmp.Diff(sim.Mix().Count(1000), bad); diff != "" {
		t.Errorf("bad per reason (-mix +decoded):\n%s", diff)
	}
	if rep.BadTotal() != 90 || good != 910 || rep.Good != 910 {
		t.Errorf("report bad %d good %d, decoded good %d; want 90, 910, 910", rep.BadTotal(), rep.Good, good)
	}
	// Anomalies are a random share: check the report against the messages.
	var nulls int64
	for _, m := range pub.msgs {
		if bytes.Contains(m.Value, []byte(`"value":null`)) {
			nulls++
		}
	}
	if rep.Anomalous[simulate.Null] == 0 || nulls < rep.Anomalous[simulate.Null] {
		t.Errorf("%d null-value messages, report says %d null anomalies", nulls, rep.Anomalous[simulate.Null])
	}
}

func TestRunIsDeterministic(t *testing.T) {
	t.Parallel()
	run := func(seed int64) []Message {
		clock := newFakeClock()
		pub := &memoryPublisher{}
		sim, err := New(Options{
			Seed: seed, Devices: 13, Rate: 2000, MaxMessages: 600,
			AnomalyRatio: 0.1, BadRatio: 0.05, Now: clock.Now, Sleep: clock.Sleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sim.Run(context.Background(), pub); err != nil {
			t.Fatal(err)
		}
		return pub.msgs
	}
	a, b, other := run(5), run(5), run(6)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, same clock, different messages (-first +second):\n%s", diff)
	}
	if cmp.Equal(a, other) {
		t.Error("seeds 5 and 6 gave the same messages")
	}
}

func TestRunReplaysEventTimeRoundByRound(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	pub := &memoryPublisher{}
	sim, err := New(Options{Seed: 9, Devices: 10, MaxMessages: 100, Start: start, Step: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sim.Run(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 100 {
		t.Fatalf("sent %d, want 100", rep.Sent)
	}
	seen := map[string]int64{} // device -> rounds seen
	for i, m := range pub.msgs {
		if want := start.Add(time.Duration(i) * 6 * time.Second); !m.Timestamp.Equal(want) {
			t.Fatalf("message %d stamped %s, want %s", i, m.Timestamp, want)
		}
		r, seq, err := reading.Decode(m.Value, m.Timestamp, reading.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		round := int64(i / 10)
		if seq != round+1 || seen[r.DeviceID] != round || !r.Time.Equal(m.Timestamp) {
			t.Fatalf("message %d: %s seq %d at %s, want seq %d, once per round", i, r.DeviceID, seq, r.Time, round+1)
		}
		seen[r.DeviceID]++
	}
	if len(seen) != 10 {
		t.Errorf("%d devices sent, want 10", len(seen))
	}
}

func TestRunStopsCleanlyWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := newFakeClock()
	clock.cancelAfter, clock.cancel = 10, cancel
	pub := &memoryPublisher{}
	sim, err := New(Options{Seed: 1, Devices: 5, Rate: 100, Now: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sim.Run(ctx, pub)
	if err != nil {
		t.Fatalf("a cancelled run is a clean stop, got %v", err)
	}
	// Nine pauses of 10 ms each: messages 0..9 were due.
	if !rep.Stopped || rep.Sent != 10 || int64(len(pub.msgs)) != rep.Sent || pub.flushes != 1 {
		t.Errorf("report %+v, %d published, %d flushes; want stopped after 10 and flushed", rep, len(pub.msgs), pub.flushes)
	}
}

func TestRunStopsAtDuration(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	pub := &memoryPublisher{}
	sim, err := New(Options{Seed: 1, Devices: 7, Rate: 100, Duration: 3 * time.Second, Now: clock.Now, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sim.Run(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	// Messages 0..299 are due before 3 s.
	if rep.Sent != 300 || rep.Elapsed != 3*time.Second || rep.Stopped {
		t.Errorf("sent %d in %s (stopped %v), want 300 in 3s", rep.Sent, rep.Elapsed, rep.Stopped)
	}
}

func TestRunFailsOnThePublishersError(t *testing.T) {
	t.Parallel()
	pub := &memoryPublisher{failAt: 5}
	sim, err := New(Options{Seed: 1, Devices: 3, MaxMessages: 100})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sim.Run(context.Background(), pub)
	if err == nil || !strings.Contains(err.Error(), "broker said no to message 5") {
		t.Fatalf("err = %v, want the publisher's error", err)
	}
	if rep.Failed != 1 || rep.Sent != 4 || len(pub.msgs) != 5 {
		t.Errorf("report %+v with %d published, want 4 sent, 1 failed, nothing after the failure", rep, len(pub.msgs))
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no devices", Options{Devices: 0}, "0 devices"},
		{"negative rate", Options{Devices: 1, Rate: -1}, "rate -1"},
		{"bad ratio", Options{Devices: 1, BadRatio: 1.5}, "bad ratio 1.5"},
		{"anomaly ratio", Options{Devices: 1, AnomalyRatio: -0.1}, "anomaly ratio -0.1"},
		{"replay unpaced", Options{Devices: 1, Start: time.Unix(0, 0)}, "needs a step or a rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%+v) = %v, want an error about %q", tt.opts, err, tt.want)
			}
		})
	}
}

func TestWriterPublisherWritesOneLinePerMessage(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	pub := NewWriterPublisher(&out)
	sim, err := New(Options{Seed: 3, Devices: 4, MaxMessages: 90, BadRatio: 0.2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Run(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 90 {
		t.Fatalf("%d lines, want 90", len(lines))
	}
	ids := fleetSet(sim.Fleet())
	for _, l := range lines {
		key, _, ok := strings.Cut(l, " ")
		if _, known := ids.Lookup([]byte(key)); !ok || !known {
			t.Fatalf("line %q does not start with a fleet device id", l)
		}
	}
}

func TestPublisherErrorIsWrapped(t *testing.T) {
	t.Parallel()
	pub := &memoryPublisher{failAt: 1}
	sim, _ := New(Options{Seed: 1, Devices: 1, MaxMessages: 1})
	_, err := sim.Run(context.Background(), pub)
	if err == nil || errors.Unwrap(err) == nil {
		t.Fatalf("err = %v, want a wrapped publisher error", err)
	}
}

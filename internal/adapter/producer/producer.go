// Package producer is the IoT stream simulator: it turns the seeded fleet of
// internal/domain/simulate into a paced stream of JSON readings (reading.Encode),
// keyed by device id, with a configurable share of anomalous readings and of
// malformed messages, and hands them to a Publisher: franz-go in production,
// a writer in test mode, a fake in tests. Time and sleeping are injected, so
// the pacing is testable without waiting.
package producer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
)

// Defaults of the zero fields of Options.
const (
	// DefaultMinPause is the shortest pause between two batches of a paced
	// run: at high rates the messages due in that time go out together
	// instead of one sleep per message.
	DefaultMinPause = 5 * time.Millisecond
	// DefaultMaxInFlight bounds the messages handed to the publisher and not
	// yet acknowledged; it stays below kafka.ProducerOptions' buffer of
	// 100,000 records, so a publish never blocks on a full buffer.
	DefaultMaxInFlight = 50_000
	// DefaultFlushTimeout bounds the final wait for acknowledgements.
	DefaultFlushTimeout = 30 * time.Second
	// unpacedBatch is how many messages an unpaced run generates between
	// two looks at the context.
	unpacedBatch = 1024
)

// Options say what to simulate. Zero values of the tuning fields take the
// defaults above.
type Options struct {
	Seed    int64 // the fleet and every random choice; use the seed of `starter seed`
	Devices int   // fleet size; the devices are simulate.NewFleet(Seed, Devices)

	Rate        float64       // messages per second over all devices; 0 sends as fast as the publisher takes them
	Duration    time.Duration // stop after this much wall time; 0 for no limit
	MaxMessages int64         // stop after this many messages; 0 for no limit

	AnomalyRatio float64 // share of readings with an injected anomaly (spike, out of range, null value)
	BadRatio     float64 // share of malformed messages, spread over BadReasons (see Mix)

	// Start, when set, replays event time instead of following the wall
	// clock: message i is stamped Start + i·Step, and its record timestamp
	// is the same instant. Step defaults to 1/Rate. Without Start each
	// message is stamped with Now() when it is generated.
	Start time.Time
	Step  time.Duration

	Now   func() time.Time                                 // the wall clock; time.Now when nil
	Sleep func(ctx context.Context, d time.Duration) error // sleeps d or until ctx ends; a timer when nil

	MinPause      time.Duration
	MaxInFlight   int
	FlushTimeout  time.Duration
	Progress      func(Report) // called about every ProgressEvery with the counts so far; nil for none
	ProgressEvery time.Duration
}

// Report counts what a run published. Counts are of messages the publisher
// acknowledged, except Failed.
type Report struct {
	Sent      int64                    // acknowledged messages: Good + bad
	Good      int64                    // well-formed readings, anomalous ones included
	Anomalous map[simulate.Kind]int64  // good readings with an injected anomaly, per kind
	Bad       map[reading.Reason]int64 // malformed messages, per the reason Decode will give
	Failed    int64                    // messages the publisher rejected
	Elapsed   time.Duration            // from the first message to the last acknowledgement
	Stopped   bool                     // the context ended the run (Ctrl-C) before its limits
}

// BadTotal is the number of malformed messages sent.
func (r Report) BadTotal() int64 { return sumOf(r.Bad) }

// AnomalousTotal is the number of anomalous readings sent.
func (r Report) AnomalousTotal() int64 { return sumOf(r.Anomalous) }

// PerSecond is the rate messages were acknowledged at.
func (r Report) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

func sumOf[K comparable](m map[K]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Simulator generates the stream of one fleet.
type Simulator struct {
	opts  Options
	fleet simulate.Fleet
	gen   *simulate.Generator
	mix   Mix
	keys  [][]byte // device ids as record keys, shared by all records
}

// New validates opts and prepares the fleet.
func New(opts Options) (*Simulator, error) {
	switch {
	case opts.Devices < 1:
		return nil, fmt.Errorf("producer: %d devices: want at least 1", opts.Devices)
	case opts.Rate < 0 || math.IsNaN(opts.Rate) || math.IsInf(opts.Rate, 0):
		return nil, fmt.Errorf("producer: rate %g: want a finite number of messages/s, 0 for unpaced", opts.Rate)
	case opts.Duration < 0:
		return nil, fmt.Errorf("producer: duration %s: want 0 (no limit) or more", opts.Duration)
	case opts.MaxMessages < 0:
		return nil, fmt.Errorf("producer: max messages %d: want 0 (no limit) or more", opts.MaxMessages)
	case !(opts.AnomalyRatio >= 0 && opts.AnomalyRatio <= 1):
		return nil, fmt.Errorf("producer: anomaly ratio %g: want between 0 and 1", opts.AnomalyRatio)
	case !(opts.BadRatio >= 0 && opts.BadRatio <= 1):
		return nil, fmt.Errorf("producer: bad ratio %g: want between 0 and 1", opts.BadRatio)
	case opts.Step < 0:
		return nil, fmt.Errorf("producer: step %s: want a positive duration", opts.Step)
	}
	if !opts.Start.IsZero() && opts.Step == 0 {
		if opts.Rate == 0 {
			return nil, errors.New("producer: replaying event time needs a step or a rate")
		}
		opts.Step = time.Duration(float64(time.Second) / opts.Rate)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.MinPause <= 0 {
		opts.MinPause = DefaultMinPause
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 10 * time.Second
	}
	fleet := simulate.NewFleet(opts.Seed, opts.Devices)
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	s := &Simulator{opts: opts, fleet: fleet, gen: gen, mix: NewMix(opts.Seed, opts.BadRatio)}
	for _, d := range fleet.Devices {
		s.keys = append(s.keys, []byte(d.ID))
	}
	return s, nil
}

// Fleet is the simulated fleet: the registry `starter seed` writes for the
// same seed and device count.
func (s *Simulator) Fleet() simulate.Fleet { return s.fleet }

// Mix is the run's choice of malformed messages.
func (s *Simulator) Mix() Mix { return s.mix }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Message categories, the index of a tally: normal, then one per anomaly
// kind, then one per bad reason.
var (
	anomalyKinds = []simulate.Kind{simulate.Spike, simulate.OutOfRange, simulate.Null}
	badReasons   = BadReasons()
)

const catNormal = 0

func catAnomaly(k simulate.Kind) int {
	for i, kk := range anomalyKinds {
		if kk == k {
			return 1 + i
		}
	}
	return catNormal
}

func catBad(r reading.Reason) int {
	for i, rr := range badReasons {
		if rr == r {
			return 1 + len(anomalyKinds) + i
		}
	}
	panic("producer: unknown bad reason " + string(r))
}

// tally counts outcomes; the publisher's callbacks update it concurrently.
type tally struct {
	acked    [1 + 3 + 9]atomic.Int64
	failed   atomic.Int64
	inFlight atomic.Int64
	errOnce  sync.Once
	firstErr error
	hasErr   atomic.Bool
	done     []func(error) // one callback per category, built once
}

func newTally() *tally {
	t := &tally{}
	t.done = make([]func(error), len(t.acked))
	for cat := range t.acked {
		t.done[cat] = func(err error) {
			if err != nil {
				t.failed.Add(1)
				t.errOnce.Do(func() { t.firstErr = err })
				t.hasErr.Store(true)
			} else {
				t.acked[cat].Add(1)
			}
			t.inFlight.Add(-1)
		}
	}
	return t
}

func (t *tally) report() Report {
	r := Report{Anomalous: map[simulate.Kind]int64{}, Bad: map[reading.Reason]int64{}, Failed: t.failed.Load()}
	r.Good = t.acked[catNormal].Load()
	for _, k := range anomalyKinds {
		if n := t.acked[catAnomaly(k)].Load(); n > 0 {
			r.Anomalous[k] = n
			r.Good += n
		}
	}
	r.Sent = r.Good
	for _, reason := range badReasons {
		if n := t.acked[catBad(reason)].Load(); n > 0 {
			r.Bad[reason] = n
			r.Sent += n
		}
	}
	return r
}

// Run publishes the stream until Duration or MaxMessages is reached, the
// publisher fails a message, or ctx ends, then flushes and reports. Ending
// by ctx (Ctrl-C) is a clean stop: the messages already handed over are
// flushed, Report.Stopped is set and the error is nil. A failed message
// stops the run with an error that carries the first failure.
//
// Message i goes to the devices in a fresh seeded order every round of
// len(devices) messages, so each device sends once per round with its seq
// (1, 2, ...) counting its rounds. The readings come from the generator's
// signal model at the message's time, with the noise and the anomalies
// drawn from one seeded random stream in message order: the same options
// and the same clock give byte-identical messages.
func (s *Simulator) Run(ctx context.Context, pub Publisher) (Report, error) {
	o := s.opts
	n := len(s.fleet.Devices)
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x57E4A11))
	order := make([]int, n)
	t := newTally()

	start := o.Now()
	lastProgress := start
	var (
		i       int64
		stopped bool
		buf     []byte
	)
	emit := func() {
		round := i / int64(n)
		if i%int64(n) == 0 {
			shuffleRound(order, o.Seed, round)
		}
		dev := s.fleet.Devices[order[i%int64(n)]]
		var at time.Time
		if o.Start.IsZero() {
			at = o.Now()
		} else {
			at = o.Start.Add(time.Duration(i) * o.Step)
		}
		r, kind := s.gen.LiveKind(dev, at, rng, o.AnomalyRatio)
		seq := round + 1
		buf = make([]byte, 0, 192)
		cat := catAnomaly(kind)
		if reason, bad := s.mix.Bad(i); bad {
			buf = appendBad(buf, reason, r, seq)
			cat = catBad(reason)
		} else {
			buf = reading.Encode(buf, r, seq)
		}
		t.inFlight.Add(1)
		pub.Publish(ctx, Message{Key: s.keys[order[i%int64(n)]], Value: buf, Timestamp: at}, t.done[cat])
		i++
	}

	for (o.MaxMessages <= 0 || i < o.MaxMessages) && !t.hasErr.Load() {
		if ctx.Err() != nil {
			stopped = true
			break
		}
		now := o.Now()
		elapsed := now.Sub(start)
		if o.Duration > 0 && elapsed >= o.Duration {
			break
		}
		if o.Progress != nil && now.Sub(lastProgress) >= o.ProgressEvery {
			lastProgress = now
			rep := t.report()
			rep.Elapsed = elapsed
			o.Progress(rep)
		}
		// due is how many messages should have been handed over by now.
		due := i + unpacedBatch
		if o.Rate > 0 {
			due = int64(elapsed.Seconds()*o.Rate) + 1
		}
		if o.MaxMessages > 0 {
			due = min(due, o.MaxMessages)
		}
		for i < due && t.inFlight.Load() < int64(o.MaxInFlight) && !t.hasErr.Load() {
			emit()
		}
		if o.MaxMessages > 0 && i >= o.MaxMessages {
			break
		}

		var pause time.Duration
		switch {
		case t.inFlight.Load() >= int64(o.MaxInFlight):
			pause = o.MinPause // wait for acknowledgements
		case o.Rate > 0:
			// Message i is due when elapsed·Rate ≥ i; rounding up never
			// wakes before it.
			next := start.Add(time.Duration(math.Ceil(float64(i) / o.Rate * float64(time.Second))))
			pause = max(next.Sub(o.Now()), o.MinPause)
		}
		if o.Duration > 0 {
			pause = min(pause, start.Add(o.Duration).Sub(o.Now()))
		}
		if pause > 0 {
			if err := o.Sleep(ctx, pause); err != nil {
				stopped = true
				break
			}
		}
	}

	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.FlushTimeout)
	defer cancel()
	flushErr := pub.Flush(flushCtx)
	rep := t.report()
	rep.Elapsed = o.Now().Sub(start)
	rep.Stopped = stopped
	switch {
	case rep.Failed > 0:
		return rep, fmt.Errorf("producer: %d of %d messages failed; first: %w", rep.Failed, i, t.firstErr)
	case flushErr != nil:
		return rep, fmt.Errorf("producer: flush: %w (%d of %d messages unacknowledged)", flushErr, i-rep.Sent, i)
	case rep.Sent != i:
		return rep, fmt.Errorf("producer: %d of %d messages unacknowledged after the flush", i-rep.Sent, i)
	}
	return rep, nil
}

// shuffleRound fills order with round's seeded permutation of the devices.
func shuffleRound(order []int, seed, round int64) {
	for j := range order {
		order[j] = j
	}
	rng := rand.New(rand.NewPCG(uint64(seed)^0x0DE71CE5, uint64(round)))
	rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
}

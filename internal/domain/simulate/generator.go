package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
	_ "time/tzdata" // the site time zones resolve on machines without zoneinfo

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// Options tune a Generator. Start from DefaultOptions: the zero value is
// rejected because a zero interval means nothing.
type Options struct {
	// Interval between two readings of one device; it must divide 24h and
	// lie between 1s and 15m.
	Interval time.Duration
	Rates    Rates
}

// DefaultOptions is one reading a minute with DefaultRates.
func DefaultOptions() Options { return Options{Interval: time.Minute, Rates: DefaultRates()} }

// The event sizes, in time (scaled to slots with the interval) or readings.
const (
	// Every event starts and ends at least this far from the day's edges
	// and from any other event of the device-day, which gives a detector a
	// clean hour of history before each one.
	eventSeparation = 70 * time.Minute
	// The spike rule measures the standard deviation over this window.
	historyWindow = 60 * time.Minute
	minGapSlots   = 4
	maxGapTime    = 120 * time.Minute
	minStuck      = 20
	maxStuck      = 60
	minDriftTime  = 6 * time.Hour
	maxDriftTime  = 18 * time.Hour
	// A spike is at least spikeMinFactor times its threshold, max(2 x
	// MaxRatePerMin, 6 x std of the last hour), so a detector sees it even
	// against the neighbouring readings.
	spikeMinFactor = 1.5
	spikeMaxFactor = 3.0
)

// Generator produces the readings and ground truth of a fleet. It is safe
// for concurrent use.
type Generator struct {
	seed       uint64
	interval   time.Duration
	rates      Rates
	slots      int // slots per UTC day
	separation int // eventSeparation in slots
	window     int // historyWindow in slots
	maxGap     int // longest outage in slots
	envs       map[string]*env
	models     map[string]*model
	adHoc      sync.Map // device id -> *model, for devices outside the fleet
	fallbackTZ *time.Location
}

// NewGenerator prepares the generator of fleet, seeded by fleet.Seed.
func NewGenerator(fleet Fleet, opts Options) (*Generator, error) {
	iv := opts.Interval
	switch {
	case iv < time.Second || iv > 15*time.Minute:
		return nil, fmt.Errorf("simulate: interval %s: want between 1s and 15m", iv)
	case (24*time.Hour)%iv != 0 || iv%time.Second != 0:
		return nil, fmt.Errorf("simulate: interval %s: want a whole number of seconds that divides 24h", iv)
	}
	for _, r := range []float64{opts.Rates.Spike, opts.Rates.OutOfRange, opts.Rates.Stuck, opts.Rates.Drift, opts.Rates.Null, opts.Rates.Gap} {
		if r < 0 || r > 50 || math.IsNaN(r) {
			return nil, fmt.Errorf("simulate: event rate %g per device-day: want between 0 and 50", r)
		}
	}
	if d := opts.Rates.Dropout; d < 0 || d > 0.2 || math.IsNaN(d) {
		return nil, fmt.Errorf("simulate: dropout probability %g: want between 0 and 0.2", d)
	}
	g := &Generator{
		seed:       uint64(fleet.Seed),
		interval:   iv,
		rates:      opts.Rates,
		slots:      int(24 * time.Hour / iv),
		separation: int((eventSeparation + iv - 1) / iv),
		window:     max(2, int((historyWindow+iv-1)/iv)),
		maxGap:     max(minGapSlots, int(maxGapTime/iv)),
		envs:       map[string]*env{},
		models:     map[string]*model{},
	}
	var err error
	if g.fallbackTZ, err = time.LoadLocation(sites[0].Timezone); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	for _, loc := range fleet.Locations {
		tz, err := time.LoadLocation(loc.Timezone)
		if err != nil {
			return nil, fmt.Errorf("simulate: location %s: %w", loc.ID, err)
		}
		g.envs[loc.ID] = newEnv(g.seed, loc, tz)
	}
	for _, dev := range fleet.Devices {
		if _, ok := typeIndexByCode[dev.TypeCode]; !ok {
			return nil, fmt.Errorf("simulate: device %s: type %q is not in reading.Catalog", dev.ID, dev.TypeCode)
		}
		e, ok := g.envs[dev.LocationID]
		if !ok {
			return nil, fmt.Errorf("simulate: device %s: location %q is not in the fleet", dev.ID, dev.LocationID)
		}
		g.models[dev.ID] = newModel(g.seed, dev, e)
	}
	return g, nil
}

// Interval is the time between two readings of one device.
func (g *Generator) Interval() time.Duration { return g.interval }

// SlotsPerDay is how many readings a device would send in a UTC day with
// nothing missing.
func (g *Generator) SlotsPerDay() int { return g.slots }

// model returns the device's model; a device outside the fleet gets one
// built on the fly, in a location derived from its LocationID.
func (g *Generator) model(dev reading.Device) *model {
	if m, ok := g.models[dev.ID]; ok {
		return m
	}
	if m, ok := g.adHoc.Load(dev.ID); ok && m.(*model).typ.Code == dev.TypeCode {
		return m.(*model)
	}
	e, ok := g.envs[dev.LocationID]
	if !ok {
		st := sites[hashString(dev.LocationID)%uint64(len(sites))]
		e = newEnv(g.seed, reading.Location{ID: dev.LocationID, Site: st.Name}, g.fallbackTZ)
		if tz, err := time.LoadLocation(st.Timezone); err == nil {
			e.tz = tz
		}
	}
	m := newModel(g.seed, dev, e)
	g.adHoc.Store(dev.ID, m)
	return m
}

// DeviceDay is what one device produced in one UTC day.
type DeviceDay struct {
	DeviceID  string
	Day       time.Time // 00:00 UTC
	Slots     int       // readings the day would hold with nothing missing
	Readings  []reading.Reading
	Anomalies []Anomaly // in start order
	Dropouts  int       // isolated missing readings, not in Anomalies
	Missing   int       // Slots - len(Readings): dropouts plus outage slots
}

// slot marks, one per slot of a day.
const (
	slotNormal uint8 = iota
	slotSpike
	slotOutOfRange
	slotStuck
	slotDrift
	slotNull
	slotGap     // missing: part of an outage
	slotDropout // missing: isolated dropout
)

var slotOf = map[Kind]uint8{Spike: slotSpike, OutOfRange: slotOutOfRange, Stuck: slotStuck, Drift: slotDrift, Null: slotNull, Gap: slotGap}

// event is a placed anomaly, in slots of its day.
type event struct {
	kind       Kind
	start, end int     // first and last slot
	offset     float64 // spike and out_of_range: value offset; drift: peak offset
}

// Day generates device dev's readings and ground truth for the UTC day that
// contains day. The result depends only on the seed, the device and the day.
func (g *Generator) Day(dev reading.Device, day time.Time) DeviceDay {
	m := g.model(dev)
	day = day.UTC().Truncate(24 * time.Hour)
	dayNumber := day.Unix() / 86400
	rng := rand.New(rand.NewPCG(m.key, combine(m.key, uint64(dayNumber), 0xDA7)))
	n := g.slots

	// 1. The normal values: signal plus truncated Gaussian noise.
	off0, off1 := m.env.utcOffset(day), m.env.utcOffset(day.Add(24*time.Hour-time.Nanosecond))
	base := make([]float64, n)
	for i := range base {
		t := day.Add(time.Duration(i) * g.interval)
		off := off0
		if off0 != off1 {
			off = m.env.utcOffset(t)
		}
		base[i] = m.signal(t, off) + m.sigma*truncatedNormal(rng)
	}

	// 2. The events.
	events := g.place(m, base, rng)
	marks := make([]uint8, n)
	for _, ev := range events {
		for i := ev.start; i <= ev.end; i++ {
			marks[i] = slotOf[ev.kind]
		}
	}

	// 3. Dropouts: Rates.Dropout of the day's slots on average, isolated,
	// never at the day's edges, never in an event or in the clean hour
	// before one.
	protected := make([]bool, n)
	protected[0], protected[n-1] = true, true
	for _, ev := range events {
		for i := max(0, ev.start-g.window-1); i <= min(n-1, ev.end+1); i++ {
			protected[i] = true
		}
	}
	dropouts := 0
	for range poisson(rng, g.rates.Dropout*float64(n)) {
		// A few tries: about three quarters of the slots are eligible.
		for range 16 {
			i := 1 + rng.IntN(n-2)
			if !protected[i] && marks[i] == slotNormal && marks[i-1] != slotDropout && marks[i+1] != slotDropout {
				marks[i] = slotDropout
				dropouts++
				break
			}
		}
	}

	// 4. Emit the readings, slot by slot.
	out := DeviceDay{DeviceID: dev.ID, Day: day, Slots: n, Dropouts: dropouts}
	out.Readings = make([]reading.Reading, 0, n)
	qlo, qhi := int64(math.Ceil(m.lo*1000)), int64(math.Floor(m.hi*1000))
	var (
		prevQ, stuckQ int64
		inStuck       bool
		evIdx         int // the event covering or following slot i
	)
	for i := 0; i < n; i++ {
		rssi := m.rssiBase + math.Max(-4, math.Min(4, 1.2*rng.NormFloat64()))
		mark := marks[i]
		for evIdx < len(events) && events[evIdx].end < i {
			evIdx++
		}
		if mark == slotGap || mark == slotDropout {
			continue
		}
		t := day.Add(time.Duration(i) * g.interval)
		r := reading.Reading{Time: t, DeviceID: dev.ID, ValueValid: true, Battery: m.battery(t), RSSI: int32(math.Round(rssi))}
		var q int64
		switch mark {
		case slotNull:
			r.ValueValid = false
			out.Readings = append(out.Readings, r)
			continue
		case slotSpike, slotOutOfRange:
			q = quantize(base[i] + events[evIdx].offset)
		case slotStuck:
			if !inStuck {
				stuckQ = prevQ
			}
			q = stuckQ
		default: // normal or drifting
			v := base[i]
			if mark == slotDrift {
				ev := events[evIdx]
				v += ev.offset * float64(i-ev.start+1) / float64(ev.end-ev.start+1)
			}
			q = min(max(quantize(v), qlo), qhi)
			exact := v * 1000
			// The first and last slots of a day have opposite parities, so
			// two days never join into a repeated value; inside the day a
			// value never repeats its predecessor by chance.
			if i == 0 && q%2 != 0 || i == n-1 && q%2 == 0 {
				q += towards(exact, q)
			}
			if i > 0 && q == prevQ {
				step := towards(exact, q)
				if i == n-1 {
					step *= 2
				}
				q += step
			}
		}
		inStuck = mark == slotStuck
		r.Value = float64(q) / 1000
		prevQ = q
		out.Readings = append(out.Readings, r)
	}
	out.Missing = n - len(out.Readings)

	// 5. The ground truth.
	for _, ev := range events {
		a := Anomaly{DeviceID: dev.ID, Kind: ev.kind, Start: day.Add(time.Duration(ev.start) * g.interval), End: day.Add(time.Duration(ev.end) * g.interval)}
		switch ev.kind {
		case Spike, OutOfRange:
			a.Magnitude = float64(quantize(base[ev.start]+ev.offset)-quantize(base[ev.start])) / 1000
		case Drift:
			a.Magnitude = round(ev.offset, 3)
		case Stuck, Gap:
			a.Magnitude = float64(ev.end - ev.start + 1)
		case Null:
			a.Magnitude = 1
		}
		out.Anomalies = append(out.Anomalies, a)
	}
	return out
}

// quantize rounds v to thousandths, as an integer count of them.
func quantize(v float64) int64 { return int64(math.Round(v * 1000)) }

// towards is +1 or -1: the step from q towards exact (thousandths).
func towards(exact float64, q int64) int64 {
	if exact >= float64(q) {
		return 1
	}
	return -1
}

// truncatedNormal is a standard normal draw clipped to ±4, so noise alone
// can never approach a rate-of-change threshold.
func truncatedNormal(rng *rand.Rand) float64 {
	return math.Max(-4, math.Min(4, rng.NormFloat64()))
}

// poisson draws from a Poisson distribution of mean lambda: Knuth's
// method for small means, a rounded normal approximation for large ones.
func poisson(rng *rand.Rand, lambda float64) int {
	switch {
	case lambda <= 0:
		return 0
	case lambda > 30:
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	limit, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= limit {
			return k
		}
		k++
	}
}

// place draws the day's events and places them: longest kinds first, each
// at a start chosen uniformly among the slots that keep the placement rules
// (and, for a spike, where a spike fits inside the valid range). An event
// without such a slot is dropped. The result is in start order.
func (g *Generator) place(m *model, base []float64, rng *rand.Rand) []event {
	n, sep := g.slots, g.separation
	var (
		placed  []event
		blocked = make([]bool, n)
		spikeT  []float64 // spike threshold per slot, computed on first use
	)
	for _, kind := range Kinds {
		count := poisson(rng, g.rates.of(kind))
		for range count {
			length := 1
			switch kind {
			case Drift:
				length = int(time.Duration(float64(minDriftTime)+rng.Float64()*float64(maxDriftTime-minDriftTime)) / g.interval)
			case Gap:
				length = minGapSlots + rng.IntN(g.maxGap-minGapSlots+1)
			case Stuck:
				length = minStuck + rng.IntN(maxStuck-minStuck+1)
			}
			first, last := sep, n-sep-length // start range, inclusive
			if last < first {
				continue
			}
			clear(blocked)
			for _, e := range placed {
				for s := max(first, e.start-sep-length+2); s <= min(last, e.end+sep-1); s++ {
					blocked[s] = true
				}
			}
			if kind == Spike && spikeT == nil {
				spikeT = g.spikeThresholds(m, base)
			}
			feasible := func(s int) bool {
				if blocked[s] {
					return false
				}
				if kind == Spike {
					up, down := (m.hi-base[s])/spikeT[s], (base[s]-m.lo)/spikeT[s]
					return max(up, down) >= spikeMinFactor
				}
				return true
			}
			options := 0
			for s := first; s <= last; s++ {
				if feasible(s) {
					options++
				}
			}
			if options == 0 {
				continue
			}
			pick := rng.IntN(options)
			start := first
			for s := first; s <= last; s++ {
				if feasible(s) {
					if pick == 0 {
						start = s
						break
					}
					pick--
				}
			}
			ev := event{kind: kind, start: start, end: start + length - 1}
			switch kind {
			case Spike:
				t := spikeT[start]
				up, down := (m.hi-base[start])/t, (base[start]-m.lo)/t
				sign := 1.0
				if up < spikeMinFactor || down >= spikeMinFactor && rng.IntN(2) == 0 {
					sign, up = -1, down
				}
				f := spikeMinFactor + rng.Float64()*(min(spikeMaxFactor, up)-spikeMinFactor)
				ev.offset = sign * f * t
			case OutOfRange:
				span := m.typ.ValidMax - m.typ.ValidMin
				beyond := (0.05 + 0.45*rng.Float64()) * span
				target := m.typ.ValidMax + beyond
				if rng.IntN(2) == 0 {
					target = m.typ.ValidMin - beyond
				}
				ev.offset = target - base[start]
			case Drift:
				peak := (5 + 10*rng.Float64()) * m.sigma
				if rng.IntN(2) == 0 {
					peak = -peak
				}
				ev.offset = peak
			}
			placed = append(placed, ev)
		}
	}
	sortEvents(placed)
	return placed
}

func sortEvents(evs []event) {
	for i := 1; i < len(evs); i++ {
		for j := i; j > 0 && evs[j].start < evs[j-1].start; j-- {
			evs[j], evs[j-1] = evs[j-1], evs[j]
		}
	}
}

// spikeThresholds is, per slot s, the smallest offset a spike at s must
// exceed: max(2 x MaxRatePerMin, 6 x the population standard deviation of
// the normal values in the window before s).
func (g *Generator) spikeThresholds(m *model, base []float64) []float64 {
	n, w := len(base), g.window
	t := make([]float64, n)
	// Shift by the first value so the running sums do not lose precision.
	ref := base[0]
	var sum, sumSq float64
	for s := 0; s < n; s++ {
		if s >= w {
			mean := sum / float64(w)
			variance := max(0, sumSq/float64(w)-mean*mean)
			t[s] = max(2*m.typ.MaxRatePerMin, 6*math.Sqrt(variance))
		} else {
			t[s] = math.Inf(1)
		}
		d := base[s] - ref
		sum += d
		sumSq += d * d
		if s >= w {
			old := base[s-w] - ref
			sum -= old
			sumSq -= old * old
		}
	}
	return t
}

// Days lists the UTC days of [from, to), both truncated to midnight UTC.
func Days(from, to time.Time) []time.Time {
	from, to = from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour)
	var days []time.Time
	for d := from; d.Before(to); d = d.Add(24 * time.Hour) {
		days = append(days, d)
	}
	return days
}

// Range generates the days of [from, to) of device dev in order and hands
// each to fn, stopping at fn's first error.
func (g *Generator) Range(dev reading.Device, from, to time.Time, fn func(DeviceDay) error) error {
	for _, d := range Days(from, to) {
		if err := fn(g.Day(dev, d)); err != nil {
			return err
		}
	}
	return nil
}

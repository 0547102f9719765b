package simulate

import (
	"math"
	"time"

	"github.com/iot-etl/iot-etl/internal/domain/reading"
)

// The signal model. Every function here is a pure function of the seed, the
// location or device, and the time: the random streams only add measurement
// noise and anomalies on top.
//
// Rates: value noise of amplitude A and period P minutes changes by at most
// 3A/P per minute, and an occupancy ramp of R hours by at most 1.5/(60R) of
// its amplitude per minute. The amplitudes below keep every type's normal
// minute-to-minute change under a fifth of its MaxRatePerMin.

// typeIndex is a device type's position in reading.Catalog.
type typeIndex int

const (
	typeTemp typeIndex = iota
	typeHum
	typePres
	typeCO2
	typeVib
	typePwr
)

var typeIndexByCode = map[string]typeIndex{"TEMP": typeTemp, "HUM": typeHum, "PRES": typePres, "CO2": typeCO2, "VIB": typeVib, "PWR": typePwr}

// baseNoise is the measurement noise (standard deviation, before the
// per-device factor of 0.7-1.5) of each type, in its unit. It is 1.5-3% of
// MaxRatePerMin, and noise is truncated at 4 sigma.
var baseNoise = [...]float64{typeTemp: 0.03, typeHum: 0.12, typePres: 0.04, typeCO2: 3, typeVib: 0.04, typePwr: 10}

// env is the shared environment of one location (one zone of one floor):
// every device there sees the same weather, HVAC and occupancy.
type env struct {
	site    *site
	tz      *time.Location
	siteKey uint64 // weather is shared by the whole site
	key     uint64

	setpointC  float64 // HVAC setpoint
	rhOffset   float64
	night      float64 // occupancy outside working hours
	weekend    float64 // fraction of the weekday occupancy on Saturdays and Sundays
	startH     float64 // local hour the morning ramp starts
	rampUpH    float64
	endH       float64 // local hour the evening ramp starts
	rampDownH  float64
	co2PeakPPM float64 // CO2 added at full occupancy
	pwrBaseW   float64
	pwrPeakW   float64 // power added at full machine load
	vibIdle    float64 // mm/s with machines idle
	vibGain    float64 // mm/s added at full load
}

func newEnv(seed uint64, loc reading.Location, tz *time.Location) *env {
	st := &sites[0]
	for i := range sites {
		if sites[i].Name == loc.Site {
			st = &sites[i]
		}
	}
	k := combine(seed, hashString(loc.ID), 0xE4F)
	h := func(n uint64) uint64 { return mix64(k + n) }
	return &env{
		site:       st,
		tz:         tz,
		siteKey:    combine(seed, hashString(st.Code), 0x517E),
		key:        k,
		setpointC:  between(h(1), 20.5, 22.5),
		rhOffset:   between(h(2), -5, 5),
		night:      between(h(3), 0.03, 0.08),
		weekend:    between(h(4), 0.05, 0.35),
		startH:     between(h(5), 6.5, 8.5),
		rampUpH:    between(h(6), 1, 3),
		endH:       between(h(7), 16.5, 18.5),
		rampDownH:  between(h(8), 1, 3),
		co2PeakPPM: between(h(9), 350, 900),
		pwrBaseW:   between(h(10), 300, 1200),
		pwrPeakW:   between(h(11), 800, 2800),
		vibIdle:    between(h(12), 0.6, 1.2),
		vibGain:    between(h(13), 2, 5),
	}
}

// model is one device: its type, environment and the per-device
// calibration, noise, battery and radio parameters.
type model struct {
	id    string
	typ   reading.DeviceType
	ti    typeIndex
	env   *env
	key   uint64
	sigma float64 // measurement noise
	// offset is added (TEMP, HUM, PRES, CO2); scale multiplies (VIB, PWR).
	offset, scale float64
	// Battery: drains drainPerDay from 100 to 5 %, sits at 5 % for a few
	// days, is replaced; phaseDays places the device in that cycle.
	drainPerDay, drainDays, cycleDays, phaseDays float64
	rssiBase                                     float64
	lo, hi                                       float64 // normal values stay inside [lo, hi], strictly inside the valid range
}

func newModel(seed uint64, dev reading.Device, e *env) *model {
	typ, ok := reading.TypeByCode(dev.TypeCode)
	ti, known := typeIndexByCode[dev.TypeCode]
	if !ok || !known {
		panic("simulate: device " + dev.ID + " has type " + dev.TypeCode + ", not in reading.Catalog")
	}
	k := combine(seed, hashString(dev.ID), 0xDE71CE)
	h := func(n uint64) uint64 { return mix64(k + n) }
	m := &model{id: dev.ID, typ: typ, ti: ti, env: e, key: k, scale: 1}
	m.sigma = baseNoise[ti] * between(h(1), 0.7, 1.5)
	switch ti {
	case typeTemp:
		m.offset = between(h(2), -0.4, 0.4)
	case typeHum:
		m.offset = between(h(2), -2, 2)
	case typePres:
		m.offset = between(h(2), -1.2, 1.2)
	case typeCO2:
		m.offset = between(h(2), -25, 25)
	case typeVib:
		m.scale = between(h(2), 0.8, 1.25)
	case typePwr:
		m.scale = between(h(2), 0.7, 1.4)
	}
	m.drainPerDay = between(h(3), 0.3, 1.5)
	m.drainDays = 95 / m.drainPerDay
	m.cycleDays = m.drainDays + between(h(4), 2, 10)
	m.phaseDays = between(h(5), 0, m.cycleDays)
	m.rssiBase = between(h(6), -85, -45)
	margin := 0.005 * (typ.ValidMax - typ.ValidMin)
	m.lo, m.hi = typ.ValidMin+margin, typ.ValidMax-margin
	return m
}

// hours is t in hours since the Unix epoch.
func hours(t time.Time) float64 {
	return float64(t.Unix())/3600 + float64(t.Nanosecond())/3.6e12
}

// utcOffset is the offset of the location's time zone at t, in seconds.
func (e *env) utcOffset(t time.Time) int {
	_, off := t.In(e.tz).Zone()
	return off
}

// occupancy is the share of people and machines at work, 0..1, at t in the
// location's legal time (utcOffset seconds east of UTC): weekdays ramp up
// in the morning and down in the evening over one to three hours, with a
// small lunch dip; weekends run at a fraction of that. It is zero around
// local midnight, so the weekday switch and DST jumps are continuous.
func (e *env) occupancy(t time.Time, utcOffset int) float64 {
	local := t.Unix() + int64(utcOffset)
	days := floorDiv(local, 86400)
	hour := float64(local-days*86400)/3600 + float64(t.Nanosecond())/3.6e12
	weekday := (days + 4) % 7 // 1970-01-01 was a Thursday; 0 is Sunday
	if weekday < 0 {
		weekday += 7
	}
	day := smoothstep((hour-e.startH)/e.rampUpH) * (1 - smoothstep((hour-e.endH)/e.rampDownH))
	if d := math.Abs(hour - 12.5); d < 1 {
		day *= 1 - 0.12*0.5*(1+math.Cos(math.Pi*d))
	}
	if weekday == 0 || weekday == 6 {
		day *= e.weekend
	}
	return e.night + (1-e.night)*day
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// outdoorC is the site's outdoor temperature: seasons, the solar day and
// weather fronts.
func (e *env) outdoorC(h float64) float64 {
	st := e.site
	daysSince2000 := h/24 - 10957
	season := math.Cos(2 * math.Pi * (daysSince2000 - 200) / 365.25) // warmest around 19 July
	solarHour := math.Mod(h+st.Longitude/15, 24)
	diurnal := math.Cos(2 * math.Pi * (solarHour - 15) / 24) // warmest at 15:00 solar time
	return st.MeanTempC + st.SeasonalAmpC*season + st.DiurnalAmpC*diurnal +
		3*valueNoise(e.siteKey, h/30) + valueNoise(e.siteKey+1, h/7)
}

// indoorC is the air temperature in the zone: the HVAC setpoint, leaking a
// little of the outdoor swing, warmed by occupancy.
func (e *env) indoorC(h, occ float64) float64 {
	out := e.outdoorC(h)
	return e.setpointC + 0.12*(out-e.setpointC) + 1.5*occ + 0.4*valueNoise(e.key, h/5)
}

// load is how hard the zone's machines work, 0..1: occupancy with some
// production variation.
func (e *env) load(h, occ float64) float64 {
	return occ * (0.85 + 0.15*valueNoise(e.key+2, h/1.5))
}

// signal is the value device m would report at t without measurement noise.
func (m *model) signal(t time.Time, utcOffset int) float64 {
	e := m.env
	h := hours(t)
	occ := e.occupancy(t, utcOffset)
	var v float64
	switch m.ti {
	case typeTemp:
		v = e.indoorC(h, occ) + m.offset
	case typeHum:
		// Relative humidity falls when the same air warms up.
		in := e.indoorC(h, occ)
		v = e.site.IndoorRH + e.rhOffset - 2.5*(in-e.setpointC) + 4*valueNoise(e.siteKey+2, h/20) + m.offset
	case typePres:
		solarHour := math.Mod(h+e.site.Longitude/15, 24)
		v = e.site.StationPressH + 9*valueNoise(e.siteKey+3, h/60) + 4*valueNoise(e.siteKey+4, h/15) +
			0.6*math.Cos(2*math.Pi*2*(solarHour-10)/24) + m.offset
	case typeCO2:
		v = 415 + 15*valueNoise(e.key+3, h/8) + e.co2PeakPPM*occ*(1+0.15*valueNoise(e.key+4, h/2)) + m.offset
	case typeVib:
		v = (e.vibIdle + e.vibGain*e.load(h, occ)) * m.scale * (1 + 0.1*valueNoise(m.key, h/0.5))
	case typePwr:
		v = (e.pwrBaseW + e.pwrPeakW*e.load(h, occ)) * m.scale
	}
	return min(max(v, m.lo), m.hi)
}

// battery is the battery level at t, in percent rounded to 0.01: a linear
// drain, a few days at the 5 % floor, then a fresh battery.
func (m *model) battery(t time.Time) float64 {
	days := hours(t)/24 + m.phaseDays
	pos := math.Mod(days, m.cycleDays)
	if pos < 0 {
		pos += m.cycleDays
	}
	level := 5.0
	if pos < m.drainDays {
		level = 100 - m.drainPerDay*pos
	}
	return math.Round(level*100) / 100
}

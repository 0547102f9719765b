package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/worker"

	"github.com/iot-etl/iot-etl/activities"
	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// streamCLI is one test's databases, a topic and task queue of its own and
// a stream worker running in the test process.
type streamCLI struct {
	t     *testing.T
	stack *testenv.Stack
	env   map[string]string
	topic string
	prod  *kgo.Client
	fleet simulate.Fleet
	valid int // valid readings produced so far
}

func newStreamCLI(t *testing.T) *streamCLI {
	t.Helper()
	s := testenv.Databases(t)
	name := strings.ToLower(t.Name())
	s.Config.Temporal.Address = testenv.Temporal(t)
	s.Config.Temporal.StreamTaskQueue = "starter-" + name
	s.Config.Kafka.Topic = "starter-" + name
	_, brokers := testenv.Kafka(t, s.Config.Kafka.Topic, 3)
	s.Config.Kafka.BootstrapServers = brokers
	fleet := simulate.NewFleet(3, 6)
	if err := seeder.ReplaceDevices(context.Background(), s.MySQL, fleet); err != nil {
		t.Fatal(err)
	}
	tc := testenv.TemporalClient(t)
	w := worker.New(tc, s.Config.Temporal.StreamTaskQueue, worker.Options{})
	w.RegisterWorkflow(workflows.StreamIngestWorkflow)
	w.RegisterActivity(&activities.Stream{Timescale: s.Timescale, MySQL: s.MySQL, Kafka: s.Config.Kafka, Config: s.Config.Stream,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	prod, err := kafka.NewClient(s.Config.Kafka, nil, kafka.ProducerOptions(s.Config.Kafka.Topic)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &streamCLI{t: t, stack: s, env: envOf(s.Config), topic: s.Config.Kafka.Topic, prod: prod, fleet: fleet}
}

func (c *streamCLI) id() string { return workflows.StreamWorkflowID(c.topic) }

// run runs the starter and fails the test on a non-zero exit.
func (c *streamCLI) run(args ...string) string {
	c.t.Helper()
	code, out, errOut := starter(c.t, c.env, args...)
	if code != 0 {
		c.t.Fatalf("starter %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// until runs the starter until its output matches re.
func (c *streamCLI) until(re string, args ...string) string {
	c.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(45 * time.Second)
	var out, errOut string
	for time.Now().Before(deadline) {
		var code int
		code, out, errOut = starter(c.t, c.env, args...)
		if code == 0 && rx.MatchString(out) {
			return out
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.t.Fatalf("starter %s never matched %q; last stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), re, out, errOut)
	return ""
}

// produce sends valid readings of the fleet (one second apart per device,
// continuing after the previous call's), malformed messages and readings of
// an unregistered device.
func (c *streamCLI) produce(valid, malformed, unknown int) {
	c.t.Helper()
	gen, err := simulate.NewGenerator(c.fleet, simulate.DefaultOptions())
	if err != nil {
		c.t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, uint64(c.valid)))
	base := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	var recs []*kgo.Record
	for i := c.valid; i < c.valid+valid; i++ {
		dev := c.fleet.Devices[i%len(c.fleet.Devices)]
		r := gen.Live(dev, base.Add(time.Duration(i/len(c.fleet.Devices))*time.Second), rng, 0)
		recs = append(recs, &kgo.Record{Key: []byte(dev.ID), Value: reading.Encode(nil, r, int64(i))})
	}
	for i := range malformed {
		recs = append(recs, &kgo.Record{Key: []byte("bad"), Value: []byte(fmt.Sprintf("not json %d", i))})
	}
	for i := range unknown {
		r := reading.Reading{DeviceID: "TEMP-999", Time: base.Add(time.Duration(i) * time.Second), Value: 20, ValueValid: true, Battery: 90, RSSI: -60}
		recs = append(recs, &kgo.Record{Key: []byte(r.DeviceID), Value: reading.Encode(nil, r, int64(i))})
	}
	if err := c.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		c.t.Fatal(err)
	}
	c.valid += valid
}

func (c *streamCLI) count(query string) int64 {
	c.t.Helper()
	var n int64
	if err := c.stack.Timescale.QueryRow(context.Background(), query).Scan(&n); err != nil {
		c.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (c *streamCLI) waitCommitted(n int64) {
	c.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		if c.count(`SELECT coalesce(sum(next_offset), 0) FROM public.stream_offsets`) == n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("the stream did not commit %d records", n)
}

// tableRow returns the fields of the line of out whose first field is key.
func tableRow(out, key string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == key {
			return f
		}
	}
	return nil
}

// TestStreamCommands drives the stream and dead-letter commands against the
// dev server: start (twice: idempotent), status, dlq ls, pause, resume,
// status --watch, stop.
func TestStreamCommands(t *testing.T) {
	t.Parallel()
	c := newStreamCLI(t)
	out := c.run("stream", "start", "--leases", "2", "--lease-duration", "30s", "--max-batch-wait", "100ms", "--window", "2m")
	if want := fmt.Sprintf("stream %s started on topic %s: 2 leases of 30s, batches of up to 5000 records or 100ms, 2m0s windows, allowed lateness 10m0s\n", c.id(), c.topic); !strings.HasPrefix(out, want) {
		t.Errorf("start: %q, want prefix %q", out, want)
	}
	c.until(`: running`, "stream", "status")
	if out := c.run("stream", "start"); !strings.HasPrefix(out, "stream "+c.id()+" is already running (running)") {
		t.Errorf("second start: %q", out)
	}

	c.produce(300, 10, 5)
	c.waitCommitted(315)
	anomalies := c.count(`SELECT count(*) FROM public.stream_anomalies`)
	status := c.until(fmt.Sprintf(`records 315: inserted 300, duplicates 0, dead letters 15; anomalies %d\n`, anomalies), "stream", "status")
	if !strings.Contains(status, "topic "+c.topic+": 3 partitions, 2 leases, 2m0s windows,") || !strings.Contains(status, ", lag 0\n") {
		t.Errorf("status:\n%s", status)
	}
	// --window 2m: every window is 2 minutes long, one per device and
	// 2-minute bin of its readings, and they hold the 300 readings.
	if n := c.count(`SELECT count(*) FROM public.sensor_readings_stream_agg WHERE window_end - window_start <> interval '2 minutes'`); n != 0 {
		t.Errorf("%d windows are not 2 minutes long", n)
	}
	windows, bins := c.count(`SELECT count(*) FROM public.sensor_readings_stream_agg`),
		c.count(`SELECT count(DISTINCT (device_id, date_bin('2 minutes', time, timestamptz '2000-01-01 00:00:00+00'))) FROM public.sensor_readings WHERE source = 'stream'`)
	if held := c.count(`SELECT coalesce(sum(reading_count), 0) FROM public.sensor_readings_stream_agg`); windows != bins || held != 300 {
		t.Errorf("%d windows holding %d readings, want %d (the 2-minute bins of the readings) holding 300", windows, held, bins)
	}
	for p := range 3 {
		row := tableRow(status, fmt.Sprint(p))
		if len(row) < 4 || row[1] != row[2] || row[3] != "0" {
			t.Errorf("partition %d row %q: want committed = high watermark, lag 0", p, row)
		}
	}

	out = c.run("dlq", "ls")
	if r := tableRow(out, "not_json"); len(r) < 2 || r[1] != "10" {
		t.Errorf("not_json row %q, want count 10:\n%s", r, out)
	}
	if r := tableRow(out, "unknown_device"); len(r) < 2 || r[1] != "5" {
		t.Errorf("unknown_device row %q, want count 5:\n%s", r, out)
	}
	if r := tableRow(out, "total"); len(r) != 2 || r[1] != "15" || !strings.Contains(out, "\nlatest 15:\n") {
		t.Errorf("dlq ls:\n%s", out)
	}
	out = c.run("dlq", "ls", "--reason", "unknown_device", "--limit", "2", "--width", "24")
	if strings.Contains(out, "not_json") || !strings.Contains(out, "\nlatest 2:\n") || strings.Count(out, ` "{\"device_id\":\"TEMP-999\","…`) != 2 {
		t.Errorf("dlq ls --reason unknown_device --limit 2:\n%s", out)
	}
	if code, _, errOut := starter(t, c.env, "dlq", "ls", "--reason", "bogus"); code != 2 || !strings.Contains(errOut, "want one of oversized, invalid_utf8, not_json") {
		t.Errorf("dlq ls --reason bogus: exit %d, %q", code, errOut)
	}

	// The pause answers once every lease stopped, with the offsets it
	// paused at: those committed.
	out = c.run("stream", "pause")
	committed := c.count(`SELECT sum(next_offset) FROM public.stream_offsets`)
	var sum int64
	for _, f := range strings.Fields(strings.TrimPrefix(lineWith(out, "committed offsets"), "committed offsets (partition=next offset): ")) {
		var p, n int64
		if _, err := fmt.Sscanf(f, "%d=%d", &p, &n); err == nil {
			sum += n
		}
	}
	if !strings.HasPrefix(out, "pause "+c.id()+": paused; every lease stopped after committing its open batch") || sum != committed || committed == 0 {
		t.Errorf("pause: %q; want the offsets committed, which add up to %d", out, committed)
	}
	c.until(`: paused`, "stream", "status")
	paused := c.until(`(?s)LEASE.*\n0 .* idle .*\n1 .* idle `, "stream", "status")
	if strings.Contains(paused, "consuming") {
		t.Errorf("a lease still consumes while paused:\n%s", paused)
	}
	// While paused, status reads the lag from Kafka and the database, not
	// from the (stopped) leases' last reports.
	c.produce(40, 0, 0)
	if out := c.until(`: paused`, "stream", "status"); !strings.Contains(out, ", lag 40\n") {
		t.Errorf("status while paused after 40 more messages:\n%s", out)
	}
	c.run("stream", "resume")
	if out := c.run("stream", "status", "--wait-caught-up", "60s"); !strings.Contains(out, ": running") || !strings.Contains(out, ", lag 0\n") || !strings.Contains(out, "records 355: inserted 340,") {
		t.Errorf("status --wait-caught-up after resume:\n%s", out)
	}

	// --watch refreshes until Ctrl-C (here: the context ending).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var watchOut, watchErr bytes.Buffer
	code := run(ctx, []string{"stream", "status", "--watch", "--interval", "500ms"}, &watchOut, &watchErr, envconfig.MapLookuper(c.env))
	cancel()
	if n := strings.Count(watchOut.String(), "stream "+c.id()+": running"); code != 0 || n < 2 {
		t.Errorf("status --watch: exit %d, %d refreshes; stderr %q", code, n, watchErr.String())
	}

	c.produce(60, 0, 0)
	c.run("stream", "stop")
	final := c.until(`: stopped`, "stream", "status")
	if !strings.Contains(final, "records 415: inserted 400, duplicates 0, dead letters 15;") || !strings.Contains(final, ", lag 0\n") {
		t.Errorf("final status:\n%s", final)
	}
	if n := c.count(`SELECT count(*) FROM public.sensor_readings`); n != 400 {
		t.Errorf("%d readings, want 400", n)
	}
	if code, _, errOut := starter(t, c.env, "stream", "pause"); code != 1 || !strings.Contains(errOut, "no running stream "+c.id()) {
		t.Errorf("pause after stop: exit %d, %q", code, errOut)
	}
}

// TestStreamTestModeWritesNothing: --test-mode decodes and counts every
// record but writes nothing: no readings, no dead letters, no offsets.
func TestStreamTestModeWritesNothing(t *testing.T) {
	t.Parallel()
	c := newStreamCLI(t)
	c.produce(60, 4, 0)
	out := c.run("stream", "start", "--test-mode", "--max-batch-wait", "100ms")
	if !strings.Contains(out, ", test mode (nothing is written)\n") {
		t.Errorf("start: %q", out)
	}
	status := c.until(`records 64: inserted 60, duplicates 0, dead letters 4;`, "stream", "status")
	if !strings.Contains(status, "[test mode: nothing is written]") {
		t.Errorf("status:\n%s", status)
	}
	for _, table := range []string{"public.sensor_readings", "public.stream_dead_letters", "public.stream_offsets", "public.sensor_readings_stream_agg", "public.stream_anomalies"} {
		if n := c.count("SELECT count(*) FROM " + table); n != 0 {
			t.Errorf("test mode wrote %d rows to %s", n, table)
		}
	}
	c.run("stream", "stop")
	c.until(`: stopped`, "stream", "status")
	if n := c.count(`SELECT count(*) FROM public.stream_offsets`); n != 0 {
		t.Errorf("test mode wrote %d offsets", n)
	}
}

// lineWith is the first line of out containing s.
func lineWith(out, s string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

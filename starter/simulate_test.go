package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

const simTopic = "iot-sensor-stream"

// kafkaEnv starts an in-process broker with the topic in 6 partitions and
// returns the environment pointing at it, and its address.
func kafkaEnv(t *testing.T) (map[string]string, []string) {
	t.Helper()
	_, brokers := testenv.Kafka(t, simTopic, 6)
	return map[string]string{"KAFKA_BOOTSTRAP_SERVERS": strings.Join(brokers, ","), "KAFKA_TOPIC": simTopic}, brokers
}

func kafkaClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kafka.NewClient(config.Kafka{BootstrapServers: brokers}, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// highWatermarks sums and lists the end offsets of the topic.
func highWatermarks(t *testing.T, brokers []string) (map[int32]int64, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kafka.HighWatermarks(ctx, kafkaClient(t, brokers), simTopic)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, e := range ends {
		sum += e
	}
	return ends, sum
}

// consumeAll reads every record of the topic, in partition then offset order.
func consumeAll(t *testing.T, brokers []string) []*kgo.Record {
	t.Helper()
	ends, total := highWatermarks(t, brokers)
	assign := map[int32]kgo.Offset{}
	for p := range ends {
		assign[p] = kgo.NewOffset().AtStart()
	}
	cl := kafkaClient(t, brokers, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{simTopic: assign}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for int64(len(recs)) < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", len(recs), total, err)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("fetch partition %d: %v", p, err) })
		recs = append(recs, fs.Records()...)
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	return recs
}

// reportLine parses a report line "name N k=v k=v ..." of starter simulate.
func reportLine(t *testing.T, report, name string) (int64, map[string]int64) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` +(\d+)(.*)$`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no %q line in the report:\n%s", name, report)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	kv := map[string]int64{}
	for _, f := range strings.Fields(m[2]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		c, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("report field %q: %v", f, err)
		}
		if c != 0 {
			kv[k] = c
		}
	}
	return n, kv
}

func fleetIDs(seed int64, devices int) *reading.DeviceSet {
	f := simulate.NewFleet(seed, devices)
	ids := make([]string, len(f.Devices))
	for i, d := range f.Devices {
		ids[i] = d.ID
	}
	return reading.NewDeviceSet(ids)
}

// TestSimulateSendsExactlyTheReportedMessages: M messages land, keyed by
// fleet devices, and the decoder rejects exactly the messages the simulator
// reported as bad, for the reasons it reported.
func TestSimulateSendsExactlyTheReportedMessages(t *testing.T) {
	t.Parallel()
	env, brokers := kafkaEnv(t)
	const m, seed, devices = 2000, 7, 20
	code, out, errOut := starter(t, env, "simulate", "--devices", strconv.Itoa(devices), "--seed", strconv.Itoa(seed),
		"--rate", "20000", "--duration", "1m", "--max-messages", strconv.Itoa(m), "--bad-ratio", "0.09", "--anomaly-ratio", "0.05")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	sent, _ := reportLine(t, out, "sent")
	good, _ := reportLine(t, out, "good")
	badTotal, badPerReason := reportLine(t, out, "bad")
	anomalous, _ := reportLine(t, out, "anomalous")
	failed, _ := reportLine(t, out, "failed")
	if sent != m || badTotal != 180 || good != m-180 || failed != 0 {
		t.Fatalf("report sent %d good %d bad %d failed %d, want %d, %d, 180, 0:\n%s", sent, good, badTotal, failed, m, m-180, out)
	}
	wantBad := map[string]int64{}
	for reason, c := range producer.NewMix(seed, 0.09).Count(m) {
		wantBad[string(reason)] = c
	}
	if diff := cmp.Diff(wantBad, badPerReason); diff != "" {
		t.Errorf("reported bad per reason (-mix +report):\n%s", diff)
	}
	if len(badPerReason) != len(producer.BadReasons()) {
		t.Errorf("%d reasons reported, want all %d", len(badPerReason), len(producer.BadReasons()))
	}

	if _, total := highWatermarks(t, brokers); total != m {
		t.Fatalf("topic holds %d records, want %d", total, m)
	}
	ids := fleetIDs(seed, devices)
	decodedBad := map[string]int64{}
	var decodedGood, nulls int64
	for _, rec := range consumeAll(t, brokers) {
		if _, ok := ids.Lookup(rec.Key); !ok {
			t.Fatalf("record %d/%d keyed %q, not a fleet device", rec.Partition, rec.Offset, rec.Key)
		}
		r, _, err := reading.Decode(rec.Value, rec.Timestamp, reading.Limits{Devices: ids})
		if err != nil {
			reason, ok := reading.RejectionReason(err)
			if !ok {
				t.Fatalf("decode: %v", err)
			}
			decodedBad[string(reason)]++
			continue
		}
		decodedGood++
		if !r.ValueValid {
			nulls++
		}
	}
	if diff := cmp.Diff(badPerReason, decodedBad); diff != "" {
		t.Errorf("bad per reason (-report +decoded):\n%s", diff)
	}
	if decodedGood != good {
		t.Errorf("%d records decode, the report says %d good", decodedGood, good)
	}
	_, anomalies := reportLine(t, out, "anomalous")
	if anomalous == 0 || nulls != anomalies[string(simulate.Null)] {
		t.Errorf("%d decoded readings without a value, report: %d anomalous, %v", nulls, anomalous, anomalies)
	}
}

// TestSimulateSameSeedSameSequence: with the same seed, two runs put the
// same records in the same partitions and offsets. Replaying event time
// (--start) they are byte for byte equal; on the wall clock, equal but for
// the time-dependent fields.
func TestSimulateSameSeedSameSequence(t *testing.T) {
	t.Parallel()
	type rec struct {
		Partition int32
		Offset    int64
		Key       string
		Value     string
		Timestamp time.Time
	}
	// summary keeps what does not depend on the clock: where the record is,
	// its key and how it decodes (the seq, or the reason it is rejected).
	summary := func(r rec) string {
		_, seq, err := reading.Decode([]byte(r.Value), r.Timestamp, reading.Limits{Devices: fleetIDs(11, 9)})
		if reason, bad := reading.RejectionReason(err); bad {
			return fmt.Sprintf("%d/%d %s %s", r.Partition, r.Offset, r.Key, reason)
		}
		return fmt.Sprintf("%d/%d %s seq=%d", r.Partition, r.Offset, r.Key, seq)
	}
	runOnce := func(extra ...string) []rec {
		env, brokers := kafkaEnv(t)
		args := append([]string{"simulate", "--devices", "9", "--seed", "11", "--rate", "50000", "--max-messages", "900",
			"--bad-ratio", "0.05", "--anomaly-ratio", "0.1"}, extra...)
		if code, out, errOut := starter(t, env, args...); code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
		}
		var out []rec
		for _, r := range consumeAll(t, brokers) {
			out = append(out, rec{r.Partition, r.Offset, string(r.Key), string(r.Value), r.Timestamp.UTC()})
		}
		if len(out) != 900 {
			t.Fatalf("%d records, want 900", len(out))
		}
		return out
	}

	replay := []string{"--start", "2026-02-01T08:00:00Z"}
	a, b := runOnce(replay...), runOnce(replay...)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("replayed runs differ (-first +second):\n%s", diff)
	}
	// 900 messages at 50,000/s of event time: 18 ms from the start.
	first, last := a[0].Timestamp, a[0].Timestamp
	for _, r := range a {
		first, last = minTime(first, r.Timestamp), maxTime(last, r.Timestamp)
	}
	if want := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC); !first.Equal(want) || !last.Equal(want.Add(17*time.Millisecond)) {
		t.Errorf("replayed record timestamps span %s .. %s, want %s .. +17ms", first, last, want)
	}

	c, d := runOnce(), runOnce()
	var sc, sd []string
	for i := range c {
		sc, sd = append(sc, summary(c[i])), append(sd, summary(d[i]))
	}
	if diff := cmp.Diff(sc, sd); diff != "" {
		t.Errorf("wall-clock runs differ beyond time-dependent fields (-first +second):\n%s", diff)
	}
	var sa []string
	for _, r := range a {
		sa = append(sa, summary(r))
	}
	if diff := cmp.Diff(sa, sc); diff != "" {
		t.Errorf("replayed and wall-clock runs differ beyond time-dependent fields (-replay +wall clock):\n%s", diff)
	}
}

func TestSimulateTestModeSendsNothing(t *testing.T) {
	t.Parallel()
	env, brokers := kafkaEnv(t)
	code, out, errOut := starter(t, env, "simulate", "--test-mode", "--devices", "12", "--rate", "100000", "--max-messages", "500", "--bad-ratio", "0.1")
	if code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 500 {
		t.Fatalf("%d lines on stdout, want 500", len(lines))
	}
	ids := fleetIDs(42, 12)
	for _, l := range lines {
		key, value, _ := strings.Cut(l, " ")
		if _, ok := ids.Lookup([]byte(key)); !ok || value == "" {
			t.Fatalf("line %q is not \"<fleet device id> <message>\"", l)
		}
	}
	if sent, _ := reportLine(t, errOut, "sent"); sent != 500 {
		t.Errorf("report on stderr says %d sent, want 500:\n%s", sent, errOut)
	}
	ends, total := highWatermarks(t, brokers)
	if total != 0 || len(ends) != 6 {
		t.Errorf("high watermarks %v, want 6 partitions at 0", ends)
	}
}

var tailLine = regexp.MustCompile(`^partition=(\d+) offset=(\d+) timestamp=(\S+) key=(\S+) value=(.*)$`)

// TestTailPrintsExactlyN: tail prints N lines, each naming the partition
// and offset of the record it shows.
func TestTailPrintsExactlyN(t *testing.T) {
	t.Parallel()
	env, brokers := kafkaEnv(t)
	if code, out, errOut := starter(t, env, "simulate", "--devices", "30", "--rate", "50000", "--max-messages", "600"); code != 0 {
		t.Fatalf("simulate: exit %d\n%s\n%s", code, out, errOut)
	}
	byPos := map[string]*kgo.Record{}
	perPartition := map[int32]int64{}
	for _, r := range consumeAll(t, brokers) {
		byPos[fmt.Sprintf("%d/%d", r.Partition, r.Offset)] = r
		perPartition[r.Partition]++
	}

	check := func(out string, n int) []string {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != n {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), n, out)
		}
		var positions []string
		seen := map[string]bool{}
		for _, l := range lines {
			m := tailLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("line %q does not match %s", l, tailLine)
			}
			pos := m[1] + "/" + m[2]
			rec, ok := byPos[pos]
			if !ok || seen[pos] {
				t.Fatalf("line %q: position %s unknown or repeated", l, pos)
			}
			seen[pos] = true
			if m[4] != string(rec.Key) || m[5] != string(rec.Value) || m[3] != rec.Timestamp.UTC().Format(tailTimestamp) {
				t.Fatalf("line %q does not show record %s (key %s, %s)", l, pos, rec.Key, rec.Value)
			}
			positions = append(positions, pos)
		}
		return positions
	}

	code, out, errOut := starter(t, env, "tail", "--from-beginning", "--max-messages", "250")
	if code != 0 {
		t.Fatalf("tail: exit %d\n%s", code, errOut)
	}
	check(out, 250)

	// One partition from the beginning: its first offsets, in order.
	var p int32 = 2
	n := int(min(perPartition[p], 40))
	if n < 10 {
		t.Fatalf("partition %d holds only %d records", p, perPartition[p])
	}
	code, out, errOut = starter(t, env, "tail", "--partition", "2", "--max-messages", strconv.Itoa(n))
	if code != 0 {
		t.Fatalf("tail --partition: exit %d\n%s", code, errOut)
	}
	var want []string
	for o := range n {
		want = append(want, fmt.Sprintf("%d/%d", p, o))
	}
	if diff := cmp.Diff(want, check(out, n)); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
}

func TestTailRejectsBadFlags(t *testing.T) {
	t.Parallel()
	env, _ := kafkaEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"tail", "--from-beginning", "--from-end"}, "exclude each other"},
		{[]string{"tail", "--partition", "6"}, "--partition 6: topic iot-sensor-stream has partitions 0..5"},
	} {
		code, _, errOut := starter(t, env, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
}

// TestSimulateNamesTheUnreachableBroker: a wrong address fails at once,
// naming it; so does a missing topic.
func TestSimulateNamesTheUnreachableBroker(t *testing.T) {
	t.Parallel()
	port, err := testenv.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	began := time.Now()
	code, _, errOut := starter(t, map[string]string{"KAFKA_BOOTSTRAP_SERVERS": addr}, "simulate", "--max-messages", "10")
	if code != 1 || !strings.Contains(errOut, "kafka broker "+addr+" unreachable") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("exit %d, stderr %q; want 1 and the address", code, errOut)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("failing took %s", took)
	}

	env, _ := kafkaEnv(t)
	env["KAFKA_TOPIC"] = "no-such-topic"
	code, _, errOut = starter(t, env, "simulate", "--max-messages", "10")
	if code != 1 || !strings.Contains(errOut, "topic no-such-topic does not exist") {
		t.Errorf("missing topic: exit %d, stderr %q", code, errOut)
	}
}

func TestSimulateRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"simulate", "--bad-ratio", "2"}, "bad ratio 2: want between 0 and 1"},
		{[]string{"simulate", "--devices", "0"}, "0 devices"},
		{[]string{"simulate", "--start", "yesterday"}, `--start "yesterday"`},
	} {
		code, _, errOut := starter(t, map[string]string{}, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, errOut, tt.want)
		}
	}
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

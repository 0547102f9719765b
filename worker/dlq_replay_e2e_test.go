package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestDLQReplay quarantines the readings of two devices missing from the
// registry (unknown_device) and five readings later than the allowed
// lateness (late), among the malformed messages Produce makes (not_json).
// Then, with the devices registered:
//   - a dry run prints what would land, by reason, and changes nothing;
//   - a replay with the allowed lateness raised to an hour, its worker
//     killed (-9) mid-replay and started again, lands every unknown_device
//     and late reading exactly once and keeps the not_json ones;
//   - a second replay lands nothing.
//
// The stream is then exact: raw rows = produced − not_json, windows = a
// recomputation from the raw rows, the anomalies with their readings.
func TestDLQReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := e2e.NewStream(t, 3)
	removed := map[string]bool{s.Fleet.Devices[1].ID: true, s.Fleet.Devices[6].ID: true}
	for id := range removed {
		if _, err := s.Stack.MySQL.ExecContext(ctx, `DELETE FROM devices WHERE device_id = ?`, id); err != nil {
			t.Fatal(err)
		}
	}
	s.Start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	const n = 2400
	s.Produce(n)
	unknown := 0
	for i := range n {
		if i%37 != 5 && removed[s.Fleet.Devices[i%len(s.Fleet.Devices)].ID] {
			unknown++
		}
	}
	s.WaitConsumed(time.Minute)
	// Five readings of a registered device 30 minutes older than the
	// stream's: late for the 10-minute allowed lateness.
	dev := s.Fleet.Devices[0]
	late := 5
	first := s.Count(`SELECT extract(epoch FROM min(time))::bigint FROM public.sensor_readings WHERE device_id = $1`, dev.ID)
	for k := range late {
		r := reading.Reading{DeviceID: dev.ID, Time: time.Unix(first, 0).UTC().Add(-30*time.Minute + time.Duration(k)*time.Second),
			Value: 20 + float64(k), ValueValid: true, Battery: 80, RSSI: -70}
		if err := s.Prod.ProduceSync(ctx, &kgo.Record{Key: []byte(dev.ID), Value: reading.Encode(nil, r, int64(n+k))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	s.WaitConsumedN(n+int64(late), time.Minute)
	_, malformed := s.Counts()
	byReason := func() string {
		return fmt.Sprintf("not_json %d, unknown_device %d, late %d",
			s.Count(`SELECT count(*) FROM public.stream_dead_letters WHERE reason = 'not_json' AND replayed_at IS NULL`),
			s.Count(`SELECT count(*) FROM public.stream_dead_letters WHERE reason = 'unknown_device' AND replayed_at IS NULL`),
			s.Count(`SELECT count(*) FROM public.stream_dead_letters WHERE reason = 'late' AND replayed_at IS NULL`))
	}
	quarantined := fmt.Sprintf("not_json %d, unknown_device %d, late %d", malformed, unknown, late)
	if got := byReason(); got != quarantined {
		t.Fatalf("open dead letters: %s, want %s", got, quarantined)
	}
	raw := s.Count(`SELECT count(*) FROM public.sensor_readings`)
	if err := seeder.ReplaceDevices(ctx, s.Stack.MySQL, s.Fleet); err != nil {
		t.Fatal(err)
	}

	starterBin := testenv.Build(t, "./starter")
	out := e2e.RunStarter(t, starterBin, s.Env, "dlq", "replay", "--dry-run", "--allowed-lateness", "1h")
	for _, want := range []string{
		fmt.Sprintf("unknown_device %d %d 0 * 0 0", unknown, unknown),
		fmt.Sprintf("not_json %d 0 0 0 %d 0", malformed, malformed),
		fmt.Sprintf("late %d %d 0 * 0 0", late, late),
	} {
		if !tableLine(out, want) {
			t.Errorf("dry run: no line %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "dry run, nothing changed") {
		t.Errorf("the dry run does not say it changed nothing:\n%s", out)
	}
	if got := byReason(); got != quarantined || s.Count(`SELECT count(*) FROM public.sensor_readings`) != raw {
		t.Fatalf("the dry run changed something: open dead letters %s, raw rows %d (were %s, %d)", got, s.Count(`SELECT count(*) FROM public.sensor_readings`), quarantined, raw)
	}

	// The replay, in pages of 10, its worker killed after 5 pages.
	run, err := s.TC.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "replay-" + s.Topic, TaskQueue: s.Stack.Config.Temporal.StreamTaskQueue},
		workflows.DLQReplayWorkflowName, workflows.DLQReplayInput{Topic: s.Topic, Partition: -1, AllowedLateness: time.Hour, PageSize: 10, HeartbeatTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var p workflows.DLQReplayProgress
		if v, err := s.TC.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.QueryProgress); err == nil && v.Get(&p) == nil && p.Pages >= 5 {
			if p.Done {
				t.Fatalf("the replay was done before the kill: %+v", p)
			}
			t.Logf("killing the worker after %d pages (last id %d)", p.Pages, p.LastID)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replay did 5 pages in a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Worker.Kill()
	s.StartWorker()
	var res workflows.DLQReplayProgress
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := run.Get(wctx, &res); err != nil {
		t.Fatal(err)
	}
	total := int64(unknown + late + malformed)
	want := fmt.Sprintf("examined %d, landed %d, duplicates 0, kept %d, rereasoned 0", total, unknown+late, malformed)
	if got := fmt.Sprintf("examined %d, landed %d, duplicates %d, kept %d, rereasoned %d",
		res.Total.DeadLetters, res.Total.Landed, res.Total.Duplicates, res.Total.Kept, res.Total.Rereasoned); got != want {
		t.Errorf("replay result: %s, want %s", got, want)
	}
	if got := byReason(); got != fmt.Sprintf("not_json %d, unknown_device 0, late 0", malformed) {
		t.Errorf("open dead letters after the replay: %s", got)
	}
	if n := s.Count(`SELECT count(*) FROM public.stream_dead_letters WHERE replay_outcome = 'landed' AND replay_run_id = $1`, run.GetRunID()); n != int64(unknown+late) {
		t.Errorf("dead letters closed as landed by the replay: %d, want %d", n, unknown+late)
	}
	if n := s.Count(`SELECT count(*) FROM public.sensor_readings`); n != raw+int64(unknown+late) {
		t.Errorf("raw rows after the replay: %d, want %d + %d", n, raw, unknown+late)
	}

	// A second replay finds only what stays.
	out = e2e.RunStarter(t, starterBin, s.Env, "dlq", "replay", "--allowed-lateness", "1h")
	if !strings.Contains(out, "replayed, by stored reason:") {
		t.Errorf("second replay:\n%s", out)
	}
	for _, want := range []string{fmt.Sprintf("not_json %d 0 0 0 %d 0", malformed, malformed), fmt.Sprintf("total %d 0 0 0 %d 0", malformed, malformed)} {
		if !tableLine(out, want) {
			t.Errorf("second replay: no line %q in:\n%s", want, out)
		}
	}
	e2e.CheckStreamExact(t, s.Stack, s.Prod, s.Topic, e2e.StreamExpect{Produced: int64(n + late), Quarantined: int64(malformed),
		ByReason: map[string]int64{"not_json": int64(malformed), "unknown_device": 0, "late": 0}})
}

// tableLine reports whether out has a line whose fields are want's, with
// "*" matching any one field.
func tableLine(out, want string) bool {
	pattern := strings.ReplaceAll(regexp.QuoteMeta(strings.Join(strings.Fields(want), " ")), `\*`, `\S+`)
	re := regexp.MustCompile(`(?m)^` + pattern + `$`)
	for line := range strings.SplitSeq(out, "\n") {
		if re.MatchString(strings.Join(strings.Fields(line), " ")) {
			return true
		}
	}
	return false
}

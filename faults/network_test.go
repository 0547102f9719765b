//go:build faults

package faults_test

import (
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// The network faults: a 30 s partition, 500 ms of latency each way, and a
// bandwidth limit.
const (
	cutFor     = 30 * time.Second
	slowFor    = 12 * time.Second
	latency    = 500 * time.Millisecond
	bandwidthK = 64 // KB/s each way
)

// TestStreamNetworkFaults: while the simulator publishes 2,500 msg/s, the
// network between the worker and each of TimescaleDB, Kafka and Temporal
// is cut for 30 s in turn; then each link gets 500 ms of latency each way,
// then a 64 KB/s bandwidth limit. While a cut lasts, `starter stream
// status` shows it (the problem of the lease held up, or, with Temporal
// cut off, that no worker answers and what the server knows); after it,
// the problems clear and the lag returns to where it was. The stream is
// exact at the end.
func TestStreamNetworkFaults(t *testing.T) {
	t.Parallel()
	r := newRig(t, rigOptions{})
	r.StartWorker()
	r.start()
	starter := testenv.Build(t, "./starter")
	operator := testenv.EnvMap(r.Stack.Config) // the operator reaches every service directly
	load := r.load(loadRate, 0)
	load.WaitSent(5000, time.Minute)
	r.healthy(2 * time.Minute)

	var worst time.Duration
	shows := map[string]string{r.links.Timescale.Name: "TimescaleDB: commit of", r.kafka.Link.Name: "Kafka: no answer from the brokers",
		r.links.Temporal.Name: "no worker answered the status query"}
	for _, l := range []*faultenv.Link{r.links.Timescale, r.kafka.Link, r.links.Temporal} {
		l.Cut()
		cutAt := time.Now()
		var seen string
		for seen == "" && time.Since(cutAt) < cutFor {
			out, _ := e2e.RunStarterErr(starter, operator, "stream", "status")
			if strings.Contains(out, shows[l.Name]) {
				seen = lineWith(out, shows[l.Name])
				t.Logf("%s cut: after %s, stream status shows: %s", l.Name, time.Since(cutAt).Round(time.Second), strings.TrimSpace(seen))
			}
		}
		if seen == "" {
			t.Errorf("%s cut: stream status never showed %q in %s", l.Name, shows[l.Name], cutFor)
		}
		time.Sleep(time.Until(cutAt.Add(cutFor)))
		l.Restore()
		rec := r.healthy(3 * time.Minute)
		out, _ := e2e.RunStarterErr(starter, operator, "stream", "status")
		if !strings.Contains(out, "problems now: none") {
			t.Errorf("%s restored: stream status still shows problems:\n%s", l.Name, out)
		}
		t.Logf("%s restored: no problem and caught up %s later", l.Name, rec.Round(100*time.Millisecond))
		worst = max(worst, rec)
	}
	for _, slow := range []struct {
		name  string
		apply func(*faultenv.Link)
	}{
		{"latency 500ms", func(l *faultenv.Link) { l.Latency(latency) }},
		{"bandwidth 64KB/s", func(l *faultenv.Link) { l.Bandwidth(bandwidthK) }},
	} {
		for _, l := range []*faultenv.Link{r.links.Timescale, r.kafka.Link, r.links.Temporal} {
			before := r.Committed()
			slow.apply(l)
			time.Sleep(slowFor)
			l.Clear()
			if after := r.Committed(); after <= before {
				t.Errorf("%s on %s: nothing committed in %s", slow.name, l.Name, slowFor)
			}
			rec := r.healthy(3 * time.Minute)
			t.Logf("%s on %s for %s: caught up %s after", slow.name, l.Name, slowFor, rec.Round(100*time.Millisecond))
			worst = max(worst, rec)
		}
	}
	rep := load.Stop()
	lost, dup := r.settle(rep, 3*time.Minute)
	st := r.stop()
	t.Logf("final: %d lease attempts, %d failures", st.LeaseAttempts, st.LeaseFailures)
	faultenv.Record(t, faultenv.Figures{Scenario: "network: stream", Faults: 9, Messages: rep.Sent, Lost: lost, Duplicated: dup, Recovery: worst,
		Notes: "30 s cuts, 500 ms latency each way and 64 KB/s on TimescaleDB, Kafka and Temporal in turn; recovery: fault cleared to no problem and lag under 1 s of load"})
}

// healthy waits until the status answers with no problem and a lag under
// a second of load, and returns how long that took.
func (r *rig) healthy(timeout time.Duration) time.Duration {
	r.t.Helper()
	return waitUntil(r.t, "the stream healthy and caught up", timeout, func() bool {
		st, err := r.StatusErr()
		return err == nil && len(st.Problems) == 0 && st.Lag < loadRate && st.State == workflows.StreamRunning
	})
}

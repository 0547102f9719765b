//go:build faults

package faults_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestStreamSlowSinkFence slows every round trip between the worker and
// TimescaleDB by 2 s (1 s each way) while the simulator publishes 2,500
// msg/s: the lease keeps heartbeating and committing. Then, under the same
// toxic, the worker that holds the lease is frozen (SIGSTOP) between two
// transactions, so Temporal times the lease out and a second worker takes
// the partitions over with a higher epoch; thawed, the frozen lease (now a
// zombie) tries to commit the batch it had open, and the epoch fence
// refuses it. The stream is exact at the end.
func TestStreamSlowSinkFence(t *testing.T) {
	r := newRig(t, rigOptions{partitions: 2})
	first := r.StartWorker()
	r.run = r.Start(workflows.StreamInput{Leases: 1, LeaseDuration: 10 * time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	load := r.load(loadRate, 0)
	waitUntil(t, "the lease committing", time.Minute, func() bool { return r.Committed() > 5000 })

	// 2 s per round trip: the lease goes on, slower, and never misses a
	// heartbeat.
	r.links.Timescale.Latency(time.Second)
	slowFrom := r.Committed()
	time.Sleep(20 * time.Second)
	st := r.Status()
	if st.LeaseFailures != 0 || st.LeaseAttempts != 1 {
		t.Fatalf("under 2 s per round trip: %d lease attempts, %d failures (%q), want 1 and 0", st.LeaseAttempts, st.LeaseFailures, st.LastError)
	}
	if c := r.Committed(); c <= slowFrom {
		t.Fatalf("no commit in 20 s under 2 s per round trip (committed %d)", c)
	}
	t.Logf("under 2 s per round trip: committed %d -> %d in 20 s, 0 lease failures", slowFrom, r.Committed())

	// The zombie: freeze the lease's worker between two transactions.
	second := r.StartNamedWorker("worker-2")
	waitUntil(t, "the lease between two transactions", time.Minute, func() bool {
		if r.Count(`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'`, sink.ApplicationName) != 0 {
			return false
		}
		first.Freeze()
		return true
	})
	frozenAt := time.Now()
	t.Logf("worker frozen at %d committed", r.Committed())
	takeover := waitUntil(t, "a lease of the second worker committing", 2*time.Minute, func() bool {
		st, err := r.StatusErr()
		return err == nil && st.LeaseAttempts >= 2 && strings.Contains(second.Log(), "stream lease started") && r.Committed() > slowFrom
	})
	before := r.Committed()
	waitUntil(t, "commits by the second worker", time.Minute, func() bool { return r.Committed() > before })
	t.Logf("taken over %s after the freeze", takeover.Round(100*time.Millisecond))
	first.Thaw()
	waitUntil(t, "the zombie lease's commit refused", time.Minute, func() bool {
		return strings.Contains(first.Log(), "stream lease fenced")
	})
	t.Logf("zombie refused: %s", lineWith(first.Log(), "stream lease fenced"))
	r.links.Timescale.Clear()

	rep := load.Stop()
	lost, dup := r.settle(rep, 3*time.Minute)
	r.stop()
	var fenced int64
	if err := r.Stack.Timescale.QueryRow(context.Background(), `SELECT max(lease_epoch) FROM public.stream_offsets WHERE topic = $1`, r.Topic).Scan(&fenced); err != nil {
		t.Fatal(err)
	}
	faultenv.Record(t, faultenv.Figures{Scenario: "slow sink 2s per round trip + zombie lease", Faults: 2, Messages: rep.Sent, Lost: lost, Duplicated: dup,
		Recovery: time.Since(frozenAt) - time.Since(frozenAt.Add(takeover)), Notes: "recovery: freeze to the second worker's lease committing; the zombie's commit is refused by the epoch fence"})
}

// lineWith is the first line of log that contains s.
func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

//go:build faults

package faults_test

import (
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
)

// TestStreamPostgresCrash crashes the PostgreSQL server that holds
// TimescaleDB (pg_ctl stop -m immediate) three times while the simulator
// publishes 2,500 msg/s, starting it again after 2 s each time.
func TestStreamPostgresCrash(t *testing.T) {
	r := newRig(t, rigOptions{ownPostgres: true})
	r.StartWorker()
	r.start()
	load := r.load(loadRate, 0)
	var worst time.Duration
	for i := range 3 {
		before := load.Sent()
		load.WaitSent(before+7500, time.Minute) // 3 s of load
		committed := r.Committed()
		if err := r.pg.Crash(); err != nil {
			t.Fatal(err)
		}
		t.Logf("crash %d: PostgreSQL stopped -m immediate with %d committed, %d sent", i+1, committed, load.Sent())
		time.Sleep(2 * time.Second)
		if err := r.pg.Start(); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		// Recovered: the stream commits again, past what it had before.
		waitUntil(t, "commits after the restart", 2*time.Minute, func() bool { return r.Committed() > committed+1000 })
		worst = max(worst, time.Since(up))
		t.Logf("crash %d: committing again %s after the restart", i+1, time.Since(up).Round(100*time.Millisecond))
	}
	rep := load.Stop()
	lost, dup := r.settle(rep, 3*time.Minute)
	st := r.stop()
	t.Logf("final: %d lease attempts, %d failures, last error %q", st.LeaseAttempts, st.LeaseFailures, st.LastError)
	faultenv.Record(t, faultenv.Figures{Scenario: "postgres crash: stream", Faults: 3, Messages: rep.Sent, Lost: lost, Duplicated: dup, Recovery: worst})
}

//go:build faults

package faults_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/producer"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// The load of the stream scenarios: at least 2,000 msg/s while faults are
// injected, 1% malformed (of every quarantine kind), 2% anomalous.
const (
	loadRate     = 2500
	loadBadRatio = 0.01
)

// rig is a stream stack whose worker reaches every service through a
// Toxiproxy link: Kafka (the brokers advertise the link), TimescaleDB, the
// locations database, MySQL and Temporal. The test's own clients (the
// producer, the checks) connect directly.
type rig struct {
	*e2e.Stream
	t        *testing.T
	kafka    *faultenv.ProxiedKafka
	links    faultenv.Links
	pg       *testenv.PGCluster // when the databases are on a cluster of the test's own
	temporal *faultenv.Temporal // when the test has a Temporal server of its own
	run      client.WorkflowRun
}

type rigOptions struct {
	partitions int32
	// ownPostgres puts the TimescaleDB and locations databases on a
	// throwaway cluster the test may crash.
	ownPostgres bool
	// ownTemporal gives the test a file-backed dev server it may kill.
	ownTemporal bool
	kafka       []kfake.Opt
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.partitions == 0 {
		o.partitions = 4
	}
	r := &rig{t: t}
	px := faultenv.NewProxies(t)
	topic := "faults-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	r.kafka = px.Kafka(t, topic, o.partitions, o.kafka...)
	opts := e2e.StreamOptions{Partitions: o.partitions, Topic: topic, NoWorker: true,
		Cluster: func(k config.Kafka) config.Kafka {
			k.BootstrapServers = []string{r.kafka.Link.Addr()}
			return k
		},
		ProducerOptions: []kgo.Opt{r.kafka.Direct},
	}
	if o.ownPostgres {
		r.pg = testenv.StartPGCluster(t, testenv.PGOptions{})
		opts.Stack = testenv.DatabasesWith(t, func(c *config.Config) {
			c.Postgres = r.pg.Config(r.pg.Superuser, "", "")
			c.Timescale = r.pg.Config(r.pg.Superuser, "", "")
		})
	}
	if o.ownTemporal {
		r.temporal = faultenv.StartTemporal(t)
		opts.Temporal, opts.TC = r.temporal.Addr, r.temporal.Client()
	}
	r.Stream = e2e.NewStreamWith(t, opts)
	r.links = px.Wire(r.Stack.Config, r.Env)
	return r
}

// start starts the stream workflow with the fault suite's settings: two
// leases, a 5 s heartbeat timeout, commits at least every 100 ms.
func (r *rig) start() {
	r.t.Helper()
	r.run = r.Start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
}

// load publishes simulated readings of the stack's fleet at rate msg/s,
// limit messages in all (0: until stopped), event time from an hour ago.
func (r *rig) load(rate float64, limit int64) *faultenv.Load {
	return faultenv.StartLoad(r.t, r.Prod, producer.Options{Seed: 7, Devices: len(r.Fleet.Devices), Rate: rate, MaxMessages: limit,
		AnomalyRatio: 0.02, BadRatio: loadBadRatio, Start: time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)})
}

// settle waits until every message of rep is committed and checks the
// stream exactly; it returns the lost and duplicated messages for the
// figures (both 0 when the checks pass).
func (r *rig) settle(rep producer.Report, timeout time.Duration) (lost, duplicated int64) {
	r.t.Helper()
	r.waitCommitted(rep.Sent, timeout)
	want := faultenv.Expect(rep)
	e2e.CheckStreamExact(r.t, r.Stack, r.Prod, r.Topic, want)
	raw := r.Count(`SELECT count(*) FROM public.sensor_readings WHERE source = 'stream'`)
	lost = max(0, want.Produced-want.Quarantined-raw)
	duplicated = r.Count(`SELECT coalesce(sum(duplicates), 0) FROM public.stream_offsets WHERE topic = $1`, r.Topic)
	return lost, duplicated
}

// waitCommitted waits until n records are committed, without failing on
// a query error (the database may be restarting).
func (r *rig) waitCommitted(n int64, timeout time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var got int64
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.Stack.Timescale.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM public.stream_offsets WHERE topic = $1`, r.Topic).Scan(&got)
		cancel()
		if err == nil && got == n {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	r.t.Fatalf("committed %d of %d records after %s; status: %+v", got, n, timeout, r.statusOrZero())
}

func (r *rig) statusOrZero() workflows.StreamStatus {
	st, _ := r.StatusErr()
	return st
}

// stop stops the stream and waits for the workflow to complete.
func (r *rig) stop() workflows.StreamStatus {
	r.t.Helper()
	r.Signal(workflows.SignalStop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var st workflows.StreamStatus
	if err := r.run.Get(ctx, &st); err != nil {
		r.t.Fatalf("stream workflow: %v", err)
	}
	return st
}

// waitUntil polls cond every 200 ms until it holds; it returns how long
// that took, and fails the test after timeout.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

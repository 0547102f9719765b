// Package metrics is what a worker publishes for Prometheus, and its health
// endpoints.
//
// The pipeline's own series are named iotetl_*. Those that state where the
// pipeline is (records landed, offsets committed, lag, dead letters, batch
// runs and their figures) are read at scrape time from the tables that
// hold the truth (stream_offsets, stream_dead_letters, dwh.etl_runs) and
// from Kafka's end offsets: Kafka never sees the offsets iot-etl commits in
// PostgreSQL, so no off-the-shelf lag exporter can. They are the numbers
// `starter stream status` and `starter batch status` print, whichever
// worker serves them (aggregate with max without(instance)). Those that
// describe this process's work (commit latency, batch sizes, lease ends)
// are kept in memory. Connection pools and the Go runtime are exported
// too. docs/metrics.md lists every series.
package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Namespace prefixes every series of the pipeline.
const Namespace = "iotetl"

// Registry is a worker's metrics: a Prometheus registry with the Go
// runtime and process collectors, and the stream's in-process series.
type Registry struct {
	reg    *prometheus.Registry
	Stream *Stream
}

// New returns a registry with the runtime, process and stream series
// registered.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := newStream(reg)
	reg.MustRegister(s.commitSeconds, s.batchRecords, s.leaseEnds)
	return &Registry{reg: reg, Stream: s}
}

// Register adds collectors, such as a Pipeline or a pool's statistics.
func (r *Registry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Registerer is the registry for libraries that register their own series.
func (r *Registry) Registerer() prometheus.Registerer { return r.reg }

// Gatherer is the registry for reading the series back (tests, promtool).
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in the Prometheus text format. A collector
// that fails is reported in the scrape and does not hide the others.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Stream is the in-process series of the stream leases this worker runs.
// A nil *Stream records nothing, so the activities need no metrics in
// tests.
type Stream struct {
	reg           prometheus.Registerer
	commitSeconds *prometheus.HistogramVec
	batchRecords  *prometheus.HistogramVec
	leaseEnds     *prometheus.CounterVec
}

func newStream(reg prometheus.Registerer) *Stream {
	return &Stream{
		reg: reg,
		commitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "stream", Name: "commit_duration_seconds",
			Help:    "Time to commit one micro-batch (readings, windows, anomalies, dead letters and offsets in one transaction).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"topic"}),
		batchRecords: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "stream", Name: "batch_records",
			Help:    "Kafka records in one committed micro-batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 … 65536
		}, []string{"topic"}),
		leaseEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "stream", Name: "lease_ends_total",
			Help: "Consumer leases this worker ended, by cause: a lease that does not end expired, drained or cancelled is restarted by the stream workflow after a backoff.",
		}, []string{"topic", "cause"}),
	}
}

// Committed records one committed micro-batch of records Kafka records.
func (s *Stream) Committed(topic string, d time.Duration, records int) {
	if s == nil {
		return
	}
	s.commitSeconds.WithLabelValues(topic).Observe(d.Seconds())
	s.batchRecords.WithLabelValues(topic).Observe(float64(records))
}

// LeaseEnded records the end of a lease, by cause (expired, drained,
// cancelled, fenced, failed, ...).
func (s *Stream) LeaseEnded(topic, cause string) {
	if s == nil {
		return
	}
	s.leaseEnds.WithLabelValues(topic, cause).Inc()
}

// LeaseKafkaClient is the option that exports the Kafka client of the
// lease of slot (franz-go's kprom: connections, bytes, errors, fetched
// batches and records per broker and topic) as iotetl_kafka_*, labelled
// client="lease" and slot. They are unregistered when the client closes;
// while a client of the same slot is open on this worker, another one is
// not exported.
func (s *Stream) LeaseKafkaClient(slot int) kgo.Opt {
	if s == nil {
		return kgo.WithHooks()
	}
	labels := prometheus.Labels{"client": "lease", "slot": strconv.Itoa(slot)}
	return kgo.WithHooks(kprom.NewMetrics(Namespace, kprom.Subsystem("kafka"), kprom.Registerer(sharedRegisterer{s.reg}),
		kprom.WithStaticLabel(labels),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Batches, kprom.Records, kprom.UncompressedBytes, kprom.ConsistentNaming)))
}

// sharedRegisterer treats a collector registered already as registered:
// kprom registers on each new client and panics otherwise.
type sharedRegisterer struct{ prometheus.Registerer }

func (r sharedRegisterer) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		return nil
	}
	return err
}

func (r sharedRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

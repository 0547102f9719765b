package activities

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/reading"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/domain/transform"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// BenchmarkLeaseIngest measures the exactly-once consume path against its
// ceiling on this machine, in one run: $MESSAGES (default 200,000) readings
// of a 1000-device fleet, one minute apart per device, on 6 partitions;
//   - ceiling: the records fetched, decoded and COPYed into an empty copy
//     of sensor_readings in one COPY;
//   - ingest: 3 drain leases in parallel (runLease, no Temporal), each
//     micro-batch ($BATCH records, default 5000) one transaction with
//     windows, anomalies and offsets.
//
// Run it alone, once:
//
//	go test -run '^$' -bench LeaseIngest -benchtime 1x ./activities
func BenchmarkLeaseIngest(b *testing.B) {
	messages := 200_000
	if s := os.Getenv("MESSAGES"); s != "" {
		messages, _ = strconv.Atoi(s)
	}
	const partitions, leases, devices = 6, 3, 1000
	batchRecords := 5000
	if s := os.Getenv("BATCH"); s != "" {
		batchRecords, _ = strconv.Atoi(s)
	}
	s := testenv.Databases(b)
	_, brokers := testenv.Kafka(b, leaseTopic, partitions)
	s.Config.Kafka.BootstrapServers = brokers
	fleet := simulate.NewFleet(42, devices)
	ctx := context.Background()
	if err := seeder.ReplaceDevices(ctx, s.MySQL, fleet); err != nil {
		b.Fatal(err)
	}
	gen, err := simulate.NewGenerator(fleet, simulate.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	prod, err := kafka.NewClient(s.Config.Kafka, nil, kafka.ProducerOptions(leaseTopic)...)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(messages/devices+1) * time.Minute)
	for i := 0; i < messages; {
		recs := make([]*kgo.Record, 0, 10_000)
		for ; i < messages && len(recs) < cap(recs); i++ {
			dev := fleet.Devices[i%devices]
			r := gen.Live(dev, base.Add(time.Duration(i/devices)*time.Minute), rng, 0.01)
			recs = append(recs, &kgo.Record{Key: []byte(dev.ID), Value: reading.Encode(nil, r, int64(i))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	hwms, err := kafka.HighWatermarks(ctx, prod, leaseTopic)
	if err != nil {
		b.Fatal(err)
	}

	// Ceiling: fetch, decode, one COPY into an empty copy of the table.
	if _, err := s.Timescale.Exec(ctx, `CREATE TABLE public.ceiling (LIKE public.sensor_readings INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	rows := make([][]any, 0, messages)
	set := reading.NewDeviceSet(deviceIDs(fleet))
	cl, err := kafka.NewPartitionConsumer(s.Config.Kafka, nil, leaseTopic, map[int32]int64{0: 0, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0}, 0)
	if err != nil {
		b.Fatal(err)
	}
	for len(rows) < messages {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			r, _, err := reading.Decode(rec.Value, rec.Timestamp, reading.Limits{Devices: set})
			if err != nil {
				b.Fatal(err)
			}
			var v any
			if r.ValueValid {
				v = r.Value
			}
			rows = append(rows, []any{r.Time, r.DeviceID, v, r.Battery, r.RSSI, "stream"})
		})
	}
	cl.Close()
	if _, err := s.Timescale.CopyFrom(ctx, pgx.Identifier{"public", "ceiling"}, []string{"time", "device_id", "value", "battery", "rssi", "source"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	ceiling := time.Since(began)
	rows = nil

	// Ingest: drain leases in parallel.
	stream := &Stream{Timescale: s.Timescale, MySQL: s.MySQL, Kafka: s.Config.Kafka, Config: s.Config.Stream, Params: transform.DefaultParams()}
	b.ResetTimer()
	began = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, leases)
	for slot := range leases {
		in := LeaseInput{Topic: leaseTopic, Slot: slot, Duration: time.Hour, MaxBatchRecords: batchRecords, AllowedLateness: 10 * time.Minute, DrainTo: map[int32]int64{}}
		for p := int32(slot); p < partitions; p += leases {
			in.Partitions = append(in.Partitions, p)
			in.DrainTo[p] = hwms[p]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[slot] = stream.runLease(ctx, in, leaseHooks{owner: fmt.Sprint("bench-", slot)})
		}()
	}
	wg.Wait()
	ingest := time.Since(began)
	b.StopTimer()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	var landed int64
	if err := s.Timescale.QueryRow(ctx, `SELECT count(*) FROM public.sensor_readings`).Scan(&landed); err != nil {
		b.Fatal(err)
	}
	if landed != int64(messages) {
		b.Fatalf("ingest landed %d rows, want %d", landed, messages)
	}
	b.ReportMetric(float64(messages)/ceiling.Seconds(), "ceiling-msg/s")
	b.ReportMetric(float64(messages)/ingest.Seconds(), "ingest-msg/s")
	b.ReportMetric(ceiling.Seconds()/ingest.Seconds(), "ingest/ceiling")
}

func deviceIDs(f simulate.Fleet) []string {
	ids := make([]string, len(f.Devices))
	for i, d := range f.Devices {
		ids[i] = d.ID
	}
	return ids
}

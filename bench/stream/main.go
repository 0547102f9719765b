// Command stream measures the stream ETL in one run, on throwaway databases
// (iot_bench_stream_*) and an in-process Kafka cluster (kfake, 6
// partitions), and writes bench/results/stream.json:
//   - produce: the simulator pre-produces --messages readings of a
//     1000-device fleet, one minute apart per device in event time;
//   - ceiling: the same records fetched, decoded and COPYed into an empty
//     copy of sensor_readings in one COPY: the fastest this machine can land
//     them;
//   - naive: a consumer that INSERTs each message with autocommit, measured
//     on the first --naive-messages and extrapolated;
//   - ingest: the exactly-once path itself, the ConsumeLease activity of the
//     stream ETL as drain leases over all partitions, with the micro-batch
//     bounds of the configuration;
//   - latency: event-to-row latency while the simulator publishes at a
//     steady --latency-rate and leases consume;
//   - densities: for each of --densities, the ceiling and the ingest again
//     over the same number of messages with that many readings per device
//     per minute of event time, each on a fresh cluster and emptied sink
//     tables, checking the exact number of 1-minute window rows written.
//
// Run it from the repository root (--quick is a 200,000-message smoke run):
//
//	go run ./bench/stream [--messages 2000000] [--quick] [--densities 1,2,10] [--out bench/results/stream.json]
package main

import "github.com/iot-etl/iot-etl/internal/testsupport/benchutil"

func main() { benchutil.Main("bench/stream", run) }

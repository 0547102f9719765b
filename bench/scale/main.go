// Command scale measures scale-out: the batch ETL and the stream ETL, each
// with 1 and then 2 worker processes against one Temporal dev server, on
// throwaway databases (iot_bench_scale_*, created afresh for every run so
// the runs start from the same state). Next to the throughput and the
// ratio of 2 workers over 1, it records the CPU seconds each component
// spent in the timed part (the worker processes, the PostgreSQL server,
// the Temporal dev server, and this process, which hosts the in-process
// Kafka broker) and the CPU microseconds per row: on a machine with few
// cores the ratio is bounded by the cores, and the per-row cost is what
// projects to more machines. It writes bench/results/scale.json.
//
// Run it from the repository root (--quick is a small smoke run):
//
//	go run ./bench/scale [-devices 100 -days 7] [-messages 1000000] [-workers 1,2]
//	go run ./bench/scale -quick -out /tmp/scale-quick.json
package main

import "github.com/iot-etl/iot-etl/internal/testsupport/benchutil"

func main() { benchutil.Main("bench/scale", run) }

// Command soak runs the stream ETL for a long time under a steady load while
// worker processes are killed, and writes bench/results/soak.json. It starts
// its own stack: throwaway databases (iot_bench_soak_*), a Temporal dev
// server, an in-process Kafka cluster (kfake) and -workers worker processes
// serving the stream queue. It starts the stream workflow, publishes the
// project's simulator at -rate messages/s for -duration, and every
// -kill-every kills one worker with SIGKILL (the slots take turns) and
// starts a replacement. Every -sample it reads each worker's RSS and the lag
// (high watermarks - committed offsets); the event-to-commit latency of
// every record is measured as bench/stream measures it. At the end it waits
// for the stream to catch up and checks it exactly (streamcheck: raw rows =
// sent - malformed, dead letters = malformed, windows = a recomputation,
// offsets = high watermarks, 0 duplicates). It exits non-zero when a
// message was lost or duplicated or the check found anything.
//
// It is not part of `make bench` (30 minutes); run it with `make soak`:
//
//	go run ./bench/soak [-duration 30m] [-rate 10000] [-kill-every 5m]
//	go run ./bench/soak -duration 3m -kill-every 1m    # a smoke run
package main

import "github.com/iot-etl/iot-etl/internal/testsupport/benchutil"

func main() { benchutil.Main("bench/soak", run) }

// Package faults is the fault suite (`make test-faults`): the pipeline run
// against real servers while real faults are injected (a PostgreSQL crash,
// network partitions and slow links through Toxiproxy, a Temporal server
// killed with -9, broker errors and restarts, worker kills, a failing
// export store, source schema drift), each scenario asserting exact
// results. Its tests carry the build tag faults, so `make test` does not
// run them; docs/RELIABILITY.md tells what each scenario injects and
// asserts, with the figures of the last run (bench/results/faults.json).
package faults

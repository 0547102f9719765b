// Package faultenv injects real infrastructure faults for the fault tests
// (faults/): Toxiproxy links between a worker and each service it talks to
// (cut, latency, bandwidth), a Kafka cluster whose brokers are reached only
// through such a link, a file-backed Temporal dev server that can be killed
// and restarted, a throwaway PostgreSQL cluster that can crash, a load of
// simulated readings at a steady rate, and the record of what each scenario
// injected and measured.
package faultenv

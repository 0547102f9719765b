// Package internal holds everything of iot-etl that is not a command or a
// Temporal layer, in four layers. Each layer may import the ones below it,
// never the ones above; TestLayers (layers_test.go) enforces it.
//
//	platform/     config, logging: how a process is set up
//	adapter/      I/O: databases, Kafka, Temporal, object storage, probes
//	domain/       pure rules: readings, transform, anomaly, quality,
//	              windows, features, simulation, stream ingest, batch windows
//	testsupport/  harnesses for tests and benchmarks only
//
// Above them, activities/ glues adapters to the domain, workflows/ is
// deterministic orchestration (domain and activity types only), and
// worker/, starter/, devstack/ and bench/ are the commands.
package internal

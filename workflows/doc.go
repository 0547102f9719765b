// Package workflows holds the deterministic Temporal workflow code of
// iot-etl: BatchETLWorkflow (extract → transform → load → export, with a
// parked state that waits for an operator when Load keeps failing) and
// StreamIngestWorkflow (supervised Kafka consumer leases). Only workflow-safe
// APIs are used here: workflow.Now, workflow.Go, selectors, no wall clock,
// no randomness, no map iteration without sorting.
package workflows

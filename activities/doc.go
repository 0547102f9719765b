// Package activities holds the Temporal activities of iot-etl. Each is a
// method on a struct that holds its pools and clients; each is thin: it moves
// references (run key, window, chunk, shard), streams data through the
// store adapters and the pure domain packages, heartbeats its progress and
// resumes from it on retry. Rows never travel through Temporal.
package activities

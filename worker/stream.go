package main

import "go.temporal.io/sdk/worker"

// registerStream registers the stream ETL on w and reports whether there is
// anything to serve.
func registerStream(w worker.Worker, d deps) bool {
	return false
}

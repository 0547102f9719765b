// Package e2e holds the end-to-end stacks the worker tests and the fault
// tests share: a Batch (seeded source databases, a worker subprocess on a
// task queue of its own) and a Stream (a topic, a producer of simulated
// readings, a worker subprocess), with the checks that make their results
// exact: the fact checksum of a batch, and for a stream raw rows = valid
// messages, windows = a recomputation from the raw rows, committed offsets =
// high watermarks.
//
// A stack's Env is what its worker processes are started with; a test that
// puts proxies between the worker and a service rewrites Env before it
// starts a worker, and keeps using Stack (the direct connections) for its
// own checks.
package e2e

package main

import (
	"testing"

	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestMain stops the shared Temporal dev server after the tests. The
// end-to-end tests run the worker as a subprocess built with
// testenv.Build(t, "./worker") so they can SIGKILL it.
func TestMain(m *testing.M) { testenv.Main(m) }

//go:build faults

package faults_test

import (
	"os"
	"testing"

	"github.com/iot-etl/iot-etl/internal/testsupport/faultenv"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestMain runs the scenarios and writes their figures to
// bench/results/faults.json; the shared dev server is stopped after them.
func TestMain(m *testing.M) {
	code := faultenv.Main(m, "../bench/results/faults.json")
	testenv.StopShared()
	os.Exit(code)
}

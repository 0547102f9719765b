package sink_test

import (
	"testing"

	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

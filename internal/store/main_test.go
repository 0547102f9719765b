package store_test

import (
	"testing"

	"github.com/iot-etl/iot-etl/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

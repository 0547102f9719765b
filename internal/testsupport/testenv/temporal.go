package testenv

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
)

var (
	temporalOnce   sync.Once
	temporalAddr   string
	temporalErr    error
	temporalServer *temporalx.DevServer
)

// Temporal returns the host:port of a Temporal dev server shared by all tests
// of this test binary. IOT_TEST_TEMPORAL_ADDRESS selects an already running
// server; otherwise one is started on free ports (headless, in memory) and
// stopped by Main.
func Temporal(t testing.TB) string {
	t.Helper()
	Integration(t)
	temporalOnce.Do(func() {
		ctx := context.Background()
		if a := os.Getenv("IOT_TEST_TEMPORAL_ADDRESS"); a != "" {
			temporalAddr = a
			temporalErr = temporalx.WaitReady(ctx, a, 60*time.Second)
			return
		}
		temporalServer, temporalErr = temporalx.StartDevServer(ctx)
		if temporalErr == nil {
			temporalAddr = temporalServer.Addr
		}
	})
	if temporalErr != nil {
		Unavailable(t, "Temporal dev server", temporalErr)
	}
	return temporalAddr
}

// TemporalClient dials the shared dev server; the client is closed with the test.
func TemporalClient(t testing.TB) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: Temporal(t), Namespace: "default", Logger: temporalx.Silent})
	if err != nil {
		t.Fatalf("dial temporal: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// FreePort asks the kernel for an unused TCP port on 127.0.0.1.
func FreePort() (int, error) { return temporalx.FreePort() }

// Main runs the tests of a package and then stops the shared servers:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the servers shared by the tests of the binary: for a
// TestMain that does more than Main.
func StopShared() { temporalServer.Stop() }

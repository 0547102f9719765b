package faultenv

import (
	"context"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// Temporal is a dev server of the test's own that persists to a SQLite
// file, so it can be killed (kill -9) and started again with every
// workflow, timer and task intact.
type Temporal struct {
	*temporalx.DevServer
	t testing.TB
}

// StartTemporal starts a file-backed dev server, stopped with the test.
func StartTemporal(t testing.TB) *Temporal {
	t.Helper()
	testenv.Integration(t)
	srv, err := temporalx.StartDevServerWith(context.Background(), temporalx.DevServerOptions{DBFile: filepath.Join(t.TempDir(), "temporal.db")})
	if err != nil {
		testenv.Unavailable(t, "Temporal dev server", err)
	}
	t.Cleanup(srv.Stop)
	return &Temporal{DevServer: srv, t: t}
}

// Client dials the server (directly, never through a link); it is closed
// with the test and reconnects by itself after a restart.
func (s *Temporal) Client() client.Client {
	s.t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.Addr, Namespace: "default", Logger: temporalx.Silent})
	if err != nil {
		s.t.Fatalf("dial temporal: %v", err)
	}
	s.t.Cleanup(c.Close)
	return c
}

// Restart starts the server again after Kill.
func (s *Temporal) Restart() {
	s.t.Helper()
	if err := s.Start(context.Background()); err != nil {
		s.t.Fatalf("restart temporal: %v", err)
	}
}

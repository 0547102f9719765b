package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// temporalInstallHint is the one way to get the CLI that the project
// supports; newer CLI versions do not build with `go install`.
const temporalInstallHint = "run `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` (or `make tools`)"

// temporalComponent is the Temporal frontend plus its web UI: an external
// server, or the CLI dev server persisted in DIR/temporal/temporal.db.
type temporalComponent struct {
	s   *stack
	cfg config.Temporal
	// binary finds the temporal CLI; tests replace it.
	binary func() (string, error)
}

func newTemporal(s *stack, cfg config.Temporal) *temporalComponent {
	return &temporalComponent{s: s, cfg: cfg, binary: temporalx.Binary}
}

func (t *temporalComponent) Name() string                { return "temporal" }
func (t *temporalComponent) Addr() string                { return t.cfg.Address }
func (t *temporalComponent) Service() string             { return "Temporal" }
func (t *temporalComponent) AddrVars() string            { return "TEMPORAL_ADDRESS" }
func (t *temporalComponent) StartTimeout() time.Duration { return 2 * time.Minute }
func (t *temporalComponent) StopSignal() syscall.Signal  { return syscall.SIGTERM }

func (t *temporalComponent) Owns(args []string) bool {
	return slices.Contains(args, "server") && slices.Contains(args, "start-dev")
}

// sdkLogger keeps the SDK's chatter out of devstack's output; warnings and
// errors still reach stderr.
var sdkLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// Probe checks the frontend's health and that the namespace exists.
func (t *temporalComponent) Probe(ctx context.Context) error {
	c, err := temporalx.DialWith(ctx, t.cfg, temporalx.Silent)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		return err
	}
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: t.cfg.Namespace})
	var nf *serviceerror.NamespaceNotFound
	if errors.As(err, &nf) {
		return answered("Temporal at %s has no namespace %q: create it with `temporal operator namespace create --address %s %s`, or set TEMPORAL_NAMESPACE",
			t.cfg.Address, t.cfg.Namespace, t.cfg.Address, t.cfg.Namespace)
	}
	return err
}

func (t *temporalComponent) uiAddr() (string, error) {
	u, err := url.Parse(t.cfg.UIURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("TEMPORAL_UI_URL=%q: want a URL such as http://127.0.0.1:8233", t.cfg.UIURL)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

func (t *temporalComponent) Command(ctx context.Context, log io.Writer) (*exec.Cmd, error) {
	host, port, err := portOf(t.cfg.Address)
	if err != nil {
		return nil, err
	}
	if !isLocalHost(host) {
		return nil, notLocalError(t.cfg.Address, "the Temporal dev server", t.AddrVars())
	}
	uiAddr, err := t.uiAddr()
	if err != nil {
		return nil, err
	}
	_, uiPort, err := portOf(uiAddr)
	if err != nil {
		return nil, err
	}
	// The dev server would die on a taken UI port after the slow part of
	// its start; say so now, and why.
	if listening(ctx, uiAddr) {
		if t.uiAnswers(ctx) == nil {
			return nil, fmt.Errorf("%s is in use by the Temporal UI of another server, not one at %s (stop that server or set TEMPORAL_UI_URL)", uiAddr, t.cfg.Address)
		}
		return nil, portTakenError(uiAddr, "the Temporal UI", "TEMPORAL_UI_URL")
	}
	bin, err := t.binary()
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		return nil, fmt.Errorf("nothing answers at %s and the temporal CLI that would start a dev server was not found: %s", t.cfg.Address, temporalInstallHint)
	}
	dbDir := t.s.path("temporal")
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		return nil, err
	}
	ip := host
	if ip == "localhost" || ip == "" {
		ip = "127.0.0.1"
	}
	args := []string{"server", "start-dev",
		"--ip", ip, "--port", strconv.Itoa(port), "--ui-port", strconv.Itoa(uiPort),
		"--db-filename", filepath.Join(dbDir, "temporal.db"),
		"--log-format", "json"}
	if t.cfg.Namespace != "default" {
		args = append(args, "--namespace", t.cfg.Namespace)
	}
	args = append(args, temporalx.DevServerArgs()...)
	return exec.Command(bin, args...), nil
}

// uiAnswers checks that the UI serves its page and its settings API, which
// only the Temporal UI server has.
func (t *temporalComponent) uiAnswers(ctx context.Context) error {
	hc := &http.Client{Timeout: 3 * time.Second}
	for _, u := range []string{t.cfg.UIURL, t.cfg.UIURL + "/api/v1/settings"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		var settings struct{ Version string }
		if u != t.cfg.UIURL && resp.StatusCode == http.StatusOK {
			err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&settings)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		if err != nil || (u != t.cfg.UIURL && settings.Version == "") {
			return fmt.Errorf("GET %s: not the Temporal UI's settings", u)
		}
	}
	return nil
}

// Prepare waits for the UI of a dev server devstack runs, and registers the
// search attributes the workflows need on any server.
func (t *temporalComponent) Prepare(ctx context.Context, managed bool) error {
	if managed {
		var err error
		for deadline := time.Now().Add(30 * time.Second); ; {
			if err = t.uiAnswers(ctx); err == nil || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("the Temporal UI at %s: %w", t.cfg.UIURL, err)
		}
	}
	c, err := temporalx.Dial(ctx, t.cfg, sdkLogger)
	if err != nil {
		return err
	}
	defer c.Close()
	return temporalx.EnsureSearchAttributes(ctx, c, t.cfg.Namespace)
}

func (t *temporalComponent) Describe(ctx context.Context) string {
	if err := t.uiAnswers(ctx); err != nil {
		return fmt.Sprintf("ui %s not answering (%v)", t.cfg.UIURL, err)
	}
	return "ui " + t.cfg.UIURL
}

// Package temporalx dials Temporal with the project's logger and declares the
// custom search attributes every workflow relies on, so the dev stack, the
// tests and a production cluster register the same set.
package temporalx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/platform/logging"
)

// SearchAttributes are the custom search attributes the workflows upsert, by
// name. Runs can be filtered on them in the Temporal UI.
var SearchAttributes = map[string]enumspb.IndexedValueType{
	"Pipeline":    enumspb.INDEXED_VALUE_TYPE_KEYWORD,  // batch or stream
	"WindowStart": enumspb.INDEXED_VALUE_TYPE_DATETIME, // batch window start
	"RowsLoaded":  enumspb.INDEXED_VALUE_TYPE_INT,      // fact rows upserted
	"DQScore":     enumspb.INDEXED_VALUE_TYPE_DOUBLE,   // mean quality score
	"Phase":       enumspb.INDEXED_VALUE_TYPE_KEYWORD,  // awaiting_approval while a run waits at the data-quality gate
}

// DevServerArgs are the `temporal server start-dev` arguments of every dev
// server the project starts (devstack, tests, benchmarks) besides its
// address and storage: the search attributes (CLIFlags), and task queues
// of one partition. The server's default of four partitions made a
// scheduled activity wait up to 1.6 s for a worker that was polling:
// with a worker's few pollers, a task that lands in a partition no poller
// is waiting on waits in its backlog (the 1 M batch benchmark saw it
// before LoadFacts in 7 runs of 10). A cluster whose queues have many
// pollers keeps its partitions; see docs/PERFORMANCE.md.
func DevServerArgs() []string {
	args := []string{"--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
		"--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"}
	for _, sa := range CLIFlags() {
		args = append(args, "--search-attribute", sa)
	}
	return args
}

// CLIFlags renders SearchAttributes as `temporal server start-dev
// --search-attribute` values, sorted by name.
func CLIFlags() []string {
	names := make([]string, 0, len(SearchAttributes))
	for n := range SearchAttributes {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]string, 0, len(names))
	for _, n := range names {
		t := strings.TrimPrefix(SearchAttributes[n].String(), "INDEXED_VALUE_TYPE_")
		out = append(out, n+"="+cliTypeName(t))
	}
	return out
}

func cliTypeName(t string) string {
	switch t {
	case "KEYWORD":
		return "Keyword"
	case "DATETIME":
		return "Datetime"
	case "INT":
		return "Int"
	case "DOUBLE":
		return "Double"
	case "BOOL":
		return "Bool"
	case "TEXT":
		return "Text"
	case "KEYWORD_LIST":
		return "KeywordList"
	}
	return t
}

// Options are the client options for the configured frontend: address,
// namespace, TLS (server verification and an optional client certificate)
// and the API key, which travels as gRPC metadata and never in a payload.
func Options(t config.Temporal, logger tlog.Logger) (client.Options, error) {
	opts := client.Options{HostPort: t.Address, Namespace: t.Namespace, Logger: logger}
	if t.TLSEnabled() {
		host, _, _ := net.SplitHostPort(t.Address)
		tc, err := t.TLS.ClientConfig(host)
		if err != nil {
			return opts, fmt.Errorf("temporal TLS: %w", err)
		}
		opts.ConnectionOptions.TLS = tc
	}
	if t.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey.Reveal())
	}
	return opts, nil
}

// Dial connects to the configured Temporal frontend and namespace; extra
// changes the client's options (its metrics handler, say).
func Dial(ctx context.Context, t config.Temporal, log *slog.Logger, extra ...func(*client.Options)) (client.Client, error) {
	var logger tlog.Logger
	if log != nil {
		logger = logging.Temporal(log)
	}
	return DialWith(ctx, t, logger, extra...)
}

// DialWith is Dial with an SDK logger of the caller's choice (a silent one
// for probes).
func DialWith(ctx context.Context, t config.Temporal, logger tlog.Logger, extra ...func(*client.Options)) (client.Client, error) {
	opts, err := Options(t, logger)
	if err != nil {
		return nil, err
	}
	for _, f := range extra {
		f(&opts)
	}
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("temporal %s (namespace %s): %w", t.Address, t.Namespace, err)
	}
	return c, nil
}

// EnsureSearchAttributes registers whichever of SearchAttributes the
// namespace lacks. It is idempotent.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	existing, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range SearchAttributes {
		if _, ok := existing.GetCustomAttributes()[name]; !ok {
			missing[name] = typ
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}

// Binary finds the temporal CLI: $TEMPORAL_BIN, then PATH, then
// $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p := os.Getenv("TEMPORAL_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = string(out[:len(out)-1])
		}
	}
	p := filepath.Join(gopath, "bin", "temporal")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("temporal CLI not found: run `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` or set TEMPORAL_BIN")
	}
	return p, nil
}

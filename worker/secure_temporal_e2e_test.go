package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/iot-etl/iot-etl/internal/adapter/store/seeder"
	"github.com/iot-etl/iot-etl/internal/domain/batch"
	"github.com/iot-etl/iot-etl/internal/domain/simulate"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// secureDay is the seeded day; the test-mode run loads its first hour.
var secureDay = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// secureStack is one test's seeded databases, the shared dev server behind
// an mTLS proxy and an API-key proxy, and the worker and starter binaries.
type secureStack struct {
	t       *testing.T
	stack   *testenv.Stack
	certs   *testenv.Certs
	mtls    *testenv.TemporalProxy
	keyed   *testenv.TemporalProxy
	apiKey  string
	worker  string
	starter string

	// What the test-mode run must load: the first TestModeMaxDevices
	// devices by id and their readings of the first hour.
	devices, rows int64
}

func newSecureStack(t *testing.T) *secureStack {
	t.Helper()
	s := testenv.Databases(t)
	dev := testenv.Temporal(t)
	_, brokers := testenv.Kafka(t, s.Config.Kafka.Topic, 3)
	s.Config.Kafka.BootstrapServers = brokers
	s.Config.Export.URL = t.TempDir()
	ctx := context.Background()
	if _, err := seeder.Run(ctx, s.DBs, seeder.Options{
		Seed: 11, Devices: 12, Days: batch.Window{Start: secureDay, End: secureDay.Add(24 * time.Hour)}, Sim: simulate.DefaultOptions(),
	}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	certs := testenv.NewCerts(t)
	st := &secureStack{t: t, stack: s, certs: certs, apiKey: "tk_" + hex.EncodeToString(key)}
	st.mtls = testenv.StartTemporalMTLSProxy(t, certs, dev)
	st.keyed = testenv.StartTemporalAPIKeyProxy(t, certs, dev, st.apiKey)
	st.worker, st.starter = testenv.Build(t, "./worker"), testenv.Build(t, "./starter")

	rows, err := s.MySQL.QueryContext(ctx, `SELECT device_id FROM devices ORDER BY device_id LIMIT ?`, batch.TestModeMaxDevices)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	st.devices = int64(len(ids))
	if err := s.Timescale.QueryRow(ctx, `SELECT count(*) FROM public.sensor_readings WHERE time >= $1 AND time < $2 AND device_id = ANY($3)`,
		secureDay, secureDay.Add(batch.TestModeWindow), ids).Scan(&st.rows); err != nil {
		t.Fatal(err)
	}
	if st.devices != batch.TestModeMaxDevices || st.rows == 0 {
		t.Fatalf("seed: %d devices, %d readings in the test-mode hour", st.devices, st.rows)
	}
	return st
}

// env is the configuration of a worker or starter reaching Temporal at
// address with tc's TLS settings and apiKey, serving a task queue of its
// own.
func (s *secureStack) env(address string, tls config.TLS, apiKey string) map[string]string {
	cfg := *s.stack.Config
	cfg.Temporal.Address = address
	cfg.Temporal.TLS = tls
	cfg.Temporal.APIKey = config.Secret(apiKey)
	cfg.Temporal.BatchTaskQueue = "secure-" + strings.ToLower(strings.ReplaceAll(s.t.Name(), "/", "-"))
	return testenv.EnvMap(&cfg)
}

// runStarterBin runs the starter binary and returns its exit code, stdout
// and stderr.
func runStarterBin(t *testing.T, bin string, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := testenv.Command(ctx, bin, env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("starter %s: %v", strings.Join(args, " "), err)
	return 0, "", ""
}

// summaryValue is the value of a row of the batch run's summary table.
func summaryValue(t *testing.T, out, row string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(row) + `  +(.+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q row in the summary:\n%s", row, out)
	}
	return m[1]
}

// batchRun runs `starter batch run --test-mode` over the seeded day with
// a worker serving the same configuration, and checks the exact figures.
// It returns the run's workflow id, its fact checksum and every output.
func (s *secureStack) batchRun(env map[string]string) (id, checksum, output string) {
	t := s.t
	t.Helper()
	w := testenv.Start(t, "worker", s.worker, env, "-queues", "batch")
	id = "secure-batch-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-" + fmt.Sprint(time.Now().UnixNano())
	code, out, errOut := runStarterBin(t, s.starter, env, "batch", "run", "--test-mode", "--from", secureDay.Format("2006-01-02"), "--id", id)
	if code != 0 {
		t.Fatalf("batch run: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := fmt.Sprintf("batch run %s started: window [2026-11-02T00:00:00Z, 2026-11-02T01:00:00Z), test mode\n", id)
	if !strings.HasPrefix(out, want) {
		t.Errorf("output starts %q, want %q", strings.SplitN(out, "\n", 2)[0], want)
	}
	for row, value := range map[string]string{
		"status":              "succeeded",
		"window":              "[2026-11-02T00:00:00Z, 2026-11-02T01:00:00Z)",
		"devices":             fmt.Sprint(s.devices),
		"readings extracted":  fmt.Sprintf("%d (window + lookback)", s.rows),
		"rejected":            "0",
		"fact rows in window": fmt.Sprint(s.rows),
		"load attempts":       "1",
	} {
		if got := summaryValue(t, out, row); got != value {
			t.Errorf("summary %s = %q, want %q", row, got, value)
		}
	}
	var facts int64
	if err := s.stack.Timescale.QueryRow(context.Background(), `SELECT count(*) FROM dwh.fact_sensor_readings_enriched`).Scan(&facts); err != nil {
		t.Fatal(err)
	}
	if facts != s.rows {
		t.Errorf("%d fact rows in the warehouse, want %d", facts, s.rows)
	}
	if err := w.Stop(30 * time.Second); err != nil {
		t.Errorf("worker stop: %v", err)
	}
	return id, summaryValue(t, out, "fact checksum"), out + errOut + w.Log()
}

// temporalLine is the Temporal line of `starter check`, which must exit 1
// with Temporal the only failed component.
func (s *secureStack) temporalLine(env map[string]string) string {
	t := s.t
	t.Helper()
	code, out, errOut := runStarterBin(t, s.starter, env, "check", "-timeout", "10s")
	if code != 1 || errOut != "starter check: 1 component failed\n" || strings.Count(out, " OK ") != 5 {
		t.Errorf("check: exit %d, want 1 with the 5 other components OK\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	line := temporalCheckLine(out)
	if line == "" {
		t.Fatalf("no Temporal line:\n%s", out)
	}
	return line
}

// wantFailure checks a Temporal check line: address, the diagnosis, and
// the client's own error at the end.
func wantFailure(t *testing.T, line, address, diagnosis, cause string) {
	t.Helper()
	want := regexp.MustCompile(`^Temporal +` + regexp.QuoteMeta(address) + ` +FAILED: ` + regexp.QuoteMeta(diagnosis) +
		regexp.QuoteMeta(": temporal "+address+" (namespace default): ") + `.*` + regexp.QuoteMeta(cause) + `$`)
	if !want.MatchString(line) {
		t.Errorf("Temporal line =\n  %q\nwant\n  %q ... %q", line, diagnosis, cause)
	}
}

// TestSecureTemporalMTLS: a worker and `starter batch run` reach Temporal
// only through a proxy that demands a client certificate of the test CA,
// and the test-mode run loads exactly its devices and readings. check
// without the client certificate, or trusting another CA, names the TLS
// failure.
func TestSecureTemporalMTLS(t *testing.T) {
	s := newSecureStack(t)
	good := config.TLS{CA: s.certs.CA, Cert: s.certs.ClientCert, Key: s.certs.ClientKey}
	env := s.env(s.mtls.Addr, good, "")
	s.batchRun(env)
	if s.mtls.Admitted() == 0 || s.mtls.Refused() != 0 {
		t.Errorf("proxy admitted %d and refused %d connections: the run did not go through it", s.mtls.Admitted(), s.mtls.Refused())
	}

	code, out, errOut := runStarterBin(t, s.starter, env, "check")
	if line := temporalCheckLine(out); code != 0 || !strings.HasSuffix(line, "OK   namespace default (Registered), UI http://127.0.0.1:8233 (mTLS)") {
		t.Errorf("check: exit %d, Temporal line %q\n%s", code, line, errOut)
	}

	t.Run("no client certificate", func(t *testing.T) {
		line := s.temporalLine(s.env(s.mtls.Addr, config.TLS{CA: s.certs.CA}, ""))
		t.Log(line)
		wantFailure(t, line, s.mtls.Addr, "TLS: the server requires a client certificate (check TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY)",
			`connection error: desc = "error reading server preface: remote error: tls: certificate required"`)
	})
	// A Go client sends no certificate that the CAs the server names in
	// its request did not sign, so the server sees none at all.
	t.Run("client certificate of another CA", func(t *testing.T) {
		line := s.temporalLine(s.env(s.mtls.Addr, config.TLS{CA: s.certs.CA, Cert: s.certs.OtherClientCert, Key: s.certs.OtherClientKey}, ""))
		t.Log(line)
		wantFailure(t, line, s.mtls.Addr, "TLS: the server requires a client certificate (check TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY)",
			`connection error: desc = "error reading server preface: remote error: tls: certificate required"`)
	})
	t.Run("unknown CA", func(t *testing.T) {
		line := s.temporalLine(s.env(s.mtls.Addr, config.TLS{CA: s.certs.OtherCA, Cert: s.certs.ClientCert, Key: s.certs.ClientKey}, ""))
		t.Log(line)
		wantFailure(t, line, s.mtls.Addr, "TLS: the server's certificate is signed by an unknown certificate authority (check TEMPORAL_TLS_CA)",
			`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`)
	})
}

// TestSecureTemporalAPIKey: a worker and `starter batch run` reach
// Temporal only through a proxy that demands the API key on every call;
// the run loads exactly its devices and readings; check with a wrong key
// names the credentials; and the key appears in no output and nowhere in
// the workflow's history.
func TestSecureTemporalAPIKey(t *testing.T) {
	s := newSecureStack(t)
	env := s.env(s.keyed.Addr, config.TLS{CA: s.certs.CA}, s.apiKey)
	id, _, output := s.batchRun(env)
	if s.keyed.Admitted() == 0 || s.keyed.Refused() != 0 {
		t.Errorf("proxy admitted %d and refused %d calls: the run did not go through it", s.keyed.Admitted(), s.keyed.Refused())
	}

	code, out, errOut := runStarterBin(t, s.starter, env, "check")
	output += out + errOut
	if line := temporalCheckLine(out); code != 0 || !strings.HasSuffix(line, "OK   namespace default (Registered), UI http://127.0.0.1:8233 (TLS, API key)") {
		t.Errorf("check: exit %d, Temporal line %q\n%s", code, line, errOut)
	}

	wrong := "tk_" + strings.Repeat("0", 32)
	code, out, errOut = runStarterBin(t, s.starter, s.env(s.keyed.Addr, config.TLS{CA: s.certs.CA}, wrong), "check", "-timeout", "10s")
	output += out + errOut
	line := temporalCheckLine(out)
	t.Log(line)
	if code != 1 {
		t.Errorf("check with a wrong key: exit %d, want 1", code)
	}
	wantFailure(t, line, s.keyed.Addr,
		"authentication: the Temporal frontend rejected the credentials (check TEMPORAL_API_KEY, TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY)",
		"rpc error: code = Unauthenticated desc = invalid API key")
	if strings.Contains(output, wrong) {
		t.Error("the wrong key appears in the output")
	}
	if strings.Contains(output, s.apiKey) {
		t.Errorf("the API key appears in the output of the worker or the starter")
	}

	// The history, as the Temporal UI and any archive hold it.
	tc := testenv.TemporalClient(t)
	it := tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var history bytes.Buffer
	var events int
	var last enumspb.EventType
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events++
		last = ev.GetEventType()
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		history.Write(b)
		if b, err = protojson.Marshal(ev); err != nil {
			t.Fatal(err)
		}
		history.Write(b)
	}
	if last != enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED {
		t.Errorf("history of %d events ends with %v, want WorkflowExecutionCompleted", events, last)
	}
	// The search finds what the history does hold: the task queue and
	// the window.
	for _, held := range []string{env["TEMPORAL_BATCH_TASK_QUEUE"], "2026-11-02T01:00:00Z"} {
		if !bytes.Contains(history.Bytes(), []byte(held)) {
			t.Errorf("the history does not hold %q: the search cannot be trusted", held)
		}
	}
	if bytes.Contains(history.Bytes(), []byte(s.apiKey)) {
		t.Errorf("the API key appears in the workflow history")
	}
}

// temporalCheckLine is the Temporal line of `starter check` output.
func temporalCheckLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Temporal ") {
			return l
		}
	}
	return ""
}

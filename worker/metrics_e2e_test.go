package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestPrometheusScrapesWorker runs a real Prometheus server (Debian's
// binary) that scrapes a worker serving both queues, with the project's
// alert rules loaded, while the stream ingests and a batch runs. Through
// Prometheus's HTTP API the pipeline series have the exact values the
// test knows: the lag of a paused stream equals what was published since,
// and returns to 0 after resume; dead letters by reason and inserted
// records equal what was produced; the batch's rows loaded equal its
// result's.
func TestPrometheusScrapesWorker(t *testing.T) {
	testenv.Integration(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Unavailable(t, "prometheus (Debian's prometheus package)", err)
	}
	st := e2e.NewStreamWith(t, e2e.StreamOptions{Partitions: 2, NoWorker: true})
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	workerAddr := fmt.Sprintf("127.0.0.1:%d", port)
	st.Env["METRICS_ADDR"] = workerAddr
	st.Env["TEMPORAL_BATCH_TASK_QUEUE"] = "batch-" + st.Topic
	st.Worker = testenv.Start(t, "worker", testenv.Build(t, "./worker"), st.Env, "-queues", "batch,stream", "-stop-timeout", "5s")
	prom := startPrometheus(t, promBin, workerAddr)

	prom.until(t, "the worker is scraped and ready", `up{job="iot-etl-worker"} * on (instance) iotetl_worker_ready`, 1)
	rules := prom.get(t, "/api/v1/rules", nil)
	var groups struct {
		Groups []struct {
			Rules []struct{ Name string } `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(rules, &groups); err != nil || len(groups.Groups) != 1 || len(groups.Groups[0].Rules) != 7 {
		t.Errorf("rules loaded: %s (%v), want the 7 of monitoring/alerts.yml", rules, err)
	}

	// The stream: 300 messages consumed, then paused while 150 more are
	// published (the lag is exactly those), then resumed (the lag is 0).
	st.Start(workflows.StreamInput{Leases: 2, LeaseDuration: time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	st.Produce(300)
	st.WaitConsumed(time.Minute)
	topic := fmt.Sprintf(`topic=%q`, st.Topic)
	prom.until(t, "no lag after the first 300", `sum(iotetl_stream_lag_messages{`+topic+`})`, 0)
	st.Signal(workflows.SignalPause)
	st.StatusUntil("paused, no lease running", func(s workflows.StreamStatus) bool {
		return s.State == workflows.StreamPaused && !slices.ContainsFunc(s.Leases, func(l workflows.LeaseStatus) bool { return l.Running })
	})
	prom.until(t, "paused", `iotetl_stream_paused{`+topic+`}`, 1)
	st.Produce(150)
	prom.until(t, "the lag of the paused stream", `sum(iotetl_stream_lag_messages{`+topic+`})`, 150)
	st.Signal(workflows.SignalResume)
	st.WaitConsumed(time.Minute)
	prom.until(t, "the lag back to 0", `sum(iotetl_stream_lag_messages{`+topic+`})`, 0)
	prom.until(t, "running", `iotetl_stream_paused{`+topic+`}`, 0)
	// The leases started by resume fetched exactly the 150 (franz-go's
	// client metrics, per lease client).
	prom.until(t, "records fetched by the new leases", `sum(iotetl_kafka_fetch_records_total{client="lease",`+topic+`})`, 150)
	produced, malformed := st.Counts()
	prom.until(t, "dead letters by reason", `iotetl_stream_dead_letters_total{`+topic+`,reason="not_json"}`, float64(malformed))
	prom.until(t, "records inserted", `sum(iotetl_stream_records_total{`+topic+`,outcome="inserted"})`, float64(produced-malformed))
	prom.until(t, "records dead-lettered", `sum(iotetl_stream_records_total{`+topic+`,outcome="dead_letter"})`, float64(malformed))
	if v := prom.query(t, `sum(iotetl_stream_commit_duration_seconds_count{`+topic+`})`); v < 1 {
		t.Errorf("%v commits timed, want at least 1", v)
	}
	st.CheckExact()

	// The batch, on the same databases, seeded over the stream's devices.
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Devices: 3, Stack: st.Stack, NoWorker: true,
		Configure: func(c *config.Config) { c.Temporal.BatchTaskQueue = st.Env["TEMPORAL_BATCH_TASK_QUEUE"] }})
	res := b.Wait(b.Start(workflows.BatchInput{}))
	if res.RowsLoaded == 0 {
		t.Fatal("the batch loaded no rows")
	}
	prom.until(t, "a succeeded run", `iotetl_batch_runs{status="succeeded"}`, 1)
	prom.until(t, "rows loaded", `iotetl_batch_last_run_rows_loaded`, float64(res.RowsLoaded))
	prom.until(t, "rows loaded in total", `iotetl_batch_rows_loaded_total`, float64(res.RowsLoaded))
	prom.until(t, "no parked run", `sum(iotetl_batch_parked_runs)`, 0)
	var finished float64
	if err := b.Stack.Timescale.QueryRow(t.Context(), `SELECT extract(epoch FROM date_trunc('milliseconds', finished_at))::float8
		FROM dwh.etl_runs WHERE status = 'succeeded'`).Scan(&finished); err != nil {
		t.Fatal(err)
	}
	prom.until(t, "the last success", `iotetl_batch_last_success_timestamp_seconds`, finished)
	// The Temporal SDK's series, through OpenTelemetry, in seconds and
	// with _total on counters.
	for _, expr := range []string{
		`sum(temporal_activity_execution_latency_seconds_count{task_queue="` + st.Env["TEMPORAL_BATCH_TASK_QUEUE"] + `"})`,
		`sum(temporal_activity_schedule_to_start_latency_seconds_count)`,
		`sum(temporal_workflow_task_execution_latency_seconds_count)`,
		`sum(temporal_request_total)`,
		`count(temporal_worker_task_slots_available)`,
	} {
		if v := prom.query(t, expr); !(v >= 1) {
			t.Errorf("%s = %v, want at least 1", expr, v)
		}
	}
	// Log lines of activities carry their workflow, run, type and attempt;
	// those of a lease its partitions and their epochs too.
	checkActivityLogs(t, st.Worker.Log())

	var names []string
	if err := json.Unmarshal(prom.get(t, "/api/v1/label/__name__/values", nil), &names); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, n := range names {
		scraped[n] = true
	}
	checkMonitoringExprs(t, scraped)

	// The TimescaleDB pool holds two connections per batch activity (4 by
	// default) and 4 more.
	prom.until(t, "the pool's size", `iotetl_pgxpool_max_connections{pool="timescale"}`, 12)
}

type prometheusServer struct{ base string }

// startPrometheus starts Prometheus scraping target every second as job
// iot-etl-worker, with monitoring/alerts.yml loaded, and waits until it is
// ready.
func startPrometheus(t *testing.T, bin, target string) prometheusServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs("../monitoring/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: iot-etl-worker
    static_configs: [{targets: [%q]}]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	testenv.Start(t, "prometheus", bin, nil, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	p := prometheusServer{base: "http://" + addr}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus at %s not ready after a minute: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get returns the data of an API call.
func (p prometheusServer) get(t *testing.T, path string, params url.Values) json.RawMessage {
	t.Helper()
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if body.Status != "success" {
		t.Fatalf("GET %s %v: %s", path, params, body.Error)
	}
	return body.Data
}

// query evaluates a PromQL expression of one series and returns its value;
// NaN when there is no series.
func (p prometheusServer) query(t *testing.T, expr string) float64 {
	t.Helper()
	var data struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(p.get(t, "/api/v1/query", url.Values{"query": {expr}}), &data); err != nil {
		t.Fatal(err)
	}
	switch len(data.Result) {
	case 0:
		return nan()
	case 1:
		s, _ := data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s: value %q", expr, s)
		}
		return v
	}
	t.Fatalf("%s: %d series, want 1", expr, len(data.Result))
	return 0
}

// until waits up to a minute for expr to evaluate to want.
func (p prometheusServer) until(t *testing.T, what, expr string, want float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var got float64
	for time.Now().Before(deadline) {
		if got = p.query(t, expr); got == want {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %s = %v after a minute, want %v", what, expr, got, want)
}

func nan() float64 { v, _ := strconv.ParseFloat("NaN", 64); return v }

// checkActivityLogs checks that the lines of the stream leases and of the
// batch activities in a worker's log carry the context docs/metrics.md
// documents.
func checkActivityLogs(t *testing.T, log string) {
	t.Helper()
	leaseLines, batchLines := 0, 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "duplicate key value") {
			t.Errorf("a unique violation the sink handles is logged: %s", line)
		}
		switch {
		case strings.Contains(line, "msg=\"batch run\""):
			batchLines++
			for _, k := range []string{"workflow_type=BatchETLWorkflow", "workflow_id=", "run_id=", "attempt=", "task_queue="} {
				if !strings.Contains(line, k) {
					t.Errorf("a batch workflow line without %s: %s", k, line)
				}
			}
		case strings.Contains(line, "msg=\"stream lease started\""):
			leaseLines++
			for _, k := range []string{"workflow_id=iot-stream-", "run_id=", "activity_type=ConsumeLease", "activity_id=", "attempt=", "slot=", "partitions=", "epochs=map["} {
				if !strings.Contains(line, k) {
					t.Errorf("a lease line without %s: %s", k, line)
				}
			}
		}
	}
	if leaseLines < 4 {
		t.Errorf("%d lease lines, want at least 4 (2 leases before the pause, 2 after)", leaseLines)
	}
	if batchLines != 1 {
		t.Errorf("%d batch run lines, want 1", batchLines)
	}
}

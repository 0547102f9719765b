package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/sethvargo/go-envconfig"

	"github.com/iot-etl/iot-etl/internal/adapter/kafka"
	"github.com/iot-etl/iot-etl/internal/adapter/store/sink"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestDashboardInBrowser drives the dashboard in Chromium (Debian's, through
// chromedp) against a streaming, batch-loaded stack: the Overview shows the
// database's numbers, a hostile dead letter renders as text, and Pause and
// Resume, clicked and confirmed, reach the workflow and the page. Each
// page's screenshot is written to $DASHBOARD_SCREENSHOTS (default: the
// test's temporary directory).
func TestDashboardInBrowser(t *testing.T) {
	testenv.Integration(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Unavailable(t, "chromium (Debian's chromium package)", err)
	}
	st := e2e.NewStreamWith(t, e2e.StreamOptions{Partitions: 3, NoWorker: true})
	st.Env["TEMPORAL_BATCH_TASK_QUEUE"] = "batch-" + st.Topic
	st.Worker = testenv.Start(t, "worker", testenv.Build(t, "./worker"), st.Env, "-queues", "batch,stream", "-stop-timeout", "5s")
	st.Start(workflows.StreamInput{Leases: 2, LeaseDuration: 5 * time.Minute, HeartbeatTimeout: 5 * time.Second,
		MaxBatchWait: 100 * time.Millisecond, ProgressEvery: time.Second})
	st.Produce(400)
	st.WaitConsumed(time.Minute)
	// The batch seeds the stream's fleet (same seed and size), so the warehouse
	// knows the devices the stream flagged.
	b := e2e.NewBatchWith(t, e2e.BatchOptions{Devices: len(st.Fleet.Devices), Stack: st.Stack, NoWorker: true,
		Configure: func(c *config.Config) { c.Temporal.BatchTaskQueue = st.Env["TEMPORAL_BATCH_TASK_QUEUE"] }})
	res := b.Wait(b.Start(workflows.BatchInput{}))

	base := startDashboard(t, st.Env)
	ctx := browser(t, chromium)
	shots := os.Getenv("DASHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	screenshot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(shots, "dashboard-"+name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", path, len(png))
	}

	// Overview: the page's numbers are the database's and Kafka's.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`[data-f="stream.state"]`))); err != nil {
		t.Fatal(err)
	}
	committed, err := sink.ReadOffsets(t.Context(), st.Stack.Timescale, st.Topic)
	if err != nil {
		t.Fatal(err)
	}
	high, err := kafka.HighWatermarks(t.Context(), st.Prod, st.Topic)
	if err != nil {
		t.Fatal(err)
	}
	var wantParts [][]string
	for p := range int32(3) {
		wantParts = append(wantParts, []string{strconv.Itoa(int(p)), strconv.FormatInt(committed[p].NextOffset, 10),
			strconv.FormatInt(high[p], 10), strconv.FormatInt(max(0, high[p]-committed[p].NextOffset), 10)})
	}
	pageUntil(t, ctx, "partitions", `#partitions tr`, wantParts)
	var wantReasons [][]string
	rows, err := st.Stack.Timescale.Query(t.Context(), `SELECT reason, count(*)::text FROM public.stream_dead_letters WHERE topic = $1 GROUP BY reason ORDER BY reason`, st.Topic)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r, n string
		if err := rows.Scan(&r, &n); err != nil {
			t.Fatal(err)
		}
		wantReasons = append(wantReasons, []string{r, n})
	}
	if len(wantReasons) == 0 {
		t.Fatal("no dead letters to show")
	}
	pageUntil(t, ctx, "dead letters by reason", `#reasons tr`, wantReasons)
	var dq float64
	if err := st.Stack.Timescale.QueryRow(t.Context(), `SELECT dq_score FROM dwh.etl_runs WHERE run_id = $1`, res.RunID).Scan(&dq); err != nil {
		t.Fatal(err)
	}
	textUntil(t, ctx, `[data-f="batch.status"]`, "succeeded")
	textUntil(t, ctx, `[data-f="batch.rows"]`, strconv.FormatInt(res.RowsLoaded, 10))
	textUntil(t, ctx, `[data-f="batch.dq"]`, strconv.FormatFloat(dq, 'f', 4, 64))
	textUntil(t, ctx, `[data-f="stream.state"]`, "running")
	screenshot("overview")

	// Fleet: every current device of the warehouse, and exactly those with
	// flagged stream readings in their last hour when filtered; a device id
	// that is HTML renders as text.
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := st.Stack.Timescale.Exec(t.Context(), sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	const hostile = `<script>window.pwned=3</script>`
	exec(`INSERT INTO dwh.dim_devices (device_id, device_type, metric, unit, valid_min, valid_max, location_id, model, firmware, status,
		installed_at, valid_from, is_current, run_id)
		SELECT $1, device_type, metric, unit, valid_min, valid_max, location_id, model, firmware, status, installed_at, valid_from, true, run_id
		FROM dwh.dim_devices WHERE is_current LIMIT 1`, hostile)
	var devices, anomalous []string
	rows, err = st.Stack.Timescale.Query(t.Context(), `SELECT d.device_id, EXISTS (SELECT 1 FROM public.stream_anomalies a WHERE a.device_id = d.device_id)
		FROM dwh.dim_devices d WHERE d.is_current ORDER BY d.device_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var flagged bool
		if err := rows.Scan(&id, &flagged); err != nil {
			t.Fatal(err)
		}
		devices = append(devices, id)
		if flagged {
			anomalous = append(anomalous, id)
		}
	}
	if len(anomalous) == 0 {
		t.Fatal("no device with anomalies to show")
	}
	ids := `Array.from(document.querySelectorAll("table.fleet tbody tr")).map(tr => tr.cells[0].textContent)`
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/fleet"), chromedp.WaitVisible(chromedp.CSS(`table.fleet`))); err != nil {
		t.Fatal(err)
	}
	if got := evaluate[[]string](t, ctx, ids); fmt.Sprint(got) != fmt.Sprint(devices) {
		t.Errorf("fleet devices %q, want %q", got, devices)
	}
	var latest float64
	var unit string
	if err := st.Stack.Timescale.QueryRow(t.Context(), `SELECT r.value, d.unit FROM public.sensor_readings r JOIN dwh.dim_devices d ON d.device_id = r.device_id AND d.is_current
		WHERE r.device_id = $1 ORDER BY r.time DESC LIMIT 1`, anomalous[0]).Scan(&latest, &unit); err != nil {
		t.Fatal(err)
	}
	if got, want := evaluate[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-device=%q]').cells[3].textContent`, anomalous[0])),
		strconv.FormatFloat(latest, 'f', 2, 64)+" "+unit; got != want {
		t.Errorf("latest value of %s: %q, want %q", anomalous[0], got, want)
	}
	if pwned, scripts := evaluate[string](t, ctx, `typeof window.pwned`), evaluate[int](t, ctx, `document.querySelectorAll("table.fleet script").length`); pwned != "undefined" || scripts != 0 {
		t.Errorf("hostile device id: window.pwned %s, %d scripts", pwned, scripts)
	}
	screenshot("fleet")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/fleet?anomalous=1"), chromedp.WaitVisible(chromedp.CSS(`input[name="anomalous"]:checked`))); err != nil {
		t.Fatal(err)
	}
	if got := evaluate[[]string](t, ctx, ids); fmt.Sprint(got) != fmt.Sprint(anomalous) {
		t.Errorf("anomalous devices %q, want %q", got, anomalous)
	}

	// Device: its anomalies from the stream and the batch, its SCD2 rows
	// and a chart of its 24 hourly means.
	dev := anomalous[0]
	var wantAnomalies, wantVersions, wantHours, wantMinutes int
	if err := st.Stack.Timescale.QueryRow(t.Context(), `WITH e AS (SELECT greatest(
			(SELECT max(bucket) + interval '1 hour' FROM dwh.fact_hourly_agg WHERE device_id = $1),
			(SELECT max(window_start) + interval '1 minute' FROM public.sensor_readings_stream_agg WHERE device_id = $1)) - interval '24 hours' AS since)
		SELECT
		(SELECT count(*) FROM (SELECT 1 FROM public.stream_anomalies WHERE device_id = $1 LIMIT 50) s) +
		(SELECT count(*) FROM (SELECT 1 FROM dwh.fact_sensor_readings_enriched WHERE device_id = $1 AND is_anomaly LIMIT 50) f),
		(SELECT count(*) FROM dwh.dim_devices WHERE device_id = $1),
		(SELECT count(*) FROM dwh.fact_hourly_agg, e WHERE device_id = $1 AND mean IS NOT NULL AND bucket >= e.since),
		(SELECT count(*) FROM public.sensor_readings_stream_agg, e WHERE device_id = $1 AND value_count > 0 AND window_start >= e.since)`, dev).
		Scan(&wantAnomalies, &wantVersions, &wantHours, &wantMinutes); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/device/"+url.PathEscape(dev)), chromedp.WaitVisible(chromedp.CSS(`svg.chart`))); err != nil {
		t.Fatal(err)
	}
	points := func(class string) int {
		return evaluate[int](t, ctx, `document.querySelector("svg.chart polyline.`+class+`").getAttribute("points").split(" ").filter(Boolean).length`)
	}
	gotAnomalies := evaluate[int](t, ctx, `document.querySelectorAll("table.anomalies tbody tr").length`)
	gotVersions := evaluate[int](t, ctx, `document.querySelectorAll("table.versions tbody tr").length`)
	if gotHours, gotMinutes := points("mean"), points("stream"); gotAnomalies != wantAnomalies || gotVersions != wantVersions ||
		gotHours != wantHours || gotMinutes != wantMinutes || wantMinutes == 0 {
		t.Errorf("device %s: %d anomalies, %d versions, %d hourly and %d stream means; want %d, %d, %d, %d (not 0)", dev,
			gotAnomalies, gotVersions, gotHours, gotMinutes, wantAnomalies, wantVersions, wantHours, wantMinutes)
	}
	screenshot("device")
	resp, err := http.Get(base + "/device/NO-SUCH-DEVICE")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown device: %d, want 404", resp.StatusCode)
	}

	// A dead letter whose bytes and error are HTML renders as text.
	if _, err := st.Stack.Timescale.Exec(t.Context(), `INSERT INTO public.stream_dead_letters (topic, partition, "offset", raw, reason, error, record_time)
		VALUES ($1, 0, 1000000, '<script>window.pwned=1</script>', 'not_json', '<img src=x onerror="window.pwned=2">', now())`, st.Topic); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/stream"), chromedp.WaitVisible(chromedp.ID("pause"))); err != nil {
		t.Fatal(err)
	}
	pwned := evaluate[string](t, ctx, `typeof window.pwned`)
	scripts := evaluate[int](t, ctx, `document.querySelectorAll("table.dead script").length`)
	imgs := evaluate[int](t, ctx, `document.querySelectorAll("table.dead img").length`)
	cellText := evaluate[string](t, ctx, `document.querySelector("table.dead tbody tr").textContent`)
	if pwned != "undefined" || scripts != 0 || imgs != 0 || !strings.Contains(cellText, `"<script>window.pwned=1</script>"`) ||
		!strings.Contains(cellText, `<img src=x onerror="window.pwned=2">`) {
		t.Errorf("hostile dead letter: window.pwned %s, %d scripts, %d images, first row %q", pwned, scripts, imgs, cellText)
	}

	// Pause, confirmed, reaches the workflow and the page; then Resume.
	for _, step := range []struct{ signal, state string }{{"pause", workflows.StreamPaused}, {"resume", workflows.StreamRunning}} {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/stream"), chromedp.Click(chromedp.ID(step.signal)),
			chromedp.WaitVisible(chromedp.ID("confirm")), chromedp.Click(chromedp.ID("confirm")),
			chromedp.WaitVisible(chromedp.CSS(`.flash`))); err != nil {
			t.Fatalf("%s: %v", step.signal, err)
		}
		st.StatusUntil(step.state, func(s workflows.StreamStatus) bool { return s.State == step.state })
		textUntil(t, ctx, `[data-f="stream.state"]`, step.state)
		if step.signal == "pause" {
			screenshot("stream-paused")
		}
	}

	// Every page, with its stylesheet and script, weighs under 300 KB and
	// fits a 375 px wide screen (wide tables scroll inside themselves).
	var static int
	for _, asset := range []string{"/static/style.css", "/static/app.js"} {
		static += len(get(t, base+asset))
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(375, 800)); err != nil {
		t.Fatal(err)
	}
	for _, page := range []string{"/", "/stream", "/fleet", "/device/" + url.PathEscape(dev), "/batch"} {
		if weight := len(get(t, base+page)) + static; weight > 300_000 {
			t.Errorf("%s weighs %d bytes with its assets, want under 300 KB", page, weight)
		}
		if err := chromedp.Do(ctx, chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS(`main`))); err != nil {
			t.Fatal(err)
		}
		if w := evaluate[int](t, ctx, `document.documentElement.scrollWidth`); w > 375 {
			t.Errorf("%s is %d px wide on a 375 px screen", page, w)
		}
		// Every control is a real one with a label, so keyboards and
		// screen readers reach and name it.
		if unlabelled := evaluate[int](t, ctx, `Array.from(document.querySelectorAll("input:not([type=hidden]), select")).filter(e => !e.closest("label")).length +
			document.querySelectorAll("[onclick], div[role=button], span[role=button]").length`); unlabelled != 0 {
			t.Errorf("%s: %d controls without a label or not native", page, unlabelled)
		}
	}
	screenshot("batch-375")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}

	// Retry load: a run parked in load_failed on a constraint added by
	// mistake shows its error; after the fix, Retry load, confirmed, lets
	// it finish.
	var device string
	if err := st.Stack.Timescale.QueryRow(t.Context(), `SELECT min(device_id) FROM dwh.fact_sensor_readings_enriched`).Scan(&device); err != nil {
		t.Fatal(err)
	}
	exec(`ALTER TABLE dwh.fact_sensor_readings_enriched ADD CONSTRAINT dashboard_check CHECK (device_id <> ` + quoteLiteral(device) + `) NOT VALID`)
	run := b.Start(workflows.BatchInput{})
	b.ProgressUntil(run, func(p workflows.Progress) bool { return p.Phase == workflows.PhaseLoadFailed })
	row := fmt.Sprintf(`tr[data-run=%q] + tr.parked`, run.GetID())
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/batch"), chromedp.WaitVisible(chromedp.CSS(row))); err != nil {
		t.Fatal(err)
	}
	if text := evaluate[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).textContent`, row)); !strings.Contains(text, "dashboard_check") {
		t.Errorf("the parked run's row does not show its error: %q", text)
	}
	screenshot("batch-parked")
	exec(`ALTER TABLE dwh.fact_sensor_readings_enriched DROP CONSTRAINT dashboard_check`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+" button.retry")), chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm")), chromedp.WaitVisible(chromedp.CSS(`.flash`))); err != nil {
		t.Fatal(err)
	}
	if flash := evaluate[string](t, ctx, `document.querySelector(".flash").textContent`); !strings.Contains(flash, "sent retry-load to "+run.GetID()) {
		t.Errorf("flash after Retry load: %q", flash)
	}
	if res := b.Wait(run); res.Status != "succeeded" || res.LoadAttempts != 2 {
		t.Errorf("after Retry load: status %s, %d load attempts; want succeeded, 2", res.Status, res.LoadAttempts)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/batch")); err != nil {
		t.Fatal(err)
	}
	textUntil(t, ctx, fmt.Sprintf(`tr[data-run=%q] .state`, run.GetID()), "succeeded")
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// startDashboard runs `starter dashboard` on a free loopback port with env
// until the test ends, and returns its base URL.
func startDashboard(t *testing.T, env map[string]string) string {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var out, errOut bytes.Buffer
	go func() {
		defer close(done)
		if code := run(ctx, []string{"dashboard", "--addr", addr}, &out, &errOut, envconfig.MapLookuper(env)); code != 0 {
			t.Errorf("starter dashboard exited %d: %s", code, errOut.String())
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(base + "/api/snapshot"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard at %s not up: %s", addr, errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// browser starts headless Chromium for the test, 1280×900.
func browser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// pageUntil waits up to 20 s (the page refreshes every 2 s) for the rows
// selected by sel to hold want's cells.
func pageUntil(t *testing.T, ctx context.Context, what, sel string, want [][]string) {
	t.Helper()
	var got [][]string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		got = evaluate[[][]string](t, ctx, fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(tr => Array.from(tr.cells).map(td => td.textContent))`, sel))
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
	}
	t.Fatalf("%s on the page: %v, want %v", what, got, want)
}

// evaluate runs a script in the page and returns its value.
func evaluate[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// textUntil waits up to 20 s for the text of sel to be want.
func textUntil(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var err error
		if got, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(got) == want {
			return
		}
	}
	t.Fatalf("%s on the page: %q, want %q", sel, got, want)
}

// TestDashboardActionsNeedOriginAndToken: a non-loopback address is refused
// without a token; an action needs POST, this origin, the token, and a
// confirmation before it signals anything.
func TestDashboardActionsNeedOriginAndToken(t *testing.T) {
	t.Parallel()
	app := &App{Cfg: &config.Config{}}
	app.Cfg.Kafka.Topic = "t"
	if _, err := newDashboard(app, "0.0.0.0:8080", "t"); err == nil || !strings.Contains(err.Error(), "DASHBOARD_TOKEN") {
		t.Errorf("0.0.0.0 without a token: %v, want a refusal naming DASHBOARD_TOKEN", err)
	}
	app.Cfg.Dashboard.Token = "s3cret"
	d, err := newDashboard(app, "0.0.0.0:8080", "t")
	if err != nil {
		t.Fatal(err)
	}
	h := d.routes()
	post := func(form url.Values, origin string) (int, string) {
		r, _ := http.NewRequest(http.MethodPost, "http://dash.example:8080/actions/stream/pause", strings.NewReader(form.Encode()))
		r.Host = "dash.example:8080"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	for _, c := range []struct {
		name   string
		form   url.Values
		origin string
		code   int
		body   string
	}{
		{"no origin", url.Values{"token": {"s3cret"}}, "", 403, "cross-origin"},
		{"another origin", url.Values{"token": {"s3cret"}}, "http://evil.example", 403, "cross-origin"},
		{"no token", url.Values{}, "http://dash.example:8080", 403, "DASHBOARD_TOKEN"},
		{"wrong token", url.Values{"token": {"guess"}}, "http://dash.example:8080", 403, "DASHBOARD_TOKEN"},
		{"not confirmed", url.Values{"token": {"s3cret"}}, "http://dash.example:8080", 200, `id="confirm"`},
	} {
		if code, body := post(c.form, c.origin); code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s: %d %.80q, want %d with %q", c.name, code, body, c.code, c.body)
		}
	}
	r, _ := http.NewRequest(http.MethodGet, "http://dash.example:8080/actions/stream/pause", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET of an action: %d, want 405", w.Code)
	}
}

// get returns the body of a GET that must answer 200.
func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

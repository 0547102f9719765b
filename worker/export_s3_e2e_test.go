package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/parquet-go/parquet-go"
	"go.temporal.io/sdk/client"

	"github.com/iot-etl/iot-etl/internal/adapter/export"
	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
	"github.com/iot-etl/iot-etl/workflows"
)

// newS3BatchStack is newBatchStack with the export going to prefix in the
// bucket of a versitygw server, reached at endpoint (the server itself, or
// a proxy in front of it).
func newS3BatchStack(t *testing.T, devices int, srv testenv.S3Server, endpoint, prefix string) *e2e.Batch {
	t.Helper()
	return e2e.NewBatchWith(t, e2e.BatchOptions{Devices: devices, Configure: func(c *config.Config) {
		srv.Configure(c, prefix)
		c.Export.S3Endpoint = endpoint
	}})
}

// reader reads the bucket with minio-go: a different S3 client from the
// AWS SDK the worker writes with, talking to the server directly.
type reader struct {
	t      *testing.T
	mc     *minio.Client
	bucket string
}

func newReader(t *testing.T, srv testenv.S3Server) *reader {
	t.Helper()
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	mc, err := minio.New(u.Host, &minio.Options{
		Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""), Secure: false,
		Region: srv.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &reader{t: t, mc: mc, bucket: srv.Bucket}
}

// key returns the object key of an s3:// URL of the reader's bucket.
func (r *reader) key(u string) string {
	r.t.Helper()
	rest, ok := strings.CutPrefix(u, "s3://"+r.bucket+"/")
	if !ok {
		r.t.Fatalf("%s is not in bucket %s", u, r.bucket)
	}
	return rest
}

// get reads an object; ok is false when there is none.
func (r *reader) get(key string) (data []byte, ok bool) {
	r.t.Helper()
	obj, err := r.mc.GetObject(context.Background(), r.bucket, key, minio.GetObjectOptions{})
	if err == nil {
		defer obj.Close()
		data, err = io.ReadAll(obj)
	}
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return nil, false
	}
	if err != nil {
		r.t.Fatalf("get %s: %v", key, err)
	}
	return data, true
}

// list returns the keys under prefix, sorted.
func (r *reader) list(prefix string) []string {
	r.t.Helper()
	var keys []string
	for o := range r.mc.ListObjects(context.Background(), r.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			r.t.Fatalf("list %s: %v", prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

func (r *reader) manifest(key string) (export.Manifest, []byte) {
	r.t.Helper()
	raw, ok := r.get(key)
	if !ok {
		r.t.Fatalf("no manifest at %s", key)
	}
	var m export.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		r.t.Fatalf("%s: %v", key, err)
	}
	return m, raw
}

// checkFiles reads every file of m and checks its size, sha256 and rows
// (parquet metadata; CSV records less the header). It returns the object
// keys.
func (r *reader) checkFiles(m export.Manifest, windowKey string) []string {
	r.t.Helper()
	var keys []string
	for _, f := range m.Files {
		key := windowKey + f.Path
		if got := r.key(f.URL); got != key {
			r.t.Errorf("%s: URL %s, want the key %s", f.Path, f.URL, key)
		}
		data, ok := r.get(key)
		if !ok {
			r.t.Errorf("%s is listed in the manifest but does not exist", key)
			continue
		}
		if sum := sha256Hex(data); sum != f.SHA256 || int64(len(data)) != f.Bytes {
			r.t.Errorf("%s: %d bytes sha256 %s; manifest %d bytes %s", key, len(data), sum, f.Bytes, f.SHA256)
		}
		var rows int64
		switch f.Format {
		case "parquet":
			pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				r.t.Fatalf("%s: %v", key, err)
			}
			rows = pf.NumRows()
		case "csv":
			recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
			if err != nil {
				r.t.Fatalf("%s: %v", key, err)
			}
			rows = int64(len(recs)) - 1
		default:
			r.t.Errorf("%s: format %q", key, f.Format)
		}
		if rows != f.Rows || rows != m.Rows {
			r.t.Errorf("%s holds %d rows; manifest says %d (file), %d (export)", key, rows, f.Rows, m.Rows)
		}
		keys = append(keys, key)
	}
	return keys
}

// TestExportS3EndToEnd: a batch run with EXPORT_URL=s3://bucket/prefix on
// a real S3 server publishes the manifest and the files it lists, which
// another S3 client reads back with the sizes, checksums and row counts of
// the manifest and of dwh.ml_features; dwh.etl_runs and `starter batch
// status` show the URLs.
func TestExportS3EndToEnd(t *testing.T) {
	srv := testenv.S3(t)
	b := newS3BatchStack(t, 6, srv, srv.Endpoint, "/ml/iot-etl/")
	run := b.Start(workflows.BatchInput{CSV: true})
	res := b.Wait(run)
	r := newReader(t, srv)

	windowKey := "ml/iot-etl/" + export.WindowDir(e2e.Window.Start, e2e.Window.End) + "/"
	if res.Features.WindowURL != "s3://"+srv.Bucket+"/"+windowKey || res.Features.ManifestURL != res.Features.WindowURL+"manifest.json" {
		t.Fatalf("window %s, manifest %s; want them under s3://%s/%s", res.Features.WindowURL, res.Features.ManifestURL, srv.Bucket, windowKey)
	}
	m, _ := r.manifest(r.key(res.Features.ManifestURL))
	if m.RunID != res.RunID || m.Attempt != 1 || len(m.Files) != 2 {
		t.Fatalf("manifest: run %s attempt %d, %d files; want run %s attempt 1, parquet + csv", m.RunID, m.Attempt, len(m.Files), res.RunID)
	}
	features := b.Count(`SELECT count(*) FROM dwh.ml_features WHERE hour >= $1 AND hour < $2`, m.HoursFrom, m.HoursTo)
	if features == 0 || m.Rows != features || res.Features.Rows != features {
		t.Errorf("manifest %d rows, result %d; dwh.ml_features has %d for [%s, %s)", m.Rows, res.Features.Rows, features, m.HoursFrom, m.HoursTo)
	}
	keys := r.checkFiles(m, windowKey)
	want := append([]string{windowKey + "manifest.json"}, keys...)
	sort.Strings(want)
	if diff := cmp.Diff(want, r.list("ml/")); diff != "" {
		t.Errorf("objects in the bucket (-want +got):\n%s", diff)
	}
	var urls []string
	for i, f := range m.Files {
		if want := res.RunID + "/attempt-1/features." + f.Format; f.Path != want {
			t.Errorf("file %s, want %s", f.Path, want)
		}
		if i >= len(res.Features.Files) || res.Features.Files[i].URL != f.URL || res.Features.Files[i].SHA256 != f.SHA256 {
			t.Errorf("the result's files %+v differ from the manifest's", res.Features.Files)
		}
		urls = append(urls, f.URL)
	}
	if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND status = 'succeeded' AND export_manifest_url = $2 AND export_files = $3`,
		res.RunID, res.Features.ManifestURL, urls); n != 1 {
		t.Error("dwh.etl_runs does not hold the export's URLs")
	}
	starterBin := testenv.Build(t, "./starter")
	status := e2e.RunStarter(t, starterBin, b.Env, "batch", "status", run.GetID())
	// The summary also reports Kafka: give it a broker.
	_, brokers := testenv.Kafka(t, b.Stack.Config.Kafka.Topic, 1)
	env := map[string]string{}
	for k, v := range b.Env {
		env[k] = v
	}
	env["KAFKA_BOOTSTRAP_SERVERS"] = strings.Join(brokers, ",")
	summary := e2e.RunStarter(t, starterBin, env, "summary")
	for _, u := range append([]string{res.Features.ManifestURL}, urls...) {
		if !strings.Contains(status, u) {
			t.Errorf("batch status does not show %s:\n%s", u, status)
		}
		if !strings.Contains(summary, u) {
			t.Errorf("summary does not show %s:\n%s", u, summary)
		}
	}
}

// faultProxy is an HTTP reverse proxy in front of the S3 server that,
// while failCSV is on, answers every request for a features.csv object
// with 503 Service Unavailable, as an overloaded S3 would. It logs every
// request.
type faultProxy struct {
	srv     *httptest.Server
	failCSV atomic.Bool
	mu      sync.Mutex
	log     []proxyEntry
}

type proxyEntry struct {
	Method, Path string
	Status       int
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int)        { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.failCSV.Load() && strings.HasSuffix(r.URL.Path, "/"+export.CSVName) {
			_, _ = io.Copy(io.Discard, r.Body)
			p.record(r, http.StatusServiceUnavailable)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<Error><Code>ServiceUnavailable</Code><Message>injected by the test proxy</Message></Error>`)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		p.record(r, rec.status)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultProxy) record(r *http.Request, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, proxyEntry{r.Method, r.URL.Path, status})
}

// requests returns the logged requests whose path ends with suffix.
func (p *faultProxy) requests(suffix string) []proxyEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxyEntry
	for _, e := range p.log {
		if strings.HasSuffix(e.Path, suffix) {
			out = append(out, e)
		}
	}
	return out
}

// waitExportFailed waits until ExportFeatures of run has failed its first
// attempt: the pending activity is at attempt 2 with a failure recorded.
func waitExportFailed(b *e2e.Batch, run client.WorkflowRun) string {
	b.T.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		desc, err := b.TC.DescribeWorkflow(context.Background(), run.GetID(), run.GetRunID())
		if err != nil {
			b.T.Fatal(err)
		}
		for _, a := range desc.RawResponse.GetPendingActivities() {
			if a.GetActivityType().GetName() == "ExportFeatures" && a.GetAttempt() >= 2 && a.GetLastFailure() != nil {
				return a.GetLastFailure().GetMessage()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.T.Fatal("ExportFeatures did not fail its first attempt within 2 minutes")
	return ""
}

// TestExportS3RetryAfterFailedUpload: every upload of features.csv fails
// (503 from a proxy in front of the S3 server, through the AWS SDK's own
// retries) while a switch is on. The first ExportFeatures attempt uploads
// its parquet and fails; no manifest appears (first run) or the previous
// manifest stays as it was, consistent with its files (second run). With
// the switch off, Temporal's retry publishes attempt 2, and the manifest
// references only attempt 2's objects; attempt 1's leftovers are deleted.
func TestExportS3RetryAfterFailedUpload(t *testing.T) {
	srv := testenv.S3(t)
	proxy := newFaultProxy(t, srv.Endpoint)
	b := newS3BatchStack(t, 4, srv, proxy.srv.URL, "exports")
	r := newReader(t, srv)
	windowKey := "exports/" + export.WindowDir(e2e.Window.Start, e2e.Window.End) + "/"
	manifestKey := windowKey + export.ManifestName

	var previous []string // the objects of the manifest a run replaces
	var previousManifest []byte
	for i, name := range []string{"first run", "second run"} {
		proxy.failCSV.Store(true)
		run := b.Start(workflows.BatchInput{CSV: true})
		failure := waitExportFailed(b, run)
		attempt1 := windowKey + run.GetRunID() + "/attempt-1/"
		if !strings.Contains(failure, "features.csv") {
			t.Errorf("%s: attempt 1 failed with %q; want the features.csv upload", name, failure)
		}
		if n := len(proxy.requests(attempt1 + export.CSVName)); n < 2 {
			t.Errorf("%s: %d requests for attempt 1's features.csv; want the SDK's retries", name, n)
		}
		parquetPuts := proxy.requests(attempt1 + export.ParquetName)
		if len(parquetPuts) != 1 || parquetPuts[0].Method != http.MethodPut || parquetPuts[0].Status != http.StatusOK {
			t.Errorf("%s: attempt 1's parquet requests %+v; want one successful PUT", name, parquetPuts)
		}
		if _, ok := r.get(attempt1 + export.ParquetName); !ok {
			t.Errorf("%s: attempt 1's parquet is not in the bucket", name)
		}
		// Readers still see what they saw before the run.
		raw, ok := r.get(manifestKey)
		switch {
		case i == 0 && ok:
			t.Errorf("%s: a manifest is visible after a failed attempt:\n%s", name, raw)
		case i > 0 && !bytes.Equal(raw, previousManifest):
			t.Errorf("%s: the failed attempt changed the manifest", name)
		case i > 0:
			m, _ := r.manifest(manifestKey)
			r.checkFiles(m, windowKey)
		}

		proxy.failCSV.Store(false)
		res := b.Wait(run)
		m, raw := r.manifest(manifestKey)
		if m.RunID != run.GetRunID() || m.Attempt != 2 || len(m.Files) != 2 {
			t.Fatalf("%s: manifest of run %s attempt %d with %d files; want run %s attempt 2, parquet + csv", name, m.RunID, m.Attempt, len(m.Files), run.GetRunID())
		}
		for _, f := range m.Files {
			if want := run.GetRunID() + "/attempt-2/features." + f.Format; f.Path != want {
				t.Errorf("%s: manifest lists %s, want %s", name, f.Path, want)
			}
		}
		keys := r.checkFiles(m, windowKey)
		if res.Features.ManifestURL != "s3://"+srv.Bucket+"/"+manifestKey || len(res.Features.Files) != 2 || res.Features.Files[0].URL != m.Files[0].URL {
			t.Errorf("%s: result %+v does not match the manifest", name, res.Features)
		}
		want := append(append([]string{manifestKey}, keys...), previous...)
		sort.Strings(want)
		if diff := cmp.Diff(want, r.list("exports/")); diff != "" {
			t.Errorf("%s: objects (-want +got): attempt 1's leftovers must be gone, the replaced manifest's files kept:\n%s", name, diff)
		}
		if n := b.Count(`SELECT count(*) FROM dwh.etl_runs WHERE run_id = $1 AND export_manifest_url = $2 AND $3 = ANY (export_files)`,
			res.RunID, res.Features.ManifestURL, m.Files[0].URL); n != 1 {
			t.Errorf("%s: dwh.etl_runs does not hold attempt 2's URLs", name)
		}
		previous, previousManifest = keys, raw
	}
	if t.Failed() {
		t.Log(proxyLog(proxy))
	}
}

func proxyLog(p *faultProxy) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	for _, e := range p.log {
		fmt.Fprintf(&sb, "%s %s %d\n", e.Method, e.Path, e.Status)
	}
	return sb.String()
}

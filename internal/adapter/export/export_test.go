package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/parquet-go/parquet-go"

	"github.com/iot-etl/iot-etl/internal/domain/features"
)

var (
	testFrom = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	testTo   = testFrom.Add(24 * time.Hour)
	testDir  = "features/20261102T000000Z_20261103T000000Z"
)

// testRows returns n feature rows; every third is labelled.
func testRows(n int) []features.Row {
	rows := make([]features.Row, n)
	for i := range rows {
		mean := float64(i) + 0.5
		rows[i] = features.Row{
			DeviceID: "TEMP-001", Hour: testFrom.Add(time.Duration(i) * time.Hour), DeviceType: "temperature", Zone: "A",
			HourOfDay: i % 24, DayOfWeek: 1, Count: 60, Mean: &mean, AnomalyCount: i % 2, MeanQuality: 0.99, Label: i%3 == 0,
		}
	}
	return rows
}

// publish writes rows and publishes them as runID's attempt to st.
func publish(t *testing.T, st Store, runID string, attempt int32, rows []features.Row, withCSV bool) (Published, error) {
	t.Helper()
	w, err := NewWriter(t.TempDir(), withCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	return w.Publish(context.Background(), st, Target{From: testFrom, To: testTo, RunID: runID, Attempt: attempt},
		Manifest{Generator: "test", RunID: runID, WindowStart: testFrom, WindowEnd: testTo})
}

func mustPublish(t *testing.T, st Store, runID string, attempt int32, rows []features.Row, withCSV bool) Published {
	t.Helper()
	p, err := publish(t, st, runID, attempt, rows, withCSV)
	if err != nil {
		t.Fatal(err)
	}
	if p.CleanupErr != nil {
		t.Fatalf("cleanup: %v", p.CleanupErr)
	}
	return p
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// files lists the files under root, relative and slash-separated.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestPublishLocalLayout: the data files go to the attempt's directory,
// the manifest names them with URL, rows, bytes and sha256, and both files
// hold the rows.
func TestPublishLocalLayout(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st := NewLocal(root)
	rows := testRows(30)
	p := mustPublish(t, st, "run-a", 1, rows, true)

	want := []string{
		testDir + "/manifest.json",
		testDir + "/run-a/attempt-1/features.csv",
		testDir + "/run-a/attempt-1/features.parquet",
	}
	if diff := cmp.Diff(want, files(t, root)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if p.ManifestURL != "file://"+filepath.ToSlash(root)+"/"+testDir+"/manifest.json" || p.WindowURL != "file://"+filepath.ToSlash(root)+"/"+testDir+"/" {
		t.Errorf("URLs: manifest %s, window %s", p.ManifestURL, p.WindowURL)
	}
	m, err := ReadManifest(context.Background(), st, testDir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.Manifest, m); diff != "" {
		t.Errorf("stored manifest differs from the returned one (-returned +stored):\n%s", diff)
	}
	if m.Rows != 30 || m.PositiveRows != 10 || m.Attempt != 1 || len(m.Files) != 2 || len(m.Schema) != len(Schema) {
		t.Fatalf("manifest: %d rows, %d positive, attempt %d, %d files", m.Rows, m.PositiveRows, m.Attempt, len(m.Files))
	}
	for _, f := range m.Files {
		abs := filepath.Join(root, testDir, filepath.FromSlash(f.Path))
		if f.URL != "file://"+filepath.ToSlash(abs) {
			t.Errorf("%s: URL %s", f.Path, f.URL)
		}
		b, err := os.ReadFile(abs)
		if err != nil {
			t.Fatal(err)
		}
		if sha(b) != f.SHA256 || int64(len(b)) != f.Bytes || f.Rows != 30 {
			t.Errorf("%s: %d bytes sha256 %s; manifest %d bytes sha256 %s, %d rows", f.Path, len(b), sha(b), f.Bytes, f.SHA256, f.Rows)
		}
		switch f.Format {
		case "parquet":
			got, err := parquet.Read[features.Row](bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rows, got); diff != "" {
				t.Errorf("parquet rows (-want +got):\n%s", diff)
			}
		case "csv":
			recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 31 || recs[0][0] != "device_id" || recs[1][1] != "2026-11-02T00:00:00Z" {
				t.Errorf("csv: %d records, header %v, first %v", len(recs), recs[0], recs[1])
			}
		default:
			t.Errorf("format %q", f.Format)
		}
	}
}

// recorder logs the operations on a store; fail, when set, fails the
// operations it matches.
type recorder struct {
	Store
	mu   sync.Mutex
	ops  []string
	fail func(op, key string) error
}

func (r *recorder) do(op, key string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op+" "+key)
	if r.fail != nil {
		return r.fail(op, key)
	}
	return nil
}

func (r *recorder) PutFile(ctx context.Context, key, path string) error {
	if err := r.do("putfile", key); err != nil {
		return err
	}
	return r.Store.PutFile(ctx, key, path)
}

func (r *recorder) Put(ctx context.Context, key string, data []byte) error {
	if err := r.do("put", key); err != nil {
		return err
	}
	return r.Store.Put(ctx, key, data)
}

func (r *recorder) Get(ctx context.Context, key string) ([]byte, error) {
	if err := r.do("get", key); err != nil {
		return nil, err
	}
	return r.Store.Get(ctx, key)
}

func (r *recorder) List(ctx context.Context, prefix string) ([]string, error) {
	if err := r.do("list", prefix); err != nil {
		return nil, err
	}
	return r.Store.List(ctx, prefix)
}

func (r *recorder) Delete(ctx context.Context, key string) error {
	if err := r.do("delete", key); err != nil {
		return err
	}
	return r.Store.Delete(ctx, key)
}

// TestPublishWritesManifestLast: every data file is uploaded and the
// previous manifest read before the manifest is written; deletions come
// after it.
func TestPublishWritesManifestLast(t *testing.T) {
	t.Parallel()
	st := &recorder{Store: NewLocal(t.TempDir())}
	mustPublish(t, st, "run-a", 1, testRows(5), true)
	st.ops = nil
	mustPublish(t, st, "run-b", 1, testRows(5), true)
	mustPublish(t, st, "run-c", 2, testRows(5), true)
	want := []string{
		"putfile " + testDir + "/run-b/attempt-1/features.parquet",
		"putfile " + testDir + "/run-b/attempt-1/features.csv",
		"get " + testDir + "/manifest.json",
		"put " + testDir + "/manifest.json",
		"list " + testDir + "/",
		"putfile " + testDir + "/run-c/attempt-2/features.parquet",
		"putfile " + testDir + "/run-c/attempt-2/features.csv",
		"get " + testDir + "/manifest.json",
		"put " + testDir + "/manifest.json",
		"list " + testDir + "/",
		"delete " + testDir + "/run-a/attempt-1/features.csv",
		"delete " + testDir + "/run-a/attempt-1/features.parquet",
	}
	if diff := cmp.Diff(want, st.ops); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
}

// TestPublishRetryAndCleanup: a failed attempt leaves its parquet behind
// and the previous manifest in place, still consistent with its files; the
// retry publishes its own files, and the cleanup removes the failed
// attempt's leftovers and the generation before the replaced one, with
// their directories.
func TestPublishRetryAndCleanup(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	local := NewLocal(root)
	st := &recorder{Store: local}
	ctx := context.Background()
	mustPublish(t, st, "run-a", 1, testRows(10), true)
	gen2 := mustPublish(t, st, "run-b", 1, testRows(20), true)
	if len(gen2.Deleted) != 0 {
		t.Errorf("the second export deleted %v; the first one's files must stay for its readers", gen2.Deleted)
	}

	// Attempt 1 of run-c fails on the CSV upload.
	boom := errors.New("injected: connection reset")
	st.fail = func(op, key string) error {
		if op == "putfile" && strings.HasSuffix(key, CSVName) {
			return boom
		}
		return nil
	}
	if _, err := publish(t, st, "run-c", 1, testRows(30), true); !errors.Is(err, boom) {
		t.Fatalf("attempt 1: err %v, want the injected failure", err)
	}
	m, err := ReadManifest(ctx, local, testDir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gen2.Manifest, m); diff != "" {
		t.Errorf("a failed attempt changed the manifest (-want +got):\n%s", diff)
	}
	for _, f := range m.Files {
		b, err := local.Get(ctx, testDir+"/"+f.Path)
		if err != nil || sha(b) != f.SHA256 {
			t.Errorf("after the failed attempt, %s: err %v, or its sha256 differs", f.Path, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, testDir, "run-c/attempt-1/features.parquet")); err != nil {
		t.Errorf("the failed attempt's parquet is not where the test expects it: %v", err)
	}

	st.fail = nil
	gen3 := mustPublish(t, st, "run-c", 2, testRows(30), true)
	wantDeleted := []string{
		testDir + "/run-a/attempt-1/features.csv",
		testDir + "/run-a/attempt-1/features.parquet",
		testDir + "/run-c/attempt-1/features.parquet",
	}
	if diff := cmp.Diff(wantDeleted, gen3.Deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	wantFiles := []string{
		testDir + "/manifest.json",
		testDir + "/run-b/attempt-1/features.csv",
		testDir + "/run-b/attempt-1/features.parquet",
		testDir + "/run-c/attempt-2/features.csv",
		testDir + "/run-c/attempt-2/features.parquet",
	}
	if diff := cmp.Diff(wantFiles, files(t, root)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for _, dir := range []string{"run-a", "run-c/attempt-1"} {
		if _, err := os.Stat(filepath.Join(root, testDir, dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("directory %s is left behind (%v)", dir, err)
		}
	}
}

// TestPublishKeepsLegacyFilesOneGeneration: the files of a manifest of the
// single-directory layout (features.parquet next to manifest.json) stay
// until the next export, like any replaced manifest's files.
func TestPublishKeepsLegacyFilesOneGeneration(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st := NewLocal(root)
	ctx := context.Background()
	legacy := `{"run_id": "old", "files": [{"path": "features.parquet", "format": "parquet"}]}`
	if err := st.Put(ctx, testDir+"/manifest.json", []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, testDir+"/features.parquet", []byte("old parquet")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, testDir+"/features.csv", []byte("old csv, not in the manifest")); err != nil {
		t.Fatal(err)
	}
	p := mustPublish(t, st, "run-a", 1, testRows(3), false)
	if diff := cmp.Diff([]string{testDir + "/features.csv"}, p.Deleted); diff != "" {
		t.Errorf("first export deleted (-want +got):\n%s", diff)
	}
	p = mustPublish(t, st, "run-b", 1, testRows(3), false)
	if diff := cmp.Diff([]string{testDir + "/features.parquet"}, p.Deleted); diff != "" {
		t.Errorf("second export deleted (-want +got):\n%s", diff)
	}
}

// TestPublishUnreadableManifestDeletesNothing: when the replaced manifest
// cannot be parsed, nobody can tell what its readers use: the new one is
// published and nothing is deleted.
func TestPublishUnreadableManifestDeletesNothing(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st := NewLocal(root)
	ctx := context.Background()
	if err := st.Put(ctx, testDir+"/manifest.json", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, testDir+"/features.parquet", []byte("old")); err != nil {
		t.Fatal(err)
	}
	p, err := publish(t, st, "run-a", 1, testRows(3), false)
	if err != nil {
		t.Fatal(err)
	}
	if p.CleanupErr == nil || len(p.Deleted) != 0 {
		t.Errorf("cleanup error %v, deleted %v; want an error and nothing deleted", p.CleanupErr, p.Deleted)
	}
	if _, err := ReadManifest(ctx, st, testDir); err != nil {
		t.Errorf("the new manifest: %v", err)
	}
}

// TestPublishRejectsBadTarget: a run id that would escape its directory,
// or attempt 0, is refused before anything is written.
func TestPublishRejectsBadTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		runID   string
		attempt int32
	}{{"", 1}, {"../x", 1}, {"..", 1}, {"a/b", 1}, {"run", 0}} {
		root := t.TempDir()
		if _, err := publish(t, NewLocal(root), tc.runID, tc.attempt, testRows(1), false); err == nil {
			t.Errorf("run %q attempt %d: no error", tc.runID, tc.attempt)
		}
		if got := files(t, root); len(got) != 0 {
			t.Errorf("run %q attempt %d wrote %v", tc.runID, tc.attempt, got)
		}
	}
}

// TestLocalStore: keys map to files under the root; List filters by
// prefix; Get of a missing key is ErrNotExist; Delete of a missing key is
// fine; invalid keys are refused.
func TestLocalStore(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st := NewLocal(root)
	ctx := context.Background()
	for _, k := range []string{"a/b/one", "a/b/two", "a/bc/three", "z"} {
		if err := st.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.List(ctx, "a/b/")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"a/b/one", "a/b/two"}, got); diff != "" {
		t.Errorf("list a/b/ (-want +got):\n%s", diff)
	}
	if got, _ := st.List(ctx, "a/b"); len(got) != 3 {
		t.Errorf("list a/b: %v, want 3 keys", got)
	}
	if got, _ := st.List(ctx, "nothing/"); len(got) != 0 {
		t.Errorf("list of a missing directory: %v", got)
	}
	if b, err := st.Get(ctx, "a/b/one"); err != nil || string(b) != "a/b/one" {
		t.Errorf("get: %q %v", b, err)
	}
	if _, err := st.Get(ctx, "a/missing"); !errors.Is(err, ErrNotExist) {
		t.Errorf("get of a missing key: %v", err)
	}
	if err := st.Delete(ctx, "a/missing"); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
	for _, k := range []string{"../escape", "a/../../escape", "", "a//b"} {
		if err := st.Put(ctx, k, nil); err == nil {
			t.Errorf("put %q: no error", k)
		}
	}
	if err := st.Delete(ctx, "a/bc/three"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "bc")); !errors.Is(err, os.ErrNotExist) {
		t.Error("delete left the empty directory a/bc")
	}
	if _, err := os.Stat(filepath.Join(root, "a", "b")); err != nil {
		t.Error("delete removed a directory that is not empty")
	}
}

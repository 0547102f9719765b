package export

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// s3Store opens the store of a fresh versitygw server the way the worker
// does, from the configuration.
func s3Store(t *testing.T, prefix string) (Store, testenv.S3Server) {
	t.Helper()
	srv := testenv.S3(t)
	var cfg config.Config
	cfg.Export.URL = "file:///unused"
	srv.Configure(&cfg, prefix)
	st, err := Open(cfg.Export, cfg.AWS)
	if err != nil {
		t.Fatal(err)
	}
	return st, srv
}

// TestS3Store: the S3 backend against a real S3 server: keys under the
// prefix, listing, a missing key, deletion, URLs.
func TestS3Store(t *testing.T) {
	t.Parallel()
	st, srv := s3Store(t, "/exports/dev/")
	ctx := context.Background()
	for _, k := range []string{"a/b/one.json", "a/b/two.csv", "a/bc/three"} {
		if err := st.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte("from a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.PutFile(ctx, "a/b/file", path); err != nil {
		t.Fatal(err)
	}
	got, err := st.List(ctx, "a/b/")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"a/b/file", "a/b/one.json", "a/b/two.csv"}, got); diff != "" {
		t.Errorf("list a/b/ (-want +got):\n%s", diff)
	}
	if b, err := st.Get(ctx, "a/b/file"); err != nil || string(b) != "from a file" {
		t.Errorf("get a/b/file: %q %v", b, err)
	}
	if _, err := st.Get(ctx, "a/missing"); !errors.Is(err, ErrNotExist) {
		t.Errorf("get of a missing key: %v, want ErrNotExist", err)
	}
	if err := st.Delete(ctx, "a/b/one.json"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "a/never-was"); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
	if got, _ := st.List(ctx, "a/"); len(got) != 3 {
		t.Errorf("after delete: %v", got)
	}
	if u := st.URL("a/b/file"); u != "s3://"+srv.Bucket+"/exports/dev/a/b/file" {
		t.Errorf("URL: %s", u)
	}
	// The objects are under the prefix in the bucket.
	if b, err := st.Get(ctx, "a/bc/three"); err != nil || string(b) != "a/bc/three" {
		t.Errorf("get: %q %v", b, err)
	}
}

// TestS3PublishAndCleanup: the same layout and cleanup rule as the local
// store, in a bucket.
func TestS3PublishAndCleanup(t *testing.T) {
	t.Parallel()
	st, srv := s3Store(t, "ml")
	ctx := context.Background()
	rec := &recorder{Store: st}
	mustPublish(t, rec, "run-a", 1, testRows(10), true)
	gen2 := mustPublish(t, rec, "run-b", 1, testRows(20), true)
	rec.fail = func(op, key string) error {
		if op == "putfile" && strings.HasSuffix(key, CSVName) {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := publish(t, rec, "run-c", 1, testRows(30), true); err == nil {
		t.Fatal("attempt 1 did not fail")
	}
	if m, err := ReadManifest(ctx, st, testDir); err != nil || !cmp.Equal(m, gen2.Manifest) {
		t.Errorf("the failed attempt changed the manifest (err %v)", err)
	}
	rec.fail = nil
	gen3 := mustPublish(t, rec, "run-c", 2, testRows(30), true)
	keys, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	want := []string{
		testDir + "/manifest.json",
		testDir + "/run-b/attempt-1/features.csv",
		testDir + "/run-b/attempt-1/features.parquet",
		testDir + "/run-c/attempt-2/features.csv",
		testDir + "/run-c/attempt-2/features.parquet",
	}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if gen3.ManifestURL != "s3://"+srv.Bucket+"/ml/"+testDir+"/manifest.json" {
		t.Errorf("manifest URL %s", gen3.ManifestURL)
	}
	for _, f := range gen3.Manifest.Files {
		b, err := st.Get(ctx, testDir+"/"+f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if sha(b) != f.SHA256 || int64(len(b)) != f.Bytes || f.URL != "s3://"+srv.Bucket+"/ml/"+testDir+"/"+f.Path {
			t.Errorf("%s: %d bytes, sha256 %s; manifest %+v", f.Path, len(b), sha(b), f)
		}
	}
}

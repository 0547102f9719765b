package main

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestCheckExportStore: check writes, lists and deletes a probe object in
// the S3 bucket of EXPORT_URL; wrong credentials fail at the
// authentication layer, and the secret is not shown.
func TestCheckExportStore(t *testing.T) {
	s3 := testenv.S3(t)
	cfg := testenv.BaseConfig(t)
	s3.Configure(cfg, "iot/checks")
	env := varsOf(*cfg, "EXPORT_", "AWS_")
	_, out, _ := starter(t, env, "check", "-timeout", "10s")
	line := componentLine(out, "Export")
	if want := "s3://" + s3.Bucket + "/iot/checks/"; !strings.Contains(line, want) || !strings.HasSuffix(line, "OK   writable, 0 feature sets") {
		t.Errorf("Export line %q, want %s and OK", line, want)
	}
	var left []string
	_ = filepath.WalkDir(filepath.Join(s3.Dir, s3.Bucket), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, path)
		}
		return nil
	})
	if len(left) != 0 {
		t.Errorf("the probe object was left behind: %v", left)
	}

	env["AWS_SECRET_ACCESS_KEY"] = "not-the-" + cfg.AWS.SecretAccessKey.Reveal()
	code, out, _ := starter(t, env, "check", "-timeout", "10s")
	line = componentLine(out, "Export")
	if code != 1 || !strings.Contains(line, "FAILED: authentication: the object store rejected the credentials (SignatureDoesNotMatch) (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") {
		t.Errorf("exit %d, Export line %q; want 1 and an authentication failure", code, line)
	}
	if strings.Contains(out, env["AWS_SECRET_ACCESS_KEY"]) {
		t.Error("the output shows the secret")
	}
}

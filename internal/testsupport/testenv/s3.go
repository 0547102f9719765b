package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// VersityGWModule is the S3 gateway the tests run, as `make tools`
// installs it.
const VersityGWModule = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// S3Server is a running S3-compatible server (versitygw over a temporary
// directory) with one empty bucket.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:port
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the gateway's root directory: the bucket is Dir/Bucket.
	Dir string
}

// Configure points cfg's export at prefix in the bucket, with path-style
// addressing and the server's credentials.
func (s S3Server) Configure(cfg *config.Config, prefix string) {
	cfg.Export.URL = "s3://" + s.Bucket + "/" + strings.Trim(prefix, "/")
	cfg.Export.S3Endpoint = s.Endpoint
	cfg.Export.S3Region = s.Region
	cfg.Export.S3PathStyle = true
	cfg.AWS.AccessKeyID = s.AccessKey
	cfg.AWS.SecretAccessKey = config.Secret(s.SecretKey)
	cfg.AWS.SessionToken = ""
}

// VersityGWBinary finds versitygw: $VERSITYGW_BIN, then PATH, then
// $(go env GOPATH)/bin.
func VersityGWBinary() (string, error) {
	if p := os.Getenv("VERSITYGW_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	p := filepath.Join(gopath, "bin", "versitygw")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("versitygw not found: run `make tools` (or `go install %s`) or set VERSITYGW_BIN", VersityGWModule)
	}
	return p, nil
}

// S3 starts a versitygw S3 server for this test on a free port over a
// temporary directory, waits until it answers, creates a bucket and
// returns how to reach it. The server is killed when the test ends. Without
// the versitygw binary the test fails in CI and skips elsewhere.
func S3(t testing.TB) S3Server {
	t.Helper()
	Integration(t)
	bin, err := VersityGWBinary()
	if err != nil {
		Unavailable(t, "versitygw S3 server", err)
	}
	s := S3Server{AccessKey: "iotetl-test", SecretKey: randomHex(16), Region: "us-east-1", Bucket: "iot-exports", Dir: t.TempDir()}
	var lastErr error
	for try := 0; try < 3; try++ { // another process may take the free port first
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p := Start(t, "versitygw", bin, nil, "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
			"--port", addr, "--quiet", "posix", s.Dir)
		s.Endpoint = "http://" + addr
		if lastErr = waitS3(p, s.Endpoint, 20*time.Second); lastErr == nil {
			break
		}
		p.Kill()
	}
	if lastErr != nil {
		t.Fatalf("versitygw did not start: %v", lastErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", s.Bucket, err)
	}
	return s
}

// Client is an AWS SDK client of the server, for test setup.
func (s S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: s.Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// waitS3 polls endpoint until it answers HTTP (an unsigned request gets
// 403, which proves the gateway is serving) or the process exits.
func waitS3(p *Process, endpoint string, timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %w\n%s", p.err, p.Log())
		default:
		}
		resp, err := hc.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("no answer within " + timeout.String())
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

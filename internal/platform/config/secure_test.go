package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSecretsFromFiles: every secret can come from <NAME>_FILE, without the
// trailing newline editors add.
func TestSecretsFromFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secrets := map[string]string{
		"MYSQL_PASSWORD": "my-pw", "POSTGRES_PASSWORD": "pg-pw", "TIMESCALE_PASSWORD": "ts-pw",
		"KAFKA_SASL_PASSWORD": "kafka-pw", "TEMPORAL_API_KEY": "tmprl-key",
		"AWS_SECRET_ACCESS_KEY": "aws-secret", "AWS_SESSION_TOKEN": "aws-token",
	}
	env := map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"}
	for name, v := range secrets {
		path := filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env[name+"_FILE"] = path
	}
	c, err := load(t, env)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{
		"MYSQL_PASSWORD": c.MySQL.Password.Reveal(), "POSTGRES_PASSWORD": c.Postgres.Password.Reveal(),
		"TIMESCALE_PASSWORD": c.Timescale.Password.Reveal(), "KAFKA_SASL_PASSWORD": c.Kafka.SASLPassword.Reveal(),
		"TEMPORAL_API_KEY": c.Temporal.APIKey.Reveal(), "AWS_SECRET_ACCESS_KEY": c.AWS.SecretAccessKey.Reveal(),
		"AWS_SESSION_TOKEN": c.AWS.SessionToken.Reveal(),
	}
	if diff := cmp.Diff(secrets, got); diff != "" {
		t.Errorf("secrets read from files (-want +got):\n%s", diff)
	}
}

func TestSecretAndSecretFileBothSetIsAnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := load(t, map[string]string{"TIMESCALE_PASSWORD": "from-env", "TIMESCALE_PASSWORD_FILE": path})
	if err == nil || !strings.Contains(err.Error(), "TIMESCALE_PASSWORD and TIMESCALE_PASSWORD_FILE are both set") {
		t.Fatalf("error = %v, want both variables named", err)
	}
	if strings.Contains(err.Error(), "from-env") || strings.Contains(err.Error(), "from-file") {
		t.Errorf("error echoes the secret: %v", err)
	}
	_, err = load(t, map[string]string{"MYSQL_PASSWORD_FILE": filepath.Join(t.TempDir(), "missing")})
	if err == nil || !strings.Contains(err.Error(), "MYSQL_PASSWORD_FILE=") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing secret file: error = %v, want the variable and the cause", err)
	}
}

// TestNewSecretsNeverPrint extends TestPasswordsNeverPrint to the secrets
// of the secured connections.
func TestNewSecretsNeverPrint(t *testing.T) {
	t.Parallel()
	const s = "Sup3r-s3cret-value"
	c, err := load(t, map[string]string{
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "etl", "KAFKA_SASL_PASSWORD": s,
		"TEMPORAL_API_KEY": s, "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": s, "AWS_SESSION_TOKEN": s,
	})
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", c, "kafka", c.Kafka, "temporal", c.Temporal)
	js, _ := json.Marshal(c)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", c), "%+v": fmt.Sprintf("%+v", *c), "%#v": fmt.Sprintf("%#v", *c),
		"json": string(js), "slog": logged.String(),
	} {
		if strings.Contains(out, s) {
			t.Errorf("%s output contains the secret", name)
		}
	}
}

func TestTLSImpliedBySettings(t *testing.T) {
	t.Parallel()
	ca, cert, key := writeTestCert(t)
	cases := []struct {
		env           map[string]string
		temporal, kfk bool
	}{
		{map[string]string{}, false, false},
		{map[string]string{"TEMPORAL_TLS": "true", "KAFKA_TLS": "true"}, true, true},
		{map[string]string{"TEMPORAL_TLS_CERT": cert, "TEMPORAL_TLS_KEY": key}, true, false},
		{map[string]string{"TEMPORAL_API_KEY": "k"}, true, false},
		{map[string]string{"KAFKA_TLS_CA": ca}, false, true},
		{map[string]string{"TEMPORAL_TLS_SERVER_NAME": "ns.tmprl.cloud"}, true, false},
	}
	for i, tc := range cases {
		c, err := load(t, tc.env)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if c.Temporal.TLSEnabled() != tc.temporal || c.Kafka.TLSEnabled() != tc.kfk {
			t.Errorf("case %d %v: temporal TLS %v, kafka TLS %v; want %v, %v", i, tc.env, c.Temporal.TLSEnabled(), c.Kafka.TLSEnabled(), tc.temporal, tc.kfk)
		}
	}
	c, err := load(t, map[string]string{"TEMPORAL_TLS_CA": ca, "TEMPORAL_TLS_CERT": cert, "TEMPORAL_TLS_KEY": key, "TEMPORAL_TLS_SERVER_NAME": "frontend"})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := c.Temporal.TLS.ClientConfig("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if tc.ServerName != "frontend" || len(tc.Certificates) != 1 || tc.RootCAs == nil {
		t.Errorf("tls config: server name %q, %d certificates, roots %v", tc.ServerName, len(tc.Certificates), tc.RootCAs != nil)
	}
}

// TestSecuredSettingsNameTheVariable: a wrong secured setting stops the
// program at start-up and names the variable.
func TestSecuredSettingsNameTheVariable(t *testing.T) {
	t.Parallel()
	ca, cert, key := writeTestCert(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TEMPORAL_TLS_CA": "/nonexistent/ca.pem"}, `TEMPORAL_TLS_CA="/nonexistent/ca.pem": no such file or directory`},
		{map[string]string{"KAFKA_TLS_CA": notPEM}, "KAFKA_TLS_CA=" + fmt.Sprintf("%q", notPEM) + ": no PEM certificate"},
		{map[string]string{"TEMPORAL_TLS_CERT": cert}, "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY: set both"},
		{map[string]string{"KAFKA_TLS_CERT": cert, "KAFKA_TLS_KEY": ca}, "KAFKA_TLS_CERT="},
		{map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI"}, `KAFKA_SASL_MECHANISM="GSSAPI": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_MECHANISM=PLAIN needs KAFKA_SASL_USERNAME"},
		{map[string]string{"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_MECHANISM is empty"},
		{map[string]string{"MYSQL_TLS": "yes"}, `MYSQL_TLS="yes": want false, true, skip-verify or preferred`},
		{map[string]string{"MYSQL_TLS_CA": ca}, "MYSQL_TLS=false but a MYSQL_TLS_* setting is given"},
		{map[string]string{"POSTGRES_SSLMODE": "verify-full", "POSTGRES_SSLCERT": cert}, "POSTGRES_SSLCERT and POSTGRES_SSLKEY: set both"},
		{map[string]string{"TIMESCALE_SSLROOTCERT": ca}, "TIMESCALE_SSLMODE=disable but TIMESCALE_SSLROOTCERT"},
		{map[string]string{"TIMESCALE_SSLMODE": "verify-full", "TIMESCALE_SSLROOTCERT": "/nonexistent/root.crt"}, `TIMESCALE_SSLROOTCERT="/nonexistent/root.crt": no such file`},
		{map[string]string{"EXPORT_URL": "gs://bucket"}, `EXPORT_URL="gs://bucket": unknown scheme "gs"`},
		{map[string]string{"EXPORT_URL": "file://relative/dir"}, "needs an absolute path"},
		{map[string]string{"EXPORT_URL": "s3://"}, "want s3://bucket/prefix"},
		{map[string]string{"EXPORT_S3_ENDPOINT": "http://minio:9000"}, "EXPORT_S3_* is set but EXPORT_URL"},
		{map[string]string{"EXPORT_URL": "s3://b", "EXPORT_S3_ENDPOINT": "minio:9000"}, `EXPORT_S3_ENDPOINT="minio:9000": want an http:// or https:// URL`},
		{map[string]string{"EXPORT_DIR": "/tmp/x"}, "EXPORT_DIR=\"/tmp/x\": replaced by EXPORT_URL"},
	}
	for _, tc := range cases {
		_, err := load(t, tc.env)
		if err == nil {
			t.Errorf("%v: no error, want %q", tc.env, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %q does not contain %q", tc.env, err, tc.want)
		}
	}
	if _, err := load(t, map[string]string{"MYSQL_TLS": "true", "MYSQL_TLS_CA": ca, "TIMESCALE_SSLMODE": "verify-full",
		"TIMESCALE_SSLROOTCERT": ca, "TIMESCALE_SSLCERT": cert, "TIMESCALE_SSLKEY": key}); err != nil {
		t.Errorf("valid TLS settings rejected: %v", err)
	}
}

func TestParseExportURL(t *testing.T) {
	t.Parallel()
	wd, _ := os.Getwd()
	cases := map[string]ExportURL{
		"./exports":                  {Scheme: "file", Path: filepath.Join(wd, "exports")},
		"file:///var/lib/x/":         {Scheme: "file", Path: "/var/lib/x"},
		"s3://features":              {Scheme: "s3", Bucket: "features"},
		"s3://features/iot/nightly/": {Scheme: "s3", Bucket: "features", Prefix: "iot/nightly"},
	}
	for in, want := range cases {
		got, err := ParseExportURL(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", in, diff)
		}
	}
}

func TestPostgresURLCarriesSSLFiles(t *testing.T) {
	t.Parallel()
	p := Postgres{Host: "db", Port: 5432, User: "etl", Database: "ts", SSLMode: "verify-full", SSLRootCert: "/ca.pem", SSLCert: "/c.pem", SSLKey: "/k.pem"}
	want := "postgres://etl@db:5432/ts?sslcert=%2Fc.pem&sslkey=%2Fk.pem&sslmode=verify-full&sslrootcert=%2Fca.pem"
	if got := p.URL(); got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
}

// writeTestCert writes a self-signed CA and a certificate/key pair it
// signs, returning the three paths.
func writeTestCert(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(leafKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestDomainDefaults: the defaults the domain defines reach the
// configuration of an unset variable; a variable set to zero keeps it.
func TestDomainDefaults(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	for _, v := range Variables() {
		known[v] = true
	}
	c, err := load(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := c.Env()
	for name, d := range domainDefaults {
		if !known[name] {
			t.Errorf("domainDefaults names %s, which Config does not read", name)
		}
		want := fmt.Sprint(d)
		if dur, ok := d.(time.Duration); ok {
			want = dur.String()
		}
		if env[name] != want {
			t.Errorf("%s unset = %q, want the domain default %q", name, env[name], want)
		}
	}
	c, err = load(t, map[string]string{"STREAM_ALLOWED_LATENESS": "0s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Stream.AllowedLateness != 0 {
		t.Errorf("set to zero: lateness %s; want 0 kept", c.Stream.AllowedLateness)
	}
}

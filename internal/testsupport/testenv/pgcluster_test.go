package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPGClusterTLSScramRestart: a hostssl-only scram cluster accepts its
// superuser over verified TLS only, refuses a wrong password and plain
// text, and serves again after a restart.
func TestPGClusterTLSScramRestart(t *testing.T) {
	certs := NewCerts(t)
	c := StartPGCluster(t, PGOptions{Certs: certs, Auth: "scram-sha-256", HostSSLOnly: true, SuperuserPassword: "s3cret pw"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	query := func(p string) (string, error) {
		conn, err := pgx.Connect(ctx, p)
		if err != nil {
			return "", err
		}
		defer conn.Close(ctx)
		tc, ok := conn.PgConn().Conn().(*tls.Conn)
		if !ok {
			t.Errorf("connection is not TLS")
		} else if got := tc.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "localhost" {
			t.Errorf("server certificate CN %q, want localhost", got)
		}
		var v string
		err = conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000 || ' ' || current_user").Scan(&v)
		return v, err
	}
	got, err := query(c.Admin().URL())
	if err != nil || got != "15 postgres" {
		t.Fatalf("superuser over TLS: %q, %v; want \"15 postgres\"", got, err)
	}

	c.CreateRole(t, "iot_etl", "it's")
	got, err = query(c.Config("iot_etl", "it's", "postgres").URL())
	if err != nil || got != "15 iot_etl" {
		t.Fatalf("role over TLS: %q, %v", got, err)
	}

	wrong := c.Config("iot_etl", "nope", "postgres")
	if _, err := pgx.Connect(ctx, wrong.URL()); !isPgError(err, "28P01") {
		t.Errorf("wrong password: %v, want SQLSTATE 28P01", err)
	}
	plain := c.Admin()
	plain.SSLMode, plain.SSLRootCert = "disable", ""
	if _, err := pgx.Connect(ctx, plain.URL()); !isPgError(err, "28000") || !strings.Contains(err.Error(), "no encryption") {
		t.Errorf("without TLS: %v, want SQLSTATE 28000 no pg_hba.conf entry ... no encryption", err)
	}

	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, c.Admin().URL()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("stopped cluster: %v, want connection refused", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if got, err := query(c.Admin().URL()); err != nil || got != "15 postgres" {
		t.Errorf("after restart: %q, %v", got, err)
	}
}

// isPgError reports whether err is a server error with the SQLSTATE code.
func isPgError(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

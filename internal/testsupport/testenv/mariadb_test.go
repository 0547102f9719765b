package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
)

// TestMariaDBTLSRequireSSL: a user created REQUIRE SSL logs in over
// verified TLS, is refused without TLS, and root's password is set.
func TestMariaDBTLSRequireSSL(t *testing.T) {
	certs := NewCerts(t)
	m := StartMariaDB(t, MariaDBOptions{Certs: certs, RootPassword: "r00t'pw"})
	m.CreateUser(t, "iot_etl", "tls only", true)

	user := m.Config("iot_etl", "tls only", "")
	if got := m.Query(t, user, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'SSL_VERSION'"); !strings.HasPrefix(got, "TLSv1.") {
		t.Errorf("Ssl_version %q, want TLSv1.x", got)
	}
	if got := m.Query(t, user, "SELECT CURRENT_USER()"); got != "iot_etl@localhost" {
		t.Errorf("current user %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pingAs := func(user, password, tlsMode string) error {
		c := m.Config(user, password, "")
		if tlsMode == "false" {
			c.TLS.CA = ""
		}
		c.TLSMode = tlsMode
		db, err := store.MySQLHandle(c, "")
		if err != nil {
			return err
		}
		defer db.Close()
		return db.PingContext(ctx)
	}
	var me *mysql.MySQLError
	if err := pingAs("iot_etl", "tls only", "false"); !errors.As(err, &me) || me.Number != 1045 {
		t.Errorf("REQUIRE SSL user without TLS: %v, want error 1045", err)
	}
	if err := pingAs("root", "", "true"); !errors.As(err, &me) || me.Number != 1045 {
		t.Errorf("root without its password: %v, want error 1045", err)
	}
	if err := pingAs("root", "r00t'pw", "true"); err != nil {
		t.Errorf("root with its password: %v", err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pingAs("root", "r00t'pw", "true"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("stopped server: %v, want connection refused", err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := pingAs("iot_etl", "tls only", "true"); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

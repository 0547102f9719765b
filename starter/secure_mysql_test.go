package main

import (
	"maps"
	"regexp"
	"strings"
	"testing"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// securedMySQLVars renders the MYSQL_* variables of m.
func securedMySQLVars(m config.MySQL) map[string]string {
	c := config.Config{MySQL: m}
	out := map[string]string{}
	for name, v := range c.Env() {
		if strings.HasPrefix(name, "MYSQL_") {
			out[name] = v
		}
	}
	return out
}

// TestSecureMySQLTLS: against a MariaDB with TLS and a user created
// REQUIRE SSL, migrate and check work with MYSQL_TLS=true and the test CA
// and report the TLS version. Each broken setting then fails check with
// exit 1 and a line that names the layer, never the password.
func TestSecureMySQLTLS(t *testing.T) {
	_, base := testStack(t)
	certs := testenv.NewCerts(t)
	const rootPW, userPW, plainPW = "root-pw-Hd2", "etl pw-4Rq'x", "plain-pw-9Lm"
	db := testenv.StartMariaDB(t, testenv.MariaDBOptions{Certs: certs, RootPassword: rootPW})
	db.CreateUser(t, "iot_etl", userPW, true)
	db.CreateUser(t, "iot_plain", plainPW, false)

	env := maps.Clone(base)
	maps.Copy(env, securedMySQLVars(db.Config("iot_etl", userPW, "iot_devices")))
	if env["MYSQL_TLS"] != "true" || env["MYSQL_TLS_CA"] != certs.CA || env["MYSQL_USER"] != "iot_etl" {
		t.Fatalf("env: MYSQL_TLS %q, MYSQL_TLS_CA %q", env["MYSQL_TLS"], env["MYSQL_TLS_CA"])
	}
	addr := db.Addr()

	code, out, errOut := starter(t, env, "migrate")
	if code != 0 {
		t.Fatalf("migrate: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if want := "mysql://iot_etl@" + addr + "/iot_devices: version "; !strings.Contains(out, want) {
		t.Errorf("migrate output lacks %q:\n%s", want, out)
	}

	code, out, errOut = starter(t, env, "check")
	if code != 0 {
		t.Fatalf("check: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	line := componentLine(out, "MySQL")
	if !regexp.MustCompile(`^MySQL +` + regexp.QuoteMeta(addr) + ` +OK +10\.\d+\.\d+-MariaDB\S* over TLS 1\.3, database iot_devices, 0 devices$`).MatchString(line) {
		t.Errorf("MySQL line = %q, want OK ...-MariaDB over TLS 1.3, database iot_devices, 0 devices", line)
	}
	if strings.Count(out, " OK ") != 6 {
		t.Errorf("want all 6 components OK:\n%s", out)
	}

	t.Run("password file", func(t *testing.T) {
		e := maps.Clone(env)
		delete(e, "MYSQL_PASSWORD")
		e["MYSQL_PASSWORD_FILE"] = writeSecret(t, userPW)
		code, out, errOut := starter(t, e, "check")
		if code != 0 || !strings.HasSuffix(componentLine(out, "MySQL"), " over TLS 1.3, database iot_devices, 0 devices") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})

	noTLS := map[string]string{"MYSQL_TLS": "false", "MYSQL_TLS_CA": ""}
	plainUser := map[string]string{"MYSQL_TLS": "false", "MYSQL_TLS_CA": "", "MYSQL_USER": "iot_plain", "MYSQL_PASSWORD": plainPW}

	// The control of the two refusals below: an account without REQUIRE
	// SSL logs in without TLS while the server allows it.
	t.Run("plain user without TLS", func(t *testing.T) {
		e := maps.Clone(env)
		maps.Copy(e, plainUser)
		code, out, errOut := starter(t, e, "check")
		line := componentLine(out, "MySQL")
		if code != 0 || !regexp.MustCompile(`^MySQL +`+regexp.QuoteMeta(addr)+` +OK +10\.\d+\.\d+-MariaDB\S*, database iot_devices, 0 devices$`).MatchString(line) {
			t.Errorf("exit %d, MySQL line %q, want OK without TLS\nstdout:\n%s\nstderr:\n%s", code, line, out, errOut)
		}
	})
	failures := []struct {
		name string
		set  map[string]string
		// setup runs before check, cleanup after.
		setup, cleanup []string
		// want is the MySQL line after the address up to the client's own
		// error, and cause the end of that error.
		want, cause string
	}{
		{
			name:  "unknown CA",
			set:   map[string]string{"MYSQL_TLS_CA": certs.OtherCA},
			want:  "FAILED: TLS: the server's certificate is signed by an unknown certificate authority (check MYSQL_TLS_CA): ",
			cause: "tls: failed to verify certificate: x509: certificate signed by unknown authority",
		},
		// MariaDB answers a login without TLS that the account (REQUIRE
		// SSL) or the server (require_secure_transport) refuses with the
		// same error 1045 as a wrong password; MySQL 8 has error 3159 for
		// the latter. With TLS off, the line names both possibilities.
		{
			name:  "REQUIRE SSL user without TLS",
			set:   noTLS,
			want:  "FAILED: authentication: the login was refused: a wrong user or password, or a user that may connect only over TLS (check MYSQL_USER/MYSQL_PASSWORD, MYSQL_TLS): ",
			cause: "Error 1045 (28000): Access denied for user 'iot_etl'@'localhost' (using password: YES)",
		},
		{
			name:    "server requires secure transport",
			set:     plainUser,
			setup:   []string{"SET GLOBAL require_secure_transport = ON"},
			cleanup: []string{"SET GLOBAL require_secure_transport = OFF"},
			want:    "FAILED: authentication: the login was refused: a wrong user or password, or a user that may connect only over TLS (check MYSQL_USER/MYSQL_PASSWORD, MYSQL_TLS): ",
			cause:   "Error 1045 (28000): Access denied for user 'iot_plain'@'localhost' (using password: YES)",
		},
		{
			name:  "wrong password",
			set:   map[string]string{"MYSQL_PASSWORD": "not-" + userPW},
			want:  "FAILED: authentication: the password or user was rejected (check MYSQL_USER/MYSQL_PASSWORD): ",
			cause: "Error 1045 (28000): Access denied for user 'iot_etl'@'localhost' (using password: YES)",
		},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			e := maps.Clone(env)
			maps.Copy(e, f.set)
			if len(f.setup) > 0 {
				db.Exec(t, db.Root(), f.setup...)
			}
			if len(f.cleanup) > 0 {
				defer db.Exec(t, db.Root(), f.cleanup...)
			}
			code, out, errOut := starter(t, e, "check", "-timeout", "5s")
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			line := componentLine(out, "MySQL")
			t.Logf("%s", line)
			prefix := regexp.MustCompile(`^MySQL +` + regexp.QuoteMeta(addr) + ` +`).FindString(line)
			if prefix == "" || !strings.HasPrefix(line[len(prefix):], f.want) || !strings.HasSuffix(line, f.cause) {
				t.Errorf("MySQL line =\n  %q\nwant\n  %q + ... + %q", line, "MySQL "+addr+" "+f.want, f.cause)
			}
			if strings.Count(out, " OK ") != 5 {
				t.Errorf("want the 5 other components OK:\n%s", out)
			}
			if errOut != "starter check: 1 component failed\n" {
				t.Errorf("stderr = %q", errOut)
			}
			for _, pw := range []string{userPW, "not-" + userPW, plainPW, rootPW} {
				if strings.Contains(out+errOut, pw) {
					t.Errorf("output contains the password %q:\n%s%s", pw, out, errOut)
				}
			}
		})
	}
}

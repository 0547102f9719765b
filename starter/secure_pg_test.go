package main

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/iot-etl/iot-etl/internal/platform/config"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// varsOf renders the variables of c whose names start with one of
// prefixes.
func varsOf(c config.Config, prefixes ...string) map[string]string {
	out := map[string]string{}
	for name, v := range c.Env() {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				out[name] = v
			}
		}
	}
	return out
}

// postgresVars renders the POSTGRES_* and TIMESCALE_* variables of the two
// databases.
func postgresVars(locations, timescale config.Postgres) map[string]string {
	return varsOf(config.Config{Postgres: locations, Timescale: timescale}, "POSTGRES_", "TIMESCALE_")
}

// componentLine is the line of `starter check` output for component.
func componentLine(out, component string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, component+" ") {
			return l
		}
	}
	return ""
}

// TestSecurePostgresVerifyFull: against a cluster that accepts its users
// only over TLS with a scram password, migrate and check work with
// sslmode verify-full and the test CA, and report TLS. Each broken
// setting then fails check at once with exit 1 and a line that names the
// layer and the variable to look at, never the password.
func TestSecurePostgresVerifyFull(t *testing.T) {
	_, base := testStack(t)
	certs := testenv.NewCerts(t, "127.0.0.1") // connecting by the name localhost must fail
	const superPW, userPW = "su-pw-Zq8", "etl pw-7Yk'x"
	pg := testenv.StartPGCluster(t, testenv.PGOptions{Certs: certs, Auth: "scram-sha-256", HostSSLOnly: true, SuperuserPassword: superPW})
	pg.CreateRole(t, "iot_etl", userPW)

	env := maps.Clone(base)
	maps.Copy(env, postgresVars(pg.Config("iot_etl", userPW, "iot_locations"), pg.Config("iot_etl", userPW, "iot_timeseries")))
	if env["TIMESCALE_SSLMODE"] != "verify-full" || env["TIMESCALE_SSLROOTCERT"] != certs.CA || env["POSTGRES_PASSWORD"] != userPW {
		t.Fatalf("env: sslmode %q, root cert %q", env["TIMESCALE_SSLMODE"], env["TIMESCALE_SSLROOTCERT"])
	}
	addr := pg.Addr()

	code, out, errOut := starter(t, env, "migrate")
	if code != 0 {
		t.Fatalf("migrate: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"postgres://iot_etl@" + addr + "/iot_locations: version ",
		"postgres://iot_etl@" + addr + "/iot_timeseries, plain PostgreSQL tables",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = starter(t, env, "check")
	if code != 0 {
		t.Fatalf("check: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	pgLine, tsLine := componentLine(out, "PostgreSQL"), componentLine(out, "TimescaleDB")
	if !regexp.MustCompile(`^PostgreSQL +` + regexp.QuoteMeta(addr) + ` +OK +PostgreSQL 15\.\S+( \(.*\))? over TLS 1\.3, database iot_locations, 0 locations$`).MatchString(pgLine) {
		t.Errorf("PostgreSQL line = %q, want OK over TLS 1.3, database iot_locations, 0 locations", pgLine)
	}
	if !regexp.MustCompile(`^TimescaleDB +` + regexp.QuoteMeta(addr) + ` +OK +PostgreSQL 15\.\S+( \(.*\))? without timescaledb \(plain tables\) over TLS 1\.3, database iot_timeseries, 0 readings$`).MatchString(tsLine) {
		t.Errorf("TimescaleDB line = %q, want OK without timescaledb over TLS 1.3, database iot_timeseries, 0 readings", tsLine)
	}
	if strings.Count(out, " OK ") != 6 {
		t.Errorf("want all 6 components OK:\n%s", out)
	}

	// The password from a file, as Docker and Kubernetes secrets give it
	// (with the trailing newline editors add).
	t.Run("password file", func(t *testing.T) {
		pwFile := filepath.Join(t.TempDir(), "timescale-password")
		if err := os.WriteFile(pwFile, []byte(userPW+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		e := maps.Clone(env)
		delete(e, "TIMESCALE_PASSWORD")
		e["TIMESCALE_PASSWORD_FILE"] = pwFile
		code, out, errOut := starter(t, e, "check")
		if code != 0 || !strings.Contains(componentLine(out, "TimescaleDB"), " OK ") || !strings.Contains(componentLine(out, "TimescaleDB"), "over TLS 1.3, database iot_timeseries") {
			t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
	})

	failures := []struct {
		name string
		set  map[string]string
		// want is the whole TimescaleDB line up to the client's own error,
		// and cause the end of that error.
		want, cause string
	}{
		{
			name:  "unknown CA",
			set:   map[string]string{"TIMESCALE_SSLROOTCERT": certs.OtherCA},
			want:  "FAILED: TLS: the server's certificate is signed by an unknown certificate authority (check TIMESCALE_SSLROOTCERT): ",
			cause: "x509: certificate signed by unknown authority",
		},
		{
			name:  "host not in the certificate",
			set:   map[string]string{"TIMESCALE_HOST": "localhost"},
			want:  "FAILED: TLS: the server's certificate does not match the server name (check TIMESCALE_HOST): ",
			cause: "x509: certificate is not valid for any names, but wanted to match localhost",
		},
		{
			name:  "no TLS against hostssl only",
			set:   map[string]string{"TIMESCALE_SSLMODE": "disable", "TIMESCALE_SSLROOTCERT": ""},
			want:  "FAILED: authentication: the server accepts this user only over TLS (check TIMESCALE_SSLMODE): ",
			cause: `no pg_hba.conf entry for host "127.0.0.1", user "iot_etl", database "iot_timeseries", no encryption (SQLSTATE 28000)`,
		},
		{
			name:  "wrong password",
			set:   map[string]string{"TIMESCALE_PASSWORD": "not-" + userPW},
			want:  "FAILED: authentication: the password was rejected (check TIMESCALE_USER/TIMESCALE_PASSWORD): ",
			cause: `password authentication failed for user "iot_etl" (SQLSTATE 28P01)`,
		},
		{
			name:  "wrong password from a file",
			set:   map[string]string{"TIMESCALE_PASSWORD": "", "TIMESCALE_PASSWORD_FILE": writeSecret(t, "wrong-"+userPW)},
			want:  "FAILED: authentication: the password was rejected (check TIMESCALE_USER/TIMESCALE_PASSWORD): ",
			cause: `password authentication failed for user "iot_etl" (SQLSTATE 28P01)`,
		},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			e := maps.Clone(env)
			maps.Copy(e, f.set)
			code, out, errOut := starter(t, e, "check", "-timeout", "5s")
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			host := addr
			if h := f.set["TIMESCALE_HOST"]; h != "" {
				host = h + ":" + strconv.Itoa(pg.Port)
			}
			line := componentLine(out, "TimescaleDB")
			t.Logf("%s", line)
			prefix := regexp.MustCompile(`^TimescaleDB +` + regexp.QuoteMeta(host) + ` +`).FindString(line)
			if prefix == "" || !strings.HasPrefix(line[len(prefix):], f.want) || !strings.HasSuffix(line, f.cause) {
				t.Errorf("TimescaleDB line =\n  %q\nwant\n  %q + ... + %q", line, "TimescaleDB "+host+" "+f.want, f.cause)
			}
			if !strings.Contains(componentLine(out, "PostgreSQL"), " OK ") || strings.Count(out, " OK ") != 5 {
				t.Errorf("want the 5 other components OK:\n%s", out)
			}
			if errOut != "starter check: 1 component failed\n" {
				t.Errorf("stderr = %q", errOut)
			}
			for _, pw := range []string{userPW, "not-" + userPW, "wrong-" + userPW, superPW} {
				if strings.Contains(out+errOut, pw) {
					t.Errorf("output contains the password %q:\n%s%s", pw, out, errOut)
				}
			}
		})
	}
}

func writeSecret(t *testing.T, secret string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

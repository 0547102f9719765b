package config

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-envconfig"
)

// TestEnvExampleDocumentsEveryVariable keeps .env.example complete: every
// variable Config reads is listed, nothing else is, and the file loads.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	want := Variables()
	sort.Strings(want)
	vars, err := ReadDotEnv("../../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(vars))
	for k := range vars {
		got = append(got, k)
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf(".env.example variables (-want +got):\n%s", diff)
	}
	if _, err := LoadFrom(context.Background(), envconfig.MapLookuper(vars)); err != nil {
		t.Errorf(".env.example does not load: %v", err)
	}
}

func TestEnvDockerLoadsAndTargetsCompose(t *testing.T) {
	t.Parallel()
	vars, err := ReadDotEnv("../../../.env.docker")
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadFrom(context.Background(), envconfig.MapLookuper(vars))
	if err != nil {
		t.Fatal(err)
	}
	if c.Timescale.Port != 5433 || c.MySQL.Password.Reveal() == "" {
		t.Errorf("timescale port %d, mysql password set %v: want 5433 and a password", c.Timescale.Port, c.MySQL.Password != "")
	}
	compose, err := os.ReadFile("../../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"MYSQL_PASSWORD", "POSTGRES_PASSWORD", "TIMESCALE_PASSWORD", "TIMESCALE_PORT"} {
		if !strings.Contains(string(compose), "${"+v) {
			t.Errorf("docker-compose.yml does not read %s from .env", v)
		}
	}
}

// TestEnvProductionExampleNamesOnlyRealVariables: every variable of
// .env.production.example, commented-out ones included, is one Config reads
// (or its *_FILE form), and the secrets come from files.
func TestEnvProductionExampleNamesOnlyRealVariables(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../../.env.production.example")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, v := range Variables() {
		known[v] = true
		if isSecretName(v) {
			known[v+"_FILE"] = true
		}
	}
	var text strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		text.WriteString(strings.TrimPrefix(line, "# ") + "\n")
	}
	seen := 0
	for _, line := range strings.Split(text.String(), "\n") {
		name, _, ok := strings.Cut(line, "=")
		if !ok || strings.ContainsAny(name, " #") || name == "" {
			continue
		}
		seen++
		if !known[name] {
			t.Errorf(".env.production.example sets %s, which iot-etl does not read", name)
		}
		if isSecretName(name) && !strings.HasSuffix(name, "_FILE") {
			t.Errorf(".env.production.example sets the secret %s in clear; use %s_FILE", name, name)
		}
	}
	if seen < 30 {
		t.Errorf("only %d variables found in .env.production.example", seen)
	}
	vars, err := ParseDotEnv(".env.production.example", string(b))
	if err != nil {
		t.Fatal(err)
	}
	if vars["TIMESCALE_SSLMODE"] != "verify-full" || vars["KAFKA_TLS"] != "true" || vars["MYSQL_TLS"] != "true" {
		t.Errorf("the production example does not verify TLS everywhere: %v", vars)
	}
}

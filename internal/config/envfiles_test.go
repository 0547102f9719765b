package config

import (
	"context"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-envconfig"
)

// variables lists every environment variable Config reads, from its tags.
func variables(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("env")
		name, opts, _ := strings.Cut(tag, ",")
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Secret("")) {
			p := ""
			for _, o := range strings.Split(opts, ",") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(o), "prefix="); ok {
					p = v
				}
			}
			out = append(out, variables(f.Type, prefix+p)...)
			continue
		}
		out = append(out, prefix+strings.TrimSpace(name))
	}
	return out
}

// TestEnvExampleDocumentsEveryVariable keeps .env.example complete: every
// variable Config reads is listed, nothing else is, and the file loads.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	want := variables(reflect.TypeOf(Config{}), "")
	sort.Strings(want)
	vars, err := ReadDotEnv("../../.env.example")
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
	vars, err := ReadDotEnv("../../.env.docker")
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
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"MYSQL_PASSWORD", "POSTGRES_PASSWORD", "TIMESCALE_PASSWORD", "TIMESCALE_PORT"} {
		if !strings.Contains(string(compose), "${"+v) {
			t.Errorf("docker-compose.yml does not read %s from .env", v)
		}
	}
}

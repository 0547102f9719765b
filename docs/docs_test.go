// Package docs holds the project's guides. Its test runs every command of
// the guides marked runnable (a "sh run" block, see
// internal/testsupport/doccheck) against a fresh test stack, one per file,
// and checks the output the guide shows.
package docs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/temporalx"
	"github.com/iot-etl/iot-etl/internal/testsupport/doccheck"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// mustRun are the files that must hold runnable steps: the guides and the
// learning path are walked through, not only read.
var mustRun = []string{"LEARNING_PATH.md", "ETL_CONCEPTS.md", "TEMPORAL_GUIDE.md", "KAFKA_GUIDE.md", "ML.md"}

func TestRunnableDocs(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	byFile := map[string][]doccheck.Step{}
	for _, f := range files {
		steps, err := doccheck.Parse(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) > 0 {
			byFile[f] = steps
		}
	}
	for _, f := range mustRun {
		if len(byFile[f]) == 0 {
			t.Errorf("%s has no runnable step", f)
		}
	}
	for _, f := range files {
		steps := byFile[f]
		if len(steps) == 0 {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(f), ".md"), func(t *testing.T) { runSteps(t, steps) })
	}
}

// runSteps runs the steps of one file in order in a shell whose working
// directory looks like a checkout after `make build` (bin/, docs/), on a
// stack of its own: fresh databases, a Temporal dev server, a Kafka broker
// and a worker.
func runSteps(t *testing.T, steps []doccheck.Step) {
	testenv.Integration(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"./worker", "./starter"} {
		if err := os.Symlink(testenv.Build(t, pkg), filepath.Join(bin, filepath.Base(pkg))); err != nil {
			t.Fatal(err)
		}
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(here, filepath.Join(dir, "docs")); err != nil {
		t.Fatal(err)
	}

	s := testenv.Databases(t)
	cfg := s.Config
	ctx := context.Background()
	srv, err := temporalx.StartDevServer(ctx)
	if err != nil {
		testenv.Unavailable(t, "Temporal dev server", err)
	}
	t.Cleanup(srv.Stop)
	cfg.Temporal.Address = srv.Addr
	_, brokers := testenv.Kafka(t, cfg.Kafka.Topic, int32(cfg.Kafka.Partitions))
	cfg.Kafka.BootstrapServers = brokers
	cfg.Export.URL = filepath.Join(dir, "exports")

	env := testenv.EnvMap(cfg)
	ts := cfg.Timescale
	env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"] = ts.Host, strconv.Itoa(ts.Port), ts.User, ts.Database
	env["PGPASSWORD"] = ts.Password.Reveal()
	env["TZ"] = "UTC"
	worker := testenv.Start(t, "worker", filepath.Join(bin, "worker"), env)

	path := bin + ":" + os.Getenv("PATH")
	if tb := os.Getenv("TEMPORAL_BIN"); tb != "" {
		path = filepath.Dir(tb) + ":" + path
	}
	for _, step := range steps {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		cmd := testenv.Command(ctx, "bash", env, "-euo", "pipefail", "-c", step.Script)
		cmd.Dir = dir
		for i, kv := range cmd.Env {
			if strings.HasPrefix(kv, "PATH=") {
				cmd.Env[i] = "PATH=" + path
			}
		}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\n$ %s\n%s\n--- worker log ---\n%s", step, err, step.Script, out, worker.Log())
		}
		if err := step.Check(string(out)); err != nil {
			t.Fatalf("%v\n$ %s\n%s", err, step.Script, out)
		}
		t.Logf("%s ok in %s\n$ %s\n%s", step, time.Since(start).Round(time.Millisecond), step.Script, out)
	}
}

// TestLinks: every relative link of the docs and the README leads to a file
// that exists and, with an anchor, to a heading of it.
func TestLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		anchors[path] = doccheck.Anchors(string(b))
		return anchors[path]
	}
	checked := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range doccheck.Links(string(b)) {
			target := f
			if l.File != "" {
				target = filepath.Join(filepath.Dir(f), l.File)
				if _, err := os.Stat(target); err != nil {
					t.Errorf("%s:%d: link to %s: %v", f, l.Line, l.File, err)
					continue
				}
			}
			if l.Anchor != "" && strings.HasSuffix(target, ".md") && !anchorsOf(target)[l.Anchor] {
				t.Errorf("%s:%d: link to %s#%s: no such heading", f, l.Line, l.File, l.Anchor)
			}
			checked++
		}
	}
	if checked < 50 {
		t.Errorf("only %d links checked: the parser lost them", checked)
	}
	t.Logf("%d links checked", checked)
}

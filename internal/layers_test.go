package internal_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/iot-etl/iot-etl/"

// layerRules says, for the packages under a path, which imports are
// forbidden (by path prefix, module-relative for the project's own).
var layerRules = []struct {
	under  string
	forbid []string
	why    string
}{
	{"internal/domain/", []string{"internal/adapter/", "internal/platform/", "internal/testsupport/", "activities", "workflows",
		"go.temporal.io/", "github.com/jackc/", "github.com/twmb/", "github.com/go-sql-driver/", "database/sql", "net", "os/exec"},
		"the domain is pure: no I/O, no adapters, no Temporal, pgx, database/sql or franz-go"},
	{"internal/platform/", []string{"internal/adapter/", "internal/testsupport/", "activities", "workflows"},
		"the platform sits below the adapters"},
	{"internal/adapter/", []string{"internal/testsupport/", "activities", "workflows", "worker", "starter", "devstack", "bench/"},
		"adapters serve the layers above them and never call them"},
	{"workflows", []string{"internal/adapter/", "internal/platform/", "internal/testsupport/",
		"github.com/jackc/", "github.com/twmb/", "github.com/go-sql-driver/", "database/sql", "net/http", "os"},
		"workflows are deterministic orchestration: they see domain and activity types only"},
	{"activities", []string{"workflows", "internal/testsupport/"}, "activities do not orchestrate"},
	{"worker", []string{"internal/testsupport/"}, "only tests and benchmarks use the test harnesses"},
	{"starter", []string{"internal/testsupport/"}, "only tests and benchmarks use the test harnesses"},
	{"devstack", []string{"internal/testsupport/"}, "only tests and benchmarks use the test harnesses"},
}

// TestLayers checks the import direction of every non-test package of the
// module against layerRules (internal/doc.go draws the picture).
func TestLayers(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		for _, rule := range layerRules {
			if pkg != strings.TrimSuffix(rule.under, "/") && !strings.HasPrefix(pkg, rule.under) &&
				!strings.HasPrefix(pkg, rule.under+"/") {
				continue
			}
			checked++
			for _, imp := range fields[1:] {
				rel := strings.TrimPrefix(imp, module)
				for _, f := range rule.forbid {
					if rel == f || strings.HasPrefix(rel, f) && (strings.HasSuffix(f, "/") || strings.HasPrefix(rel, f+"/")) {
						t.Errorf("%s imports %s: %s", pkg, imp, rule.why)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d packages matched a rule: is the layout still internal/{domain,adapter,platform,testsupport}?", checked)
	}
}

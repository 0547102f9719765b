package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// monitoringExprs returns every PromQL expression of the alert rules and
// the Grafana dashboards, named by where it is.
func monitoringExprs(t *testing.T, p parser.Parser) map[string]string {
	t.Helper()
	out := map[string]string{}
	groups, errs := rulefmt.ParseFile("../monitoring/alerts.yml", false, model.UTF8Validation, p, nil)
	for _, err := range errs {
		t.Errorf("monitoring/alerts.yml: %v", err)
	}
	if groups != nil {
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				out["alert "+r.Alert] = r.Expr
			}
		}
	}
	files, err := filepath.Glob("../monitoring/grafana/dashboards/*.json")
	if err != nil || len(files) != 2 {
		t.Fatalf("dashboards: %v %v, want 2", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for i, target := range p.Targets {
				out[filepath.Base(f)+": "+p.Title+" #"+string(rune('A'+i))] = target.Expr
			}
		}
	}
	return out
}

// checkMonitoringExprs parses every expression of the alert rules and the
// dashboards, and checks that each metric it selects is one the real
// scrape exposed (scraped) or a Temporal SDK series docs/metrics.md lists
// as appearing under load only.
func checkMonitoringExprs(t *testing.T, scraped map[string]bool) {
	t.Helper()
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(temporal_[a-z_]+)`").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	// Every series of the pipeline the scrape holds is documented.
	for name := range scraped {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if strings.HasPrefix(name, "iotetl_") && !bytes.Contains(doc, []byte("`"+base+"`")) {
			t.Errorf("%s is not in docs/metrics.md", base)
		}
	}
	p := parser.NewParser(parser.Options{})
	exprs := monitoringExprs(t, p)
	if len(exprs) < 40 {
		t.Errorf("%d expressions in the rules and dashboards, want at least 40", len(exprs))
	}
	for where, expr := range exprs {
		ast, err := p.ParseExpr(expr)
		if err != nil {
			t.Errorf("%s: %q: %v", where, expr, err)
			continue
		}
		parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok && !scraped[vs.Name] && !documented[vs.Name] {
				t.Errorf("%s: %s is neither in the scrape nor documented as an SDK series under load", where, vs.Name)
			}
			return nil
		})
	}
}

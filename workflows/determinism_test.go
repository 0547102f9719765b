package workflows

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestWorkflowCodeIsDeterministic reads the workflow sources and rejects
// what breaks replay: the wall clock, sleeps and timers outside Temporal,
// randomness, goroutines, channels and select statements (use workflow.Now,
// workflow.Sleep, workflow.Go, workflow.Channel and workflow.Selector).
func TestWorkflowCodeIsDeterministic(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]string{
		"time.Now": "workflow.Now", "time.Sleep": "workflow.Sleep", "time.After": "workflow.NewTimer",
		"time.NewTimer": "workflow.NewTimer", "time.Tick": "workflow.NewTimer", "time.NewTicker": "workflow.NewTimer",
		"time.Since": "workflow.Now", "time.Until": "workflow.Now",
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range file.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == "math/rand" || path == "math/rand/v2" || path == "crypto/rand" {
				t.Errorf("%s imports %s: use workflow.SideEffect for randomness", fset.Position(imp.Pos()), path)
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok {
					if alt, bad := banned[id.Name+"."+n.Sel.Name]; bad {
						t.Errorf("%s: %s.%s in workflow code: use %s", fset.Position(n.Pos()), id.Name, n.Sel.Name, alt)
					}
				}
			case *ast.GoStmt:
				t.Errorf("%s: go statement in workflow code: use workflow.Go", fset.Position(n.Pos()))
			case *ast.SelectStmt:
				t.Errorf("%s: select statement in workflow code: use workflow.NewSelector", fset.Position(n.Pos()))
			case *ast.ChanType:
				t.Errorf("%s: Go channel in workflow code: use workflow.NewChannel", fset.Position(n.Pos()))
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no workflow sources found")
	}
}

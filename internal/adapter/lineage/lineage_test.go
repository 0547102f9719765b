package lineage_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-etl/iot-etl/internal/adapter/lineage"
	"github.com/iot-etl/iot-etl/internal/platform/config"
)

func TestFileEmitterAppendsJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	e, err := lineage.New(config.Lineage{URL: "file://" + path, Namespace: "ns"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, typ := range []string{lineage.Start, lineage.Complete} {
		ev := e.Event(typ, "job", "0193a0b0-0000-7000-8000-000000000001", at, nil,
			[]lineage.Dataset{lineage.Dataset{Namespace: "postgres://h:5432", Name: "db.dwh.t"}.WithRows(false, 7)})
		if err := e.Emit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var types []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev lineage.RunEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if ev.Job.Namespace != "ns" || ev.Run.RunID == "" || len(ev.Outputs) != 1 || ev.Inputs == nil {
			t.Errorf("event %+v", ev)
		}
		types = append(types, ev.EventType)
	}
	if strings.Join(types, ",") != "START,COMPLETE" {
		t.Errorf("events in the file: %v", types)
	}
}

func TestHTTPEmitter(t *testing.T) {
	var path, auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, auth = r.URL.Path, r.Header.Get("Authorization")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	e, err := lineage.New(config.Lineage{URL: srv.URL, Namespace: "ns", APIKey: "k3y"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = e.Emit(context.Background(), e.Event(lineage.Start, "job", "r", time.Now(), nil, nil))
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a 503 answer: err %v", err)
	}
	if path != "/api/v1/lineage" || auth != "Bearer k3y" {
		t.Errorf("POST to %q with Authorization %q", path, auth)
	}
	for _, bad := range []string{"ftp://x", "file://"} {
		if _, err := lineage.New(config.Lineage{URL: bad}, nil); err == nil {
			t.Errorf("OPENLINEAGE_URL=%s accepted", bad)
		}
	}
	off, err := lineage.New(config.Lineage{}, nil)
	if err != nil || off.Enabled() {
		t.Errorf("empty URL: enabled %v, err %v", off.Enabled(), err)
	}
}

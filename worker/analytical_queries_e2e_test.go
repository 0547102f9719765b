package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/iot-etl/iot-etl/internal/testsupport/e2e"
	"github.com/iot-etl/iot-etl/workflows"
)

// TestAnalyticalQueries runs docs/analytical_queries.sql with psql, as the
// file says, against a warehouse one batch run loaded, and checks its
// figures against the warehouse: the file's queries and its custom view
// cannot rot unnoticed.
func TestAnalyticalQueries(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatal("psql (postgresql-client) is needed: ", err)
	}
	b := e2e.NewBatch(t, 4)
	res := b.Wait(b.Start(workflows.BatchInput{}))
	ts := b.Stack.Config.Timescale
	cmd := exec.Command(psql, "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1", "-f", "../docs/analytical_queries.sql")
	cmd.Env = append(cmd.Environ(), "PGHOST="+ts.Host, "PGPORT="+strconv.Itoa(ts.Port), "PGUSER="+ts.User,
		"PGPASSWORD="+ts.Password.Reveal(), "PGDATABASE="+ts.Database)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql -f docs/analytical_queries.sql: %v\n%s", err, out)
	}
	sections := map[string][][]string{}
	var name string
	for _, block := range strings.Split("\n"+string(out), "\n== ")[1:] {
		title, body, _ := strings.Cut(block, "\n")
		name = strings.SplitN(title, ".", 2)[0]
		rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("section %s: %v\n%s", title, err, body)
		}
		sections[name] = rows
	}
	if len(sections) != 9 {
		t.Fatalf("%d sections, want 9:\n%s", len(sections), out)
	}
	row := func(sec string) map[string]string {
		rows := sections[sec]
		if len(rows) != 2 {
			t.Fatalf("section %s: %v, want a header and one row", sec, rows)
		}
		m := map[string]string{}
		for i, h := range rows[0] {
			m[h] = rows[1][i]
		}
		return m
	}
	count := func(q string) string { return strconv.FormatInt(b.Count(q), 10) }

	var devices int
	for _, r := range sections["1"][1:] {
		n, _ := strconv.Atoi(r[2])
		devices += n
	}
	if devices != 4 {
		t.Errorf("1: %d current devices, want 4: %v", devices, sections["1"])
	}
	facts := row("2")
	want := map[string]string{
		"fact_rows":  strconv.FormatInt(res.RowsLoaded, 10),
		"with_value": count(`SELECT count(value) FROM dwh.fact_sensor_readings_enriched`),
		"anomalies":  count(`SELECT count(*) FROM dwh.fact_sensor_readings_enriched WHERE is_anomaly`),
	}
	for k, v := range want {
		if facts[k] != v {
			t.Errorf("2: %s = %s, want %s", k, facts[k], v)
		}
	}
	var mean float64
	if err := b.Stack.Timescale.QueryRow(context.Background(), `SELECT round(avg(quality_score)::numeric, 4) FROM dwh.fact_sensor_readings_enriched`).Scan(&mean); err != nil ||
		facts["mean_quality"] != strconv.FormatFloat(mean, 'f', 4, 64) {
		t.Errorf("2: mean_quality %s, want %.4f (%v)", facts["mean_quality"], mean, err)
	}
	if n := len(sections["4"]) - 1; n != 4 {
		t.Errorf("4: %d devices listed, want all 4 (fewer than 5)", n)
	}
	var reasons int64
	for _, r := range sections["5"][1:] {
		n, _ := strconv.ParseInt(r[1], 10, 64)
		reasons += n
	}
	if got := fmt.Sprint(reasons); got != count(`SELECT coalesce(sum(cardinality(anomaly_reasons)), 0) FROM dwh.fact_sensor_readings_enriched`) {
		t.Errorf("5: reasons add up to %s", got)
	}
	var bands int64
	for _, r := range sections["7"][1:] {
		n, _ := strconv.ParseInt(r[1], 10, 64)
		bands += n
	}
	if bands != res.RowsLoaded {
		t.Errorf("7: quality bands add up to %d, want %d", bands, res.RowsLoaded)
	}
	if runs := sections["8"]; len(runs) != 2 || runs[1][2] != "succeeded" || runs[1][3] != strconv.FormatInt(res.RowsLoaded, 10) {
		t.Errorf("8: %v, want the one succeeded run with its rows", runs)
	}
	view := row("9")
	if view["device_days"] != count(`SELECT count(DISTINCT (device_id, date_trunc('day', time))) FROM dwh.fact_sensor_readings_enriched`) ||
		view["readings"] != strconv.FormatInt(res.RowsLoaded, 10) || view["anomalies"] != facts["anomalies"] {
		t.Errorf("9: the view gives %v", view)
	}
	if n := b.Count(`SELECT count(*) FROM pg_views WHERE schemaname = 'dwh' AND viewname = 'v_device_daily_quality'`); n != 1 {
		t.Error("the custom view dwh.v_device_daily_quality was not created")
	}
}

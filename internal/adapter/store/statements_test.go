package store_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/iot-etl/iot-etl/internal/adapter/store"
	"github.com/iot-etl/iot-etl/internal/testsupport/testenv"
)

// TestStatements: the tracer adds up each statement's calls and rows,
// COPY included, under its text with the whitespace folded.
func TestStatements(t *testing.T) {
	p := testenv.PostgresDB(t, testenv.BaseConfig(t).Timescale, "stmts")
	ctx := context.Background()
	stmts := store.NewStatements()
	pool, err := store.OpenPGPool(ctx, p, nil, 2, stmts)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE t (id integer)`); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := pool.Exec(ctx, "INSERT INTO t\n\t  VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id"}, pgx.CopyFromRows([][]any{{10}, {11}, {12}, {13}, {14}}))
	if err != nil || n != 5 {
		t.Fatalf("copy: %d rows, %v", n, err)
	}
	var count int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&count); err != nil || count != 8 {
		t.Fatalf("count: %d, %v", count, err)
	}
	got := map[string]store.StatementStat{}
	for _, s := range stmts.Top(0) {
		got[s.SQL] = s
		if s.Total <= 0 {
			t.Errorf("%q: total %s", s.SQL, s.Total)
		}
	}
	for sql, want := range map[string][2]int64{
		"INSERT INTO t VALUES ($1)":   {3, 3},
		`COPY "t" (id)`:               {1, 5},
		"SELECT count(*) FROM t":      {1, 1},
		"CREATE TABLE t (id integer)": {1, 0},
	} {
		if s := got[sql]; s.Calls != want[0] || s.Rows != want[1] {
			t.Errorf("%q: %d calls, %d rows; want %d, %d (all: %v)", sql, s.Calls, s.Rows, want[0], want[1], stmts.Top(0))
		}
	}
	if top := stmts.Top(2); len(top) != 2 || top[0].Total < top[1].Total {
		t.Errorf("Top(2) = %v; want the 2 longest, longest first", top)
	}
	var table bytes.Buffer
	if err := stmts.WriteTable(&table, 0); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(table.String()), "\n"); len(lines) != 1+len(got) || !strings.HasPrefix(lines[0], "total s") {
		t.Errorf("table:\n%s", table.String())
	}
}

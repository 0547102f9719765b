package store

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Statements adds up, per statement text, how often the pools' statements
// ran and how long they took as the client saw them (wall time from send
// to the last row, COPY included): pg_stat_statements for the worker's own
// SQL, on servers where that extension is not loaded. It is a pgx tracer;
// a worker started with -sqlprofile writes it at exit.
type Statements struct {
	mu    sync.Mutex
	stats map[string]*StatementStat
}

// StatementStat is one statement's total.
type StatementStat struct {
	SQL   string        `json:"sql"` // whitespace folded, at most 160 characters
	Calls int64         `json:"calls"`
	Rows  int64         `json:"rows"`
	Total time.Duration `json:"total_ns"`
}

// NewStatements returns an empty Statements.
func NewStatements() *Statements { return &Statements{stats: map[string]*StatementStat{}} }

type stmtStart struct {
	sql string
	at  time.Time
}

type stmtKey struct{}

var spaces = regexp.MustCompile(`\s+`)

// statementText is the key a statement adds up under.
func statementText(sql string) string {
	s := strings.TrimSpace(spaces.ReplaceAllString(sql, " "))
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func (s *Statements) add(ctx context.Context, rows int64) {
	st, ok := ctx.Value(stmtKey{}).(stmtStart)
	if !ok {
		return
	}
	d := time.Since(st.at)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.stats[st.sql]
	if e == nil {
		e = &StatementStat{SQL: st.sql}
		s.stats[st.sql] = e
	}
	e.Calls++
	e.Rows += rows
	e.Total += d
}

// TraceQueryStart implements pgx.QueryTracer.
func (s *Statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, stmtKey{}, stmtStart{sql: statementText(d.SQL), at: time.Now()})
}

// TraceQueryEnd implements pgx.QueryTracer.
func (s *Statements) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	s.add(ctx, d.CommandTag.RowsAffected())
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (s *Statements) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	return context.WithValue(ctx, stmtKey{}, stmtStart{sql: "COPY " + d.TableName.Sanitize() + " (" + strings.Join(d.ColumnNames, ", ") + ")", at: time.Now()})
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (s *Statements) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromEndData) {
	s.add(ctx, d.CommandTag.RowsAffected())
}

// Top returns the n statements with the most total time, most first
// (all of them when n <= 0).
func (s *Statements) Top(n int) []StatementStat {
	s.mu.Lock()
	out := make([]StatementStat, 0, len(s.stats))
	for _, e := range s.stats {
		out = append(out, *e)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return out[i].SQL < out[j].SQL
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// WriteTable writes the n statements with the most total time as a table.
func (s *Statements) WriteTable(w io.Writer, n int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "total s\tcalls\trows\tmean ms\tstatement")
	for _, e := range s.Top(n) {
		fmt.Fprintf(tw, "%.2f\t%d\t%d\t%.1f\t%s\n", e.Total.Seconds(), e.Calls, e.Rows,
			float64(e.Total.Microseconds())/1000/float64(max(e.Calls, 1)), e.SQL)
	}
	return tw.Flush()
}

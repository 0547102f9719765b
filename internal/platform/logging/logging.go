// Package logging builds the one *slog.Logger of a process and bridges it
// into Temporal, franz-go and pgx, so every component logs through the same
// handler and level.
package logging

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/tracelog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	tlog "go.temporal.io/sdk/log"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error") in format ("text" or "json").
func New(w io.Writer, level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: ParseLevel(level)}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ParseLevel maps a level name to slog; unknown names mean info.
func ParseLevel(level string) slog.Level {
	switch strings.ToLower(level) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Temporal adapts l for the Temporal SDK client and worker. The context
// the SDK adds to workflow and activity lines (WorkflowID, RunID,
// ActivityType, Attempt, ...) is renamed to the keys the rest of iot-etl
// logs with (workflow_id, run_id, activity_type, attempt, ...), so one
// query finds a run's lines whoever wrote them.
func Temporal(l *slog.Logger) tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(renameHandler{l.Handler()}))
}

// temporalKeys maps the Temporal SDK's context keys to iot-etl's.
var temporalKeys = map[string]string{
	"Namespace": "namespace", "TaskQueue": "task_queue", "WorkerID": "worker_id",
	"WorkflowType": "workflow_type", "WorkflowID": "workflow_id", "RunID": "run_id",
	"ActivityType": "activity_type", "ActivityID": "activity_id", "Attempt": "attempt",
	"NexusService": "nexus_service", "NexusOperation": "nexus_operation",
}

// renameHandler renames the Temporal SDK's keys on the way to h.
type renameHandler struct{ h slog.Handler }

func renamed(a slog.Attr) slog.Attr {
	if k, ok := temporalKeys[a.Key]; ok {
		a.Key = k
	}
	return a
}

func (r renameHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return r.h.Enabled(ctx, level)
}

func (r renameHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	rec.Attrs(func(a slog.Attr) bool { out.AddAttrs(renamed(a)); return true })
	return r.h.Handle(ctx, out)
}

func (r renameHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = renamed(a)
	}
	return renameHandler{r.h.WithAttrs(out)}
}

func (r renameHandler) WithGroup(name string) slog.Handler { return renameHandler{r.h.WithGroup(name)} }

// Kafka adapts l for franz-go clients.
func Kafka(l *slog.Logger) kgo.Logger { return kslog.New(l) }

// PGTracer logs pgx queries at debug level and errors at error level. Query
// arguments are not logged: they can carry secrets or bulk data.
func PGTracer(l *slog.Logger) *tracelog.TraceLog {
	return &tracelog.TraceLog{
		Logger: tracelog.LoggerFunc(func(ctx context.Context, level tracelog.LogLevel, msg string, data map[string]any) {
			attrs := make([]slog.Attr, 0, len(data))
			for k, v := range data {
				if k == "args" {
					continue
				}
				attrs = append(attrs, slog.Any(k, v))
			}
			lvl := pgLevel(level)
			// A unique violation is how the stream sink's fast path learns
			// that part of a batch is stored already, and it takes the
			// general path: the caller reports what is an error.
			if err, ok := data["err"].(error); ok && lvl == slog.LevelError && isUniqueViolation(err) {
				lvl = slog.LevelDebug
			}
			l.LogAttrs(ctx, lvl, "pgx: "+msg, attrs...)
		}),
		LogLevel: tracelog.LogLevelWarn,
	}
}

func pgLevel(l tracelog.LogLevel) slog.Level {
	switch {
	case l >= tracelog.LogLevelDebug:
		return slog.LevelDebug
	case l == tracelog.LogLevelInfo:
		return slog.LevelInfo
	case l == tracelog.LogLevelWarn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

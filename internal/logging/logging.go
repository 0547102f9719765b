// Package logging builds the one *slog.Logger of a process and bridges it
// into Temporal, franz-go and pgx, so every component logs through the same
// handler and level.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"

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

// Temporal adapts l for the Temporal SDK client and worker.
func Temporal(l *slog.Logger) tlog.Logger { return tlog.NewStructuredLogger(l) }

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
			l.LogAttrs(ctx, pgLevel(level), "pgx: "+msg, attrs...)
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

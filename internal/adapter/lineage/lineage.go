// Package lineage sends OpenLineage run events
// (https://openlineage.io/spec/2-0-2/OpenLineage.json, RunEvent): START,
// COMPLETE, FAIL and ABORT of a job run, with its input and output
// datasets, their schema facets and row counts. Events go over HTTP as
// Marquez accepts them, or are appended to a file as JSON lines. The
// activities send them; workflow code never does.
package lineage

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// Event types.
const (
	Start    = "START"
	Complete = "COMPLETE"
	Fail     = "FAIL"
	Abort    = "ABORT"
)

const (
	producer      = "https://github.com/iot-etl/iot-etl"
	runEventURL   = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
	schemaURL     = "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
	outputStatURL = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
	inputStatURL  = "https://openlineage.io/spec/facets/1-0-2/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet"
	errorURL      = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)

// RunEvent is an OpenLineage RunEvent.
type RunEvent struct {
	EventType string    `json:"eventType"`
	EventTime time.Time `json:"eventTime"`
	Run       Run       `json:"run"`
	Job       Job       `json:"job"`
	Inputs    []Dataset `json:"inputs"`
	Outputs   []Dataset `json:"outputs"`
	Producer  string    `json:"producer"`
	SchemaURL string    `json:"schemaURL"`
}

// Run is the run of a RunEvent: its id is the Temporal workflow run id.
type Run struct {
	RunID  string         `json:"runId"`
	Facets map[string]any `json:"facets,omitempty"`
}

// Job names the job of a RunEvent.
type Job struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

// Dataset is an input or output dataset of a RunEvent.
type Dataset struct {
	Namespace    string         `json:"namespace"`
	Name         string         `json:"name"`
	Facets       map[string]any `json:"facets,omitempty"`
	InputFacets  map[string]any `json:"inputFacets,omitempty"`
	OutputFacets map[string]any `json:"outputFacets,omitempty"`
}

// Field is a column of a dataset's schema facet.
type Field struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// WithSchema sets the dataset's schema facet.
func (d Dataset) WithSchema(fields []Field) Dataset {
	d.Facets = map[string]any{"schema": map[string]any{"_producer": producer, "_schemaURL": schemaURL, "fields": fields}}
	return d
}

// WithRows sets the row count of an input (dataQualityMetrics) or an
// output (outputStatistics).
func (d Dataset) WithRows(input bool, rows int64) Dataset {
	if input {
		d.InputFacets = map[string]any{"dataQualityMetrics": map[string]any{"_producer": producer, "_schemaURL": inputStatURL, "rowCount": rows, "columnMetrics": map[string]any{}}}
	} else {
		d.OutputFacets = map[string]any{"outputStatistics": map[string]any{"_producer": producer, "_schemaURL": outputStatURL, "rowCount": rows}}
	}
	return d
}

// Emitter sends run events where the configuration says. The zero value
// and nil send nothing.
type Emitter struct {
	namespace string
	endpoint  string // http(s) URL to POST to
	file      string // path to append to
	apiKey    string
	client    *http.Client
	log       *slog.Logger
	mu        sync.Mutex // serializes appends to file
}

// New returns the emitter of cfg; an empty URL sends nothing. A URL of
// another scheme is an error.
func New(cfg config.Lineage, log *slog.Logger) (*Emitter, error) {
	if log == nil {
		log = slog.Default()
	}
	e := &Emitter{namespace: cfg.Namespace, apiKey: cfg.APIKey.Reveal(), client: &http.Client{Timeout: 10 * time.Second}, log: log}
	if cfg.URL == "" {
		return e, nil
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("OPENLINEAGE_URL: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Path == "" || u.Path == "/" {
			u.Path = "/api/v1/lineage"
		}
		e.endpoint = u.String()
	case "file":
		if u.Path == "" {
			return nil, fmt.Errorf("OPENLINEAGE_URL %q: no path", cfg.URL)
		}
		e.file = u.Path
	default:
		return nil, fmt.Errorf("OPENLINEAGE_URL %q: want http://, https:// or file://", cfg.URL)
	}
	return e, nil
}

// Enabled reports whether events are sent anywhere.
func (e *Emitter) Enabled() bool { return e != nil && (e.endpoint != "" || e.file != "") }

// Namespace is the jobs' namespace.
func (e *Emitter) Namespace() string { return e.namespace }

// Event returns a run event of job in the emitter's namespace.
func (e *Emitter) Event(eventType, job, runID string, at time.Time, inputs, outputs []Dataset) RunEvent {
	if inputs == nil {
		inputs = []Dataset{}
	}
	if outputs == nil {
		outputs = []Dataset{}
	}
	return RunEvent{EventType: eventType, EventTime: at.UTC(), Run: Run{RunID: runID}, Job: Job{Namespace: e.namespace, Name: job},
		Inputs: inputs, Outputs: outputs, Producer: producer, SchemaURL: runEventURL}
}

// WithError adds the errorMessage run facet.
func WithError(ev RunEvent, msg string) RunEvent {
	if ev.Run.Facets == nil {
		ev.Run.Facets = map[string]any{}
	}
	ev.Run.Facets["errorMessage"] = map[string]any{"_producer": producer, "_schemaURL": errorURL, "message": msg, "programmingLanguage": "Go"}
	return ev
}

// Emit sends ev. Lineage is observability: a failure is logged and
// returned, and callers go on with their work.
func (e *Emitter) Emit(ctx context.Context, ev RunEvent) error {
	if !e.Enabled() {
		return nil
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := e.send(ctx, body); err != nil {
		e.log.Warn("lineage event not sent", "event_type", ev.EventType, "job", ev.Job.Name, "run_id", ev.Run.RunID, "error", err)
		return err
	}
	return nil
}

func (e *Emitter) send(ctx context.Context, body []byte) error {
	if e.file != "" {
		e.mu.Lock()
		defer e.mu.Unlock()
		f, err := os.OpenFile(e.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write(append(body, '\n')); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if e.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+e.apiKey)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", e.endpoint, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// PostgresDataset is table (schema.table: a table, view or materialized
// view) of the database of pool, with its columns read from the catalog as
// its schema facet (none when it does not exist).
func PostgresDataset(ctx context.Context, pool *pgxpool.Pool, table string) (Dataset, error) {
	cfg := pool.Config().ConnConfig
	rows, err := pool.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, table)
	if err != nil {
		return Dataset{}, fmt.Errorf("lineage: columns of %s: %w", table, err)
	}
	defer rows.Close()
	var fields []Field
	for rows.Next() {
		var f Field
		if err := rows.Scan(&f.Name, &f.Type); err != nil {
			return Dataset{}, err
		}
		fields = append(fields, f)
	}
	if err := rows.Err(); err != nil {
		return Dataset{}, fmt.Errorf("lineage: columns of %s: %w", table, err)
	}
	return Dataset{Namespace: fmt.Sprintf("postgres://%s:%d", cfg.Host, cfg.Port), Name: cfg.Database + "." + table}.WithSchema(fields), nil
}

// MySQLDataset is table of the MySQL database db (named database), with
// its columns as its schema facet.
func MySQLDataset(ctx context.Context, db *sql.DB, hostPort, database, table string) (Dataset, error) {
	rows, err := db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position`, table)
	if err != nil {
		return Dataset{}, fmt.Errorf("lineage: columns of %s: %w", table, err)
	}
	defer rows.Close()
	var fields []Field
	for rows.Next() {
		var f Field
		if err := rows.Scan(&f.Name, &f.Type); err != nil {
			return Dataset{}, err
		}
		fields = append(fields, f)
	}
	if err := rows.Err(); err != nil {
		return Dataset{}, fmt.Errorf("lineage: columns of %s: %w", table, err)
	}
	return Dataset{Namespace: "mysql://" + hostPort, Name: database + "." + table}.WithSchema(fields), nil
}

// Package export writes the ML feature set of a batch run to files: Parquet
// always, CSV on request, and a manifest.json with the run's lineage, the
// schema and the sha256 of every file. Files are written to temporary names
// and renamed into place on success, so a reader never sees half a file and
// a rerun replaces the previous output whole.
package export

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/iot-etl/iot-etl/internal/features"
)

// Manifest describes one export.
type Manifest struct {
	Generator     string    `json:"generator"`
	WorkflowID    string    `json:"workflow_id"`
	RunID         string    `json:"run_id"`
	WindowStart   time.Time `json:"window_start"`
	WindowEnd     time.Time `json:"window_end"`
	HoursFrom     time.Time `json:"feature_hours_from"`
	HoursTo       time.Time `json:"feature_hours_to"`
	Label         string    `json:"label"`
	Rows          int64     `json:"rows"`
	PositiveRows  int64     `json:"positive_rows"`
	Schema        []Column  `json:"schema"`
	Files         []File    `json:"files"`
	SourceTable   string    `json:"source_table"`
	FeaturesTable string    `json:"features_table"`
}

// Column is one field of the feature schema.
type Column struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Nullable bool   `json:"nullable"`
}

// File is one written file; Path is relative to the export directory.
type File struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Schema is the feature schema, in column order.
var Schema = []Column{
	{"device_id", "string", false},
	{"hour", "timestamp(ms, UTC)", false},
	{"device_type", "string", false},
	{"zone", "string", false},
	{"hour_of_day", "int", false},
	{"day_of_week", "int (0 = Sunday, UTC)", false},
	{"count", "int", false},
	{"mean", "double", true},
	{"std", "double", true},
	{"min", "double", true},
	{"max", "double", true},
	{"slope", "double (per minute)", true},
	{"anomaly_count", "int", false},
	{"mean_quality", "double", false},
	{"prev_hour_mean", "double", true},
	{"label", "bool (anomaly in the next hour)", false},
}

// Writer streams feature rows into the files of one export directory.
type Writer struct {
	dir      string
	parquetF *os.File
	parquetW *parquet.GenericWriter[features.Row]
	csvF     *os.File
	csvBuf   *bufio.Writer
	csvW     *csv.Writer
	rows     int64
	positive int64
}

const (
	parquetName  = "features.parquet"
	csvName      = "features.csv"
	manifestName = "manifest.json"
)

// NewWriter creates dir and starts the files; withCSV adds features.csv.
func NewWriter(dir string, withCSV bool) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	w := &Writer{dir: dir}
	var err error
	if w.parquetF, err = os.Create(filepath.Join(dir, parquetName+".tmp")); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	w.parquetW = parquet.NewGenericWriter[features.Row](w.parquetF,
		parquet.Compression(&parquet.Zstd),
		parquet.CreatedBy("iot-etl", "1", ""),
		parquet.MaxRowsPerRowGroup(128*1024))
	if withCSV {
		if w.csvF, err = os.Create(filepath.Join(dir, csvName+".tmp")); err != nil {
			w.Abort()
			return nil, fmt.Errorf("export: %w", err)
		}
		w.csvBuf = bufio.NewWriterSize(w.csvF, 1<<16)
		w.csvW = csv.NewWriter(w.csvBuf)
		header := make([]string, len(Schema))
		for i, c := range Schema {
			header[i] = c.Name
		}
		if err := w.csvW.Write(header); err != nil {
			w.Abort()
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	return w, nil
}

// Write appends rows to every file.
func (w *Writer) Write(rows []features.Row) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := w.parquetW.Write(rows); err != nil {
		return fmt.Errorf("export parquet: %w", err)
	}
	for i := range rows {
		if rows[i].Label {
			w.positive++
		}
		if w.csvW != nil {
			if err := w.csvW.Write(csvRecord(&rows[i])); err != nil {
				return fmt.Errorf("export csv: %w", err)
			}
		}
	}
	w.rows += int64(len(rows))
	return nil
}

// Rows and Positive count what was written.
func (w *Writer) Rows() int64     { return w.rows }
func (w *Writer) Positive() int64 { return w.positive }

func csvRecord(r *features.Row) []string {
	f := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'g', -1, 64)
	}
	return []string{
		r.DeviceID, r.Hour.UTC().Format(time.RFC3339), r.DeviceType, r.Zone,
		strconv.Itoa(r.HourOfDay), strconv.Itoa(r.DayOfWeek), strconv.Itoa(r.Count),
		f(r.Mean), f(r.Std), f(r.Min), f(r.Max), f(r.Slope),
		strconv.Itoa(r.AnomalyCount), strconv.FormatFloat(r.MeanQuality, 'g', -1, 64), f(r.PrevHourMean),
		strconv.FormatBool(r.Label),
	}
}

// Commit closes the files, renames them into place and writes the manifest
// (m's Rows, PositiveRows, Schema and Files are filled in). It returns the
// manifest path.
func (w *Writer) Commit(m Manifest) (string, Manifest, error) {
	if err := w.parquetW.Close(); err != nil {
		w.Abort()
		return "", m, fmt.Errorf("export parquet: %w", err)
	}
	files := []struct {
		f      *os.File
		name   string
		format string
	}{{w.parquetF, parquetName, "parquet"}}
	if w.csvW != nil {
		w.csvW.Flush()
		if err := w.csvW.Error(); err != nil {
			w.Abort()
			return "", m, fmt.Errorf("export csv: %w", err)
		}
		if err := w.csvBuf.Flush(); err != nil {
			w.Abort()
			return "", m, fmt.Errorf("export csv: %w", err)
		}
		files = append(files, struct {
			f      *os.File
			name   string
			format string
		}{w.csvF, csvName, "csv"})
	} else {
		// A previous run of the same window may have left a CSV.
		_ = os.Remove(filepath.Join(w.dir, csvName))
	}
	m.Rows, m.PositiveRows, m.Schema, m.Files = w.rows, w.positive, Schema, nil
	for _, f := range files {
		if err := f.f.Sync(); err != nil {
			w.Abort()
			return "", m, err
		}
		if err := f.f.Close(); err != nil {
			w.Abort()
			return "", m, err
		}
		sum, size, err := hashFile(f.f.Name())
		if err != nil {
			w.Abort()
			return "", m, err
		}
		if err := os.Rename(f.f.Name(), filepath.Join(w.dir, f.name)); err != nil {
			w.Abort()
			return "", m, err
		}
		m.Files = append(m.Files, File{Path: f.name, Format: f.format, Rows: w.rows, Bytes: size, SHA256: sum})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", m, err
	}
	path := filepath.Join(w.dir, manifestName)
	if err := writeAtomic(path, append(b, '\n')); err != nil {
		return "", m, err
	}
	return path, m, nil
}

// Abort removes the temporary files.
func (w *Writer) Abort() {
	for _, f := range []*os.File{w.parquetF, w.csvF} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Dir is the export directory of a window under root: one directory per
// window, so a rerun replaces its files and backfills never collide.
func Dir(root string, from, to time.Time) string {
	const layout = "20060102T150405Z"
	return filepath.Join(root, "features", from.UTC().Format(layout)+"_"+to.UTC().Format(layout))
}

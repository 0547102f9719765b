// Package export publishes the ML feature set of a batch run to a Store (a
// local directory or an S3 bucket): Parquet always, CSV on request, and a
// manifest.json with the run's lineage, the schema, and the URL, size and
// sha256 of every file.
//
// Every attempt writes its data files under a directory of its own, and
// the window's manifest.json is written last, in one step, so a reader who
// reads the manifest first never sees a partial set. Publish then deletes
// what neither the new manifest nor the one it replaced references.
package export

import (
	"bufio"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/iot-etl/iot-etl/internal/domain/features"
)

// Manifest describes one export.
type Manifest struct {
	Generator     string    `json:"generator"`
	WorkflowID    string    `json:"workflow_id"`
	RunID         string    `json:"run_id"`
	Attempt       int32     `json:"attempt"`
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

// File is one published data file. Path is relative to the window
// directory (the directory of manifest.json), such as
// "<run_id>/attempt-1/features.parquet"; URL is where it can be read.
type File struct {
	Path   string `json:"path"`
	URL    string `json:"url"`
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

// File names of an export.
const (
	ParquetName  = "features.parquet"
	CSVName      = "features.csv"
	ManifestName = "manifest.json"
)

// WindowName names the window [from, to), such as
// 20261102T000000Z_20261103T000000Z.
func WindowName(from, to time.Time) string {
	const layout = "20060102T150405Z"
	return from.UTC().Format(layout) + "_" + to.UTC().Format(layout)
}

// WindowDir is the key of a window's directory in a Store:
// features/<window>. Its manifest.json names the current files.
func WindowDir(from, to time.Time) string {
	return "features/" + WindowName(from, to)
}

// AttemptDir is the directory of one attempt's data files, relative to the
// window directory: <run_id>/attempt-<n>. Attempts never share a
// directory, so a retry never overwrites what another attempt wrote.
func AttemptDir(runID string, attempt int32) string {
	return runID + "/attempt-" + strconv.Itoa(int(attempt))
}

// hashingFile counts and hashes what is written to a file, so the sha256
// is known when the file is closed without reading it again.
type hashingFile struct {
	f   *os.File
	buf *bufio.Writer
	sum hash.Hash
	n   int64
}

func createHashing(path string) (*hashingFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	h := &hashingFile{f: f, sum: sha256.New()}
	h.buf = bufio.NewWriterSize(io.MultiWriter(f, h.sum), 1<<16)
	return h, nil
}

func (h *hashingFile) Write(p []byte) (int, error) {
	n, err := h.buf.Write(p)
	h.n += int64(n)
	return n, err
}

// close flushes and closes the file; it returns the sha256 and the size.
func (h *hashingFile) close() (string, int64, error) {
	err := h.buf.Flush()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.sum.Sum(nil)), h.n, err
}

// Writer streams feature rows into local temporary files, which Publish
// then uploads. Memory stays bounded whatever the number of rows.
type Writer struct {
	tmp      string
	parquetF *hashingFile
	parquetW *parquet.GenericWriter[features.Row]
	csvF     *hashingFile
	csvW     *csv.Writer
	rows     int64
	positive int64
	closed   bool
	files    []localFile
}

// localFile is a finished temporary file.
type localFile struct {
	path, name, format string
	bytes              int64
	sha256             string
}

// NewWriter starts the files in a new directory under tmpDir (the system's
// temporary directory when empty); withCSV adds features.csv. Close removes
// them.
func NewWriter(tmpDir string, withCSV bool) (*Writer, error) {
	tmp, err := os.MkdirTemp(tmpDir, "iot-etl-export-*")
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	w := &Writer{tmp: tmp}
	if w.parquetF, err = createHashing(filepath.Join(tmp, ParquetName)); err != nil {
		w.Close()
		return nil, fmt.Errorf("export: %w", err)
	}
	w.parquetW = parquet.NewGenericWriter[features.Row](w.parquetF,
		parquet.Compression(&parquet.Zstd),
		parquet.CreatedBy("iot-etl", "1", ""),
		parquet.MaxRowsPerRowGroup(128*1024))
	if withCSV {
		if w.csvF, err = createHashing(filepath.Join(tmp, CSVName)); err != nil {
			w.Close()
			return nil, fmt.Errorf("export: %w", err)
		}
		w.csvW = csv.NewWriter(w.csvF)
		header := make([]string, len(Schema))
		for i, c := range Schema {
			header[i] = c.Name
		}
		if err := w.csvW.Write(header); err != nil {
			w.Close()
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

// Rows counts the rows written.
func (w *Writer) Rows() int64 { return w.rows }

// Positive counts the rows written with a positive label.
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

// finish completes the files (once) and returns them.
func (w *Writer) finish() ([]localFile, error) {
	if w.closed {
		if w.files == nil {
			return nil, errors.New("export: writer is closed")
		}
		return w.files, nil
	}
	w.closed = true
	if err := w.parquetW.Close(); err != nil {
		return nil, fmt.Errorf("export parquet: %w", err)
	}
	sum, n, err := w.parquetF.close()
	if err != nil {
		return nil, fmt.Errorf("export parquet: %w", err)
	}
	files := []localFile{{path: w.parquetF.f.Name(), name: ParquetName, format: "parquet", bytes: n, sha256: sum}}
	if w.csvW != nil {
		w.csvW.Flush()
		if err := w.csvW.Error(); err != nil {
			return nil, fmt.Errorf("export csv: %w", err)
		}
		sum, n, err := w.csvF.close()
		if err != nil {
			return nil, fmt.Errorf("export csv: %w", err)
		}
		files = append(files, localFile{path: w.csvF.f.Name(), name: CSVName, format: "csv", bytes: n, sha256: sum})
	}
	w.files = files
	return files, nil
}

// Close removes the temporary files. It is safe to call more than once.
func (w *Writer) Close() {
	if !w.closed {
		w.closed = true
		for _, h := range []*hashingFile{w.parquetF, w.csvF} {
			if h != nil {
				h.f.Close()
			}
		}
	}
	if w.tmp != "" {
		os.RemoveAll(w.tmp)
		w.tmp = ""
	}
}

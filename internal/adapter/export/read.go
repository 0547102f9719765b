package export

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/iot-etl/iot-etl/internal/domain/features"
)

// ParquetColumns are the columns of a Parquet file with the SQL type each
// holds, as information_schema spells it: "text", "integer", "double
// precision", "boolean", "timestamp with time zone". A reader checks them
// against what it needs before it trusts the rows.
func ParquetColumns(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cols := map[string]string{}
	for _, field := range pf.Schema().Fields() {
		typ := "unknown"
		if field.Leaf() {
			t := field.Type()
			_, isTime := logicalValue(t).(*format.TimestampType)
			switch {
			case isTime:
				typ = "timestamp with time zone"
			case t.Kind() == parquet.ByteArray:
				typ = "text"
			case t.Kind() == parquet.Int32 || t.Kind() == parquet.Int64:
				typ = "integer"
			case t.Kind() == parquet.Double:
				typ = "double precision"
			case t.Kind() == parquet.Boolean:
				typ = "boolean"
			}
		}
		cols[field.Name()] = typ
	}
	return cols, nil
}

func logicalValue(t parquet.Type) format.LogicalTypeValue {
	if lt := t.LogicalType(); lt != nil {
		return lt.Value
	}
	return nil
}

// ReadParquet reads the feature rows of a features.parquet file.
func ReadParquet(path string) ([]features.Row, error) {
	rows, err := parquet.ReadFile[features.Row](path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

// ParquetFile is a feature file to read and the run that wrote it (empty
// when unknown).
type ParquetFile struct {
	Path, RunID string
}

// LocalParquetFiles resolves path to the Parquet files of a local export:
// a .parquet file is itself; a directory is searched for manifest.json
// files, and each gives the Parquet file it publishes (never the files of
// attempts it does not reference). The result is sorted by path.
func LocalParquetFiles(path string) ([]ParquetFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []ParquetFile{{Path: path}}, nil
	}
	var files []ParquetFile
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != ManifestName {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, f := range m.Files {
			if f.Format != "parquet" {
				continue
			}
			u, err := url.Parse(f.URL)
			if err != nil || u.Scheme != "file" {
				return fmt.Errorf("%s: %s is not a local file: copy the export locally first", p, f.URL)
			}
			files = append(files, ParquetFile{Path: u.Path, RunID: m.RunID})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no %s of a feature export under it", path, ManifestName)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

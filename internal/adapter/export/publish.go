package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// Target is where one attempt of an export is published.
type Target struct {
	From, To time.Time // the window
	RunID    string
	Attempt  int32 // the activity attempt, from 1
}

// Published describes what Publish wrote.
type Published struct {
	WindowURL   string
	ManifestURL string
	Manifest    Manifest
	// Deleted are the keys the cleanup removed.
	Deleted []string
	// CleanupErr says why the cleanup stopped or was skipped. The export
	// is published all the same; the next export of the window cleans up.
	CleanupErr error
}

// Publish completes the files and publishes them to st:
//
//  1. the data files go to features/<window>/<run_id>/attempt-<n>/, a
//     directory no other attempt writes to;
//  2. the manifest that features/<window>/manifest.json holds now is read;
//  3. the new manifest.json is written, last and in one step;
//  4. every object under features/<window>/ that neither manifest
//     references is deleted: a reader who fetched the previous manifest a
//     moment ago can still read its files, while failed attempts' leftovers
//     and older generations go.
//
// m's Attempt, Rows, PositiveRows, Schema and Files are filled in. When
// Publish fails before step 3, readers still see the previous manifest and
// its files; a retry (a new attempt) publishes afresh. Exports of one
// window are assumed not to run at the same time (the batch's workflow ids
// see to that), or the cleanup of one may delete the files of the other
// before its manifest names them.
func (w *Writer) Publish(ctx context.Context, st Store, t Target, m Manifest) (Published, error) {
	if t.RunID == "" || strings.ContainsAny(t.RunID, `/\`) || t.RunID == "." || t.RunID == ".." || t.Attempt < 1 {
		return Published{}, fmt.Errorf("export: invalid target run %q attempt %d", t.RunID, t.Attempt)
	}
	files, err := w.finish()
	if err != nil {
		return Published{}, err
	}
	windowDir := WindowDir(t.From, t.To)
	attemptDir := AttemptDir(t.RunID, t.Attempt)
	m.Attempt, m.Rows, m.PositiveRows, m.Schema, m.Files = t.Attempt, w.rows, w.positive, Schema, nil
	for _, f := range files {
		rel := attemptDir + "/" + f.name
		key := windowDir + "/" + rel
		if err := st.PutFile(ctx, key, f.path); err != nil {
			return Published{}, err
		}
		m.Files = append(m.Files, File{Path: rel, URL: st.URL(key), Format: f.format, Rows: w.rows, Bytes: f.bytes, SHA256: f.sha256})
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Published{}, fmt.Errorf("export: %w", err)
	}
	manifestKey := windowDir + "/" + ManifestName
	previous, prevErr := ReadManifest(ctx, st, windowDir)
	var parseErr *manifestParseError
	switch {
	case prevErr == nil, errors.Is(prevErr, ErrNotExist), errors.As(prevErr, &parseErr):
	default:
		return Published{}, prevErr
	}
	if err := st.Put(ctx, manifestKey, append(b, '\n')); err != nil {
		return Published{}, err
	}
	pub := Published{WindowURL: st.URL(windowDir + "/"), ManifestURL: st.URL(manifestKey), Manifest: m}
	if parseErr != nil {
		pub.CleanupErr = fmt.Errorf("nothing deleted: %w", prevErr)
		return pub, nil
	}
	pub.Deleted, pub.CleanupErr = cleanup(ctx, st, windowDir, m, previous)
	return pub, nil
}

// cleanup deletes the objects under windowDir that are neither the
// manifest nor a file of m or previous.
func cleanup(ctx context.Context, st Store, windowDir string, m Manifest, previous Manifest) ([]string, error) {
	keep := map[string]bool{windowDir + "/" + ManifestName: true}
	for _, files := range [][]File{m.Files, previous.Files} {
		for _, f := range files {
			keep[windowDir+"/"+path.Clean(f.Path)] = true
		}
	}
	keys, err := st.List(ctx, windowDir+"/")
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	var deleted []string
	for _, k := range keys {
		if keep[k] {
			continue
		}
		if err := st.Delete(ctx, k); err != nil {
			return deleted, err
		}
		deleted = append(deleted, k)
	}
	return deleted, nil
}

// manifestParseError is a manifest.json that is not a manifest.
type manifestParseError struct {
	key string
	err error
}

func (e *manifestParseError) Error() string {
	return "export: " + e.key + " is not a manifest: " + e.err.Error()
}
func (e *manifestParseError) Unwrap() error { return e.err }

// ReadManifest reads the manifest of the window directory windowDir (see
// WindowDir); ErrNotExist when the window has none.
func ReadManifest(ctx context.Context, st Store, windowDir string) (Manifest, error) {
	key := windowDir + "/" + ManifestName
	b, err := st.Get(ctx, key)
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, &manifestParseError{key: key, err: err}
	}
	return m, nil
}

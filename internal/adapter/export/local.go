package export

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Local is a Store in a directory of the local file system (or of a
// shared mount). Objects are written to a temporary name in their final
// directory and renamed into place, so a reader never sees half an object.
type Local struct {
	root string
}

// NewLocal returns the store rooted at dir, which is created on first
// write.
func NewLocal(dir string) *Local { return &Local{root: filepath.Clean(dir)} }

// Root is the directory of the store.
func (l *Local) Root() string { return l.root }

func (l *Local) path(key string) (string, error) {
	clean := path.Clean("/" + key)
	if clean == "/" || clean[1:] != strings.TrimPrefix(key, "/") {
		return "", fmt.Errorf("export: invalid key %q", key)
	}
	return filepath.Join(l.root, filepath.FromSlash(clean[1:])), nil
}

// PutFile copies the file at src to key.
func (l *Local) PutFile(ctx context.Context, key, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer in.Close()
	return l.write(ctx, key, in)
}

// Put writes data to key.
func (l *Local) Put(ctx context.Context, key string, data []byte) error {
	return l.write(ctx, key, bytes.NewReader(data))
}

// write copies r to a temporary file next to key, syncs it and renames it
// into place.
func (l *Local) write(ctx context.Context, key string, r io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dst, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-"+hex.EncodeToString(b))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("export: write %s: %w", key, err)
	}
	return nil
}

// Get reads key.
func (l *Local) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxGetBytes+1))
	if err == nil && len(b) > maxGetBytes {
		err = fmt.Errorf("larger than %d bytes", maxGetBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("export: read %s: %w", key, err)
	}
	return b, nil
}

// List walks the directory of prefix and returns the keys of the files
// whose key starts with prefix, temporary files included.
func (l *Local) List(ctx context.Context, prefix string) ([]string, error) {
	dir := path.Dir(prefix + "x") // the directory that holds every match
	start := l.root
	if dir != "." {
		p, err := l.path(dir)
		if err != nil {
			return nil, err
		}
		start = p
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("export: list %s: %w", prefix, err)
	}
	return keys, nil
}

// Delete removes key, then the directories it leaves empty (up to the
// root), so attempts' directories do not pile up.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("export: %w", err)
	}
	for dir := filepath.Dir(p); dir != l.root && strings.HasPrefix(dir, l.root+string(filepath.Separator)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty (or gone): stop
			break
		}
	}
	return nil
}

// URL is the file:// URL of key.
func (l *Local) URL(key string) string {
	p := filepath.Join(l.root, filepath.FromSlash(key))
	if strings.HasSuffix(key, "/") {
		p += "/"
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

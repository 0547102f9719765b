package export

import (
	"context"
	"errors"
	"fmt"

	"github.com/iot-etl/iot-etl/internal/platform/config"
)

// Store is where exports are published: a local directory or an S3
// bucket. Keys are slash-separated and relative to the store's root (the
// directory, or the bucket and prefix of EXPORT_URL).
type Store interface {
	// PutFile uploads the local file at path as key.
	PutFile(ctx context.Context, key, path string) error
	// Put writes data as key, replacing any previous object in one step: a
	// reader sees the old object or the new one, never a mix.
	Put(ctx context.Context, key string, data []byte) error
	// Get reads a small object whole; ErrNotExist when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the keys that start with prefix, in any order.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// URL is where readers find key: file:///... or s3://bucket/....
	URL(key string) string
}

// ErrNotExist is returned by Get for a key that has no object.
var ErrNotExist = errors.New("object does not exist")

// maxGetBytes bounds what Get reads: it is meant for manifests.
const maxGetBytes = 64 << 20

// Open returns the Store that EXPORT_URL names, with the EXPORT_S3_* and
// AWS_* settings for s3:// URLs. Nothing is contacted yet: a store that
// cannot be reached fails on first use, with the error of that call.
func Open(e config.Export, aws config.AWS) (Store, error) {
	u, err := config.ParseExportURL(e.URL)
	if err != nil {
		return nil, fmt.Errorf("EXPORT_URL=%q: %w", e.URL, err)
	}
	switch u.Scheme {
	case "file":
		return NewLocal(u.Path), nil
	case "s3":
		region := e.S3Region
		if region == "" {
			region = aws.Region
		}
		if region == "" {
			region = "us-east-1"
		}
		return NewS3(S3Options{
			Bucket: u.Bucket, Prefix: u.Prefix, Endpoint: e.S3Endpoint, Region: region, PathStyle: e.S3PathStyle,
			AccessKeyID: aws.AccessKeyID, SecretAccessKey: aws.SecretAccessKey.Reveal(), SessionToken: aws.SessionToken.Reveal(),
		}), nil
	}
	return nil, fmt.Errorf("EXPORT_URL=%q: unknown scheme %q", e.URL, u.Scheme)
}

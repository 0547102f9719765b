package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Options configure an S3 store.
type S3Options struct {
	Bucket string
	Prefix string // key prefix without leading or trailing slash; may be empty
	// Endpoint is the http(s) URL of an S3-compatible service; empty
	// means AWS.
	Endpoint  string
	Region    string
	PathStyle bool
	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials; with an empty AccessKeyID the AWS SDK's default chain
	// is used (environment, shared config, web identity, instance role).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// HTTPClient replaces the SDK's HTTP client (tests route requests
	// through a proxy with it).
	HTTPClient *http.Client
}

// S3 is a Store in a bucket of AWS S3 or an S3-compatible service. A
// PutObject is atomic: readers see the previous object or the new one.
// Objects are uploaded with a single PutObject, which S3 limits to 5 GiB.
type S3 struct {
	opts   S3Options
	client func() (*s3.Client, error)
}

// NewS3 returns the store; the client is built on first use.
func NewS3(o S3Options) *S3 {
	o.Prefix = strings.Trim(o.Prefix, "/")
	s := &S3{opts: o}
	s.client = sync.OnceValues(func() (*s3.Client, error) { return newS3Client(o) })
	return s
}

func newS3Client(o S3Options) (*s3.Client, error) {
	var cfg aws.Config
	if o.AccessKeyID != "" {
		cfg = aws.Config{
			Region:      o.Region,
			Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, o.SessionToken)),
		}
	} else {
		// Loading reads the environment and the shared config files only;
		// credentials are fetched when a request needs them.
		var err error
		cfg, err = awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(o.Region))
		if err != nil {
			return nil, fmt.Errorf("export: load the AWS configuration: %w", err)
		}
	}
	if o.HTTPClient != nil {
		cfg.HTTPClient = o.HTTPClient
	}
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		so.UsePathStyle = o.PathStyle
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
			// Many S3-compatible services reject the SDK's default
			// (streaming, trailing) checksums; send and check them only
			// where the API requires them.
			so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	}), nil
}

func (s *S3) key(key string) string {
	if s.opts.Prefix == "" {
		return key
	}
	return s.opts.Prefix + "/" + key
}

// PutFile uploads the file at path as key in one PutObject.
func (s *S3) PutFile(ctx context.Context, key, path string) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.opts.Bucket), Key: aws.String(s.key(key)),
		Body: f, ContentLength: aws.Int64(st.Size()), ContentType: aws.String(contentType(key)),
	})
	if err != nil {
		return fmt.Errorf("export: put %s: %w", s.URL(key), err)
	}
	return nil
}

// Put writes data as key.
func (s *S3) Put(ctx context.Context, key string, data []byte) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.opts.Bucket), Key: aws.String(s.key(key)),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String(contentType(key)),
	})
	if err != nil {
		return fmt.Errorf("export: put %s: %w", s.URL(key), err)
	}
	return nil
}

// Get reads key.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(s.key(key))})
	if err != nil {
		var noKey *types.NoSuchKey
		var resp *awshttp.ResponseError
		if errors.As(err, &noKey) || (errors.As(err, &resp) && resp.HTTPStatusCode() == http.StatusNotFound) {
			return nil, ErrNotExist
		}
		return nil, fmt.Errorf("export: get %s: %w", s.URL(key), err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxGetBytes+1))
	if err == nil && len(b) > maxGetBytes {
		err = fmt.Errorf("larger than %d bytes", maxGetBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("export: get %s: %w", s.URL(key), err)
	}
	return b, nil
}

// List returns the keys under prefix.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(s.opts.Bucket), Prefix: aws.String(s.key(prefix))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("export: list %s: %w", s.URL(prefix), err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if s.opts.Prefix != "" {
				k = strings.TrimPrefix(k, s.opts.Prefix+"/")
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Delete removes key.
func (s *S3) Delete(ctx context.Context, key string) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.opts.Bucket), Key: aws.String(s.key(key))}); err != nil {
		return fmt.Errorf("export: delete %s: %w", s.URL(key), err)
	}
	return nil
}

// URL is s3://bucket/prefix/key.
func (s *S3) URL(key string) string { return "s3://" + s.opts.Bucket + "/" + s.key(key) }

func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	case strings.HasSuffix(key, ".csv"):
		return "text/csv"
	}
	return "application/octet-stream"
}

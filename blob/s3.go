package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3 store keeps its objects: any S3-compatible
// service (AWS S3, MinIO, Ceph RGW, versitygw...).
type S3Config struct {
	// Endpoint is host[:port] without a scheme, e.g. "s3.amazonaws.com".
	Endpoint string
	// Bucket must exist; the store never creates or deletes buckets.
	Bucket string
	// Prefix, when set, is put before every key ("lessonflow/"), so that
	// several deployments can share a bucket. It must be a valid key
	// followed by '/'.
	Prefix string
	// Region is the bucket's region ("" lets the client look it up).
	Region string
	// AccessKey and SecretKey sign the requests. When both are empty the
	// credentials come from the environment (AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, or MINIO_ACCESS_KEY and MINIO_SECRET_KEY) or
	// from the instance's IAM role.
	AccessKey string
	SecretKey string
	// Insecure talks plain HTTP, for a gateway on loopback.
	Insecure bool
}

// s3PartSize is the part of a multipart upload. Put streams bodies of
// unknown length, so the client holds one part in memory per upload, and
// S3's 10,000 parts give a 160 GB limit: far above any upload limit here.
const s3PartSize = 16 << 20

// S3 is a Store in an S3 bucket. It holds no state of its own, so any
// number of processes may share a bucket.
//
// Put is one PutObject or one multipart upload, and S3 makes either visible
// only when complete, so readers never see half an object. A process
// killed during a multipart upload leaves the parts invisible but stored:
// give the bucket a lifecycle rule that aborts incomplete multipart uploads
// after a day. Stat and List do not report SHA256 (Put does): S3 would need
// the digest before the body is sent to keep it as metadata.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string
}

// NewS3 connects to cfg's bucket and checks that it exists and that the
// credentials may read it.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3 store: endpoint and bucket are required")
	}
	if cfg.Prefix != "" {
		if !strings.HasSuffix(cfg.Prefix, "/") || ValidKey(strings.TrimSuffix(cfg.Prefix, "/")) != nil {
			return nil, fmt.Errorf("s3 store: prefix %q must be a valid key followed by '/'", cfg.Prefix)
		}
	}
	if (cfg.AccessKey == "") != (cfg.SecretKey == "") {
		return nil, errors.New("s3 store: set both the access key and the secret key, or neither")
	}
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.IAM{},
		})
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region})
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: %w", cfg.Endpoint, err)
	}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3 store: bucket %s at %s: %w", cfg.Bucket, cfg.Endpoint, err)
	}
	if !ok {
		return nil, fmt.Errorf("s3 store: bucket %s does not exist at %s", cfg.Bucket, cfg.Endpoint)
	}
	return &S3{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

func (s *S3) name(key string) string { return s.prefix + key }

// s3NotFound maps S3's missing-object answers to ErrNotFound.
func s3NotFound(key string, err error) error {
	resp := minio.ToErrorResponse(err)
	if resp.Code == minio.NoSuchKey || resp.StatusCode == http.StatusNotFound && resp.Code != minio.NoSuchBucket {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return err
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	h := sha256.New()
	up, err := s.client.PutObject(ctx, s.bucket, s.name(key), io.TeeReader(r, h), -1,
		minio.PutObjectOptions{ContentType: "application/octet-stream", PartSize: s3PartSize})
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	return Info{Key: key, Size: up.Size, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Get implements Store. The reader also implements io.Seeker and
// io.ReaderAt with ranged requests, so http.ServeContent can answer Range
// requests without reading the whole object.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.name(key), minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat() // the first request: a missing key fails here, not on Read
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		return nil, fmt.Errorf("get %s: %w", key, s3NotFound(key, err))
	}
	return obj, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.name(key), minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, s3NotFound(key, err))
	}
	return Info{Key: key, Size: oi.Size}, nil
}

// Delete implements Store. S3 answers a missing key with success too.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, s.name(key), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// DeletePrefix implements Store with batched DeleteObjects requests.
func (s *S3) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: delete prefix: empty prefix", ErrInvalidKey)
	}
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	var listErr error
	objs := func(yield func(minio.ObjectInfo) bool) {
		for oi := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.name(prefix), Recursive: true}) {
			if oi.Err != nil {
				listErr = oi.Err
				return
			}
			if !yield(oi) {
				return
			}
		}
	}
	results, err := s.client.RemoveObjectsWithIter(ctx, s.bucket, objs, minio.RemoveObjectsOptions{})
	if err != nil {
		return fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	var first error
	for re := range results {
		if re.Err != nil && first == nil {
			first = fmt.Errorf("delete %s: %w", strings.TrimPrefix(re.ObjectName, s.prefix), re.Err)
		}
	}
	switch {
	case first != nil:
	case listErr != nil:
		first = fmt.Errorf("delete prefix %q: list: %w", prefix, listErr)
	case ctx.Err() != nil:
		first = fmt.Errorf("delete prefix %q: %w", prefix, ctx.Err())
	}
	return first
}

// List implements Store. Objects under the store's prefix whose names are
// not valid keys (written by something else) are left out.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := ValidPrefix(prefix); err != nil {
		return nil, err
	}
	var out []Info
	for oi := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.name(prefix), Recursive: true}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, oi.Err)
		}
		key := strings.TrimPrefix(oi.Key, s.prefix)
		if ValidKey(key) != nil {
			continue
		}
		out = append(out, Info{Key: key, Size: oi.Size})
	}
	// S3 lists in UTF-8 byte order already; compatible services may not.
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

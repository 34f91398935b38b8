package blob_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/blob/blobtest"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

func newS3(t *testing.T, svc *testenv.S3Service, bucket, prefix string) *blob.S3 {
	t.Helper()
	s, err := blob.NewS3(context.Background(), blob.S3Config{
		Endpoint: svc.Endpoint, Bucket: bucket, Prefix: prefix,
		AccessKey: svc.AccessKey, SecretKey: svc.SecretKey, Insecure: svc.Insecure,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestS3Contract runs the blob contract against a real S3 service (see
// testenv.S3): once at the bucket's root, once under a key prefix.
func TestS3Contract(t *testing.T) {
	svc := testenv.S3(t)
	t.Run("root", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store { return newS3(t, svc, svc.Bucket(t), "") })
	})
	t.Run("prefix", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store { return newS3(t, svc, svc.Bucket(t), "deploy-a/") })
	})
}

// Two stores under different prefixes of one bucket never see each other's
// objects.
func TestS3PrefixesShareABucket(t *testing.T) {
	svc := testenv.S3(t)
	bucket := svc.Bucket(t)
	a, b := newS3(t, svc, bucket, "a/"), newS3(t, svc, bucket, "ab/")
	ctx := context.Background()
	for _, s := range []*blob.S3{a, b} {
		if _, err := blob.PutBytes(ctx, s, "x/1", []byte("one")); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DeletePrefix(ctx, "x/"); err != nil {
		t.Fatal(err)
	}
	if l, err := a.List(ctx, ""); err != nil || len(l) != 0 {
		t.Fatalf("a after DeletePrefix: %v, %v", l, err)
	}
	l, err := b.List(ctx, "")
	if err != nil || len(l) != 1 || l[0].Key != "x/1" {
		t.Fatalf("b = %v, %v; want x/1 untouched", l, err)
	}
}

func TestNewS3Rejects(t *testing.T) {
	svc := testenv.S3(t)
	ctx := context.Background()
	for name, cfg := range map[string]blob.S3Config{
		"no bucket":       {Endpoint: svc.Endpoint},
		"missing bucket":  {Endpoint: svc.Endpoint, Bucket: "lessonflow-no-such-bucket"},
		"prefix no slash": {Endpoint: svc.Endpoint, Bucket: svc.Bucket(t), Prefix: "a"},
		"prefix escapes":  {Endpoint: svc.Endpoint, Bucket: svc.Bucket(t), Prefix: "../"},
		"half creds":      {Endpoint: svc.Endpoint, Bucket: svc.Bucket(t), AccessKey: "x"},
		"wrong secret":    {Endpoint: svc.Endpoint, Bucket: svc.Bucket(t), AccessKey: svc.AccessKey, SecretKey: "wrong-secret"},
	} {
		if name != "half creds" && cfg.AccessKey == "" {
			cfg.AccessKey, cfg.SecretKey = svc.AccessKey, svc.SecretKey
		}
		cfg.Insecure = svc.Insecure
		if _, err := blob.NewS3(ctx, cfg); err == nil {
			t.Errorf("%s: NewS3 accepted %+v", name, cfg)
		}
	}
}

// Bodies over one part go up as multipart uploads; a failure in the middle
// of one leaves the previous object.
func TestS3Multipart(t *testing.T) {
	svc := testenv.S3(t)
	s := newS3(t, svc, svc.Bucket(t), "")
	ctx := context.Background()
	big := bytes.Repeat([]byte("0123456789abcdef"), 40<<20/16+5)
	info, err := s.Put(ctx, "r/v1.mp4", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(big)) {
		t.Fatalf("size %d, want %d", info.Size, len(big))
	}
	_, err = s.Put(ctx, "r/v1.mp4", io.MultiReader(bytes.NewReader(big[:20<<20]), errReader{}))
	if err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("failed multipart Put = %v, want the reader's error", err)
	}
	got, err := blob.GetBytes(ctx, s, "r/v1.mp4", 64<<20)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("after a failed overwrite: %d bytes, %v; want the first object", len(got), err)
	}
}

// What S3's Get returns seeks with ranged requests, so the rendition
// endpoint can answer Range requests from it.
func TestS3GetSeeks(t *testing.T) {
	svc := testenv.S3(t)
	s := newS3(t, svc, svc.Bucket(t), "")
	ctx := context.Background()
	body := bytes.Repeat([]byte("lesson-"), 100_000)
	if _, err := blob.PutBytes(ctx, s, "rend/v.mp4", body); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "rend/v.mp4")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rs, ok := rc.(io.ReadSeeker)
	if !ok {
		t.Fatalf("Get returned %T, not an io.ReadSeeker", rc)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Range", "bytes=300000-300013")
	http.ServeContent(rec, req, "", time.Time{}, rs)
	if rec.Code != http.StatusPartialContent || rec.Body.String() != string(body[300000:300014]) {
		t.Fatalf("range: %d %q", rec.Code, rec.Body.String())
	}
	if cr := rec.Header().Get("Content-Range"); cr != "bytes 300000-300013/700000" {
		t.Fatalf("Content-Range %q", cr)
	}
}

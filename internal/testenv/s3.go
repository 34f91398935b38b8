package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Service is an S3-compatible endpoint that tests may create buckets in.
type S3Service struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Insecure  bool // plain HTTP
	client    *minio.Client
}

// S3 is the S3 service of this test: the one LESSONFLOW_TEST_S3_ENDPOINT
// names (with LESSONFLOW_TEST_S3_ACCESS_KEY, LESSONFLOW_TEST_S3_SECRET_KEY,
// and LESSONFLOW_TEST_S3_INSECURE=1 for plain HTTP), else the versitygw
// gateway that setup installs, started on loopback over a temporary
// directory and stopped when the test ends.
func S3(t testing.TB) *S3Service {
	t.Helper()
	s := &S3Service{
		Endpoint:  os.Getenv("LESSONFLOW_TEST_S3_ENDPOINT"),
		AccessKey: os.Getenv("LESSONFLOW_TEST_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("LESSONFLOW_TEST_S3_SECRET_KEY"),
		Insecure:  os.Getenv("LESSONFLOW_TEST_S3_INSECURE") == "1",
	}
	if s.Endpoint == "" {
		s = startVersityGW(t)
	}
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Secure: !s.Insecure})
	if err != nil {
		t.Fatal(err)
	}
	s.client = c
	return s
}

// Bucket creates an empty bucket with a fresh name and removes it, with
// whatever it holds, when the test ends.
func (s *S3Service) Bucket(t testing.TB) string {
	t.Helper()
	name := freshName("lessonflow-test-")
	ctx := context.Background()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s at %s: %v", name, s.Endpoint, err)
	}
	t.Cleanup(func() {
		for oi := range s.client.ListObjectsIter(ctx, name, minio.ListObjectsOptions{Recursive: true}) {
			if oi.Err == nil {
				_ = s.client.RemoveObject(ctx, name, oi.Key, minio.RemoveObjectOptions{})
			}
		}
		_ = s.client.RemoveBucket(ctx, name)
	})
	return name
}

// startVersityGW runs versitygw's posix backend on a free loopback port.
func startVersityGW(t testing.TB) *S3Service {
	t.Helper()
	bin := mustExist(t, filepath.Join(ToolsDir(), "bin", "versitygw"))
	root := t.TempDir()
	s := &S3Service{AccessKey: "lessonflowtest", SecretKey: "lessonflowtestsecret", Insecure: true}
	for attempt := 0; ; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.Endpoint = l.Addr().String()
		l.Close()
		var log strings.Builder
		cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Endpoint, "--quiet", "posix", root)
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start versitygw: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if err := waitListening(s.Endpoint, exited); err == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return s
		} else if attempt == 2 {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("versitygw on %s: %v\n%s", s.Endpoint, err, log.String())
		}
		_ = cmd.Process.Kill() // the port was taken meanwhile, most likely: another one
		<-exited
	}
}

func waitListening(addr string, exited <-chan error) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not listening after 15 s")
}

// freshName is prefix and 12 random hex digits: a bucket or database no
// other test uses.
func freshName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

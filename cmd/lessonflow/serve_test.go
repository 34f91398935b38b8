package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

// The configuration picks the blob store: files by default, S3 when a
// bucket is named, and a bucket that cannot be reached stops the start.
func TestOpenBlobs(t *testing.T) {
	cfg := config.Config{DataDir: t.TempDir()}
	if st, err := openBlobs(cfg); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*blob.FS); !ok {
		t.Fatalf("default store %T, want *blob.FS", st)
	}
	svc := testenv.S3(t)
	cfg.Blob.S3 = blob.S3Config{Endpoint: svc.Endpoint, Bucket: svc.Bucket(t), AccessKey: svc.AccessKey, SecretKey: svc.SecretKey, Insecure: svc.Insecure}
	if st, err := openBlobs(cfg); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*blob.S3); !ok {
		t.Fatalf("store %T, want *blob.S3", st)
	}
	cfg.Blob.S3.Bucket = "lessonflow-missing"
	if _, err := openBlobs(cfg); err == nil || !strings.Contains(err.Error(), "LESSONFLOW_S3_") || strings.Contains(err.Error(), svc.SecretKey) {
		t.Fatalf("missing bucket: %v", err)
	}
}

// The configuration picks the catalog: SQLite in the data directory by
// default, Postgres when a DSN is set; a database that cannot be reached
// stops the start without printing the password.
func TestOpenCatalog(t *testing.T) {
	cfg := config.Config{DataDir: t.TempDir()}
	cat, err := openCatalog(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cat.Close()
	if _, ok := cat.(*catalog.SQLite); !ok {
		t.Fatalf("default catalog %T, want *catalog.SQLite", cat)
	}
	cfg.PostgresDSN = testenv.Postgres(t).Database(t)
	if cat, err = openCatalog(cfg); err != nil {
		t.Fatal(err)
	}
	cat.Close()
	if _, ok := cat.(*catalog.Postgres); !ok {
		t.Fatalf("catalog %T, want *catalog.Postgres", cat)
	}
	cfg.PostgresDSN = "postgres://lessonflow:hunter2-secret@127.0.0.1:1/nowhere?connect_timeout=2"
	if _, err := openCatalog(cfg); err == nil || !strings.Contains(err.Error(), "LESSONFLOW_POSTGRES_DSN") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unreachable database: %v", err)
	}
}

// A worker's source cache is its own directory; those of processes that are
// gone are removed, those of live ones kept.
func TestOpenSourceCache(t *testing.T) {
	cfg := config.Config{DataDir: t.TempDir(), SourceCacheBytes: 1 << 20}
	gone := cfg.Path("cache", "blobs-4194305") // above Linux's largest pid
	alive := cfg.Path("cache", "blobs-"+strconv.Itoa(os.Getppid()))
	for _, d := range []string{gone, alive} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := openSourceCache(cfg, blob.Store(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("a gone process's cache is still there: %v", err)
	}
	for _, d := range []string{alive, cfg.Path("cache", "blobs-"+strconv.Itoa(os.Getpid()))} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	cfg.SourceCacheBytes = 0
	if _, err := openSourceCache(cfg, blob.Store(nil)); err == nil || !strings.Contains(err.Error(), "LESSONFLOW_SOURCE_CACHE_BYTES") {
		t.Fatalf("zero budget: %v", err)
	}
}

// TestWorkerMetrics: with API keys configured the worker's /metrics wants a
// metrics or admin key, as the API's does; without, it is open.
func TestWorkerMetrics(t *testing.T) {
	const metricsKey, appKey = "metrics-key-0123456789", "app-key-0123456789ab"
	get := func(h http.Handler, key string) int {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	h, err := workerMetrics(config.Config{APIKeys: metricsKey + "=metrics," + appKey + "=app", MetricsAddr: "0.0.0.0:9464"})
	if err != nil {
		t.Fatal(err)
	}
	if a, b, c := get(h, ""), get(h, appKey), get(h, metricsKey); a != http.StatusUnauthorized || b != http.StatusForbidden || c != http.StatusOK {
		t.Fatalf("with keys: no key %d, app key %d, metrics key %d; want 401, 403, 200", a, b, c)
	}
	open, err := workerMetrics(config.Config{MetricsAddr: "127.0.0.1:9464"})
	if err != nil || get(open, "") != http.StatusOK {
		t.Fatalf("without keys: %v", err)
	}
	if _, err := workerMetrics(config.Config{APIKeys: "short=metrics"}); err == nil {
		t.Fatal("a bad LESSONFLOW_API_KEYS was accepted")
	}
}

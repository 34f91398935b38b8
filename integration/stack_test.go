package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/api"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/devserver"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/models"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/webhook"
	"github.com/lessonflow/lessonflow/worker"
	"github.com/lessonflow/lessonflow/workflows"
)

const (
	appKey      = "app-key-0123456789abcdef"
	reviewerKey = "reviewer-key-0123456789abcdef"
	adminKey    = "admin-key-0123456789abcdef"
)

// maxStacks is how many namespaces the dev server makes: one per stack, since
// the same clip in two stacks has the same workflow id.
const maxStacks = 32

var (
	stackCount atomic.Int32

	sharedTemporal   shared[*devserver.Server]
	sharedClassifier shared[*models.Classifier]
	sharedEmbedder   shared[*models.Embedder]
)

// shared is one value made for the whole test binary: starting a server or
// making ONNX sessions once, not per test.
type shared[T any] struct {
	once sync.Once
	v    T
	err  error
}

// get makes the value on first use; a failure fails every test that asks.
func (s *shared[T]) get(t testing.TB, create func() (T, error)) T {
	t.Helper()
	s.once.Do(func() { s.v, s.err = create() })
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.v
}

func TestMain(m *testing.M) {
	code := m.Run()
	if srv := sharedTemporal.v; srv != nil {
		srv.Stop()
	}
	os.Exit(code)
}

// temporal starts one headless dev server for the whole test binary.
func temporal(t testing.TB) *devserver.Server {
	t.Helper()
	return sharedTemporal.get(t, func() (*devserver.Server, error) {
		logf, _ := os.Create(filepath.Join(os.TempDir(), "lessonflow-integration-temporal.log"))
		var extra []string
		for i := range maxStacks {
			extra = append(extra, fmt.Sprintf("it-%d", i))
		}
		return devserver.Start(context.Background(), devserver.Options{
			CLI: testenv.TemporalCLI(t), Log: logf, ExtraNamespaces: extra})
	})
}

// loadModel makes the sessions of a model from the repo's models dir, with
// the settings every in-process worker uses.
func loadModel[T any](t testing.TB, name string, newModel func(models.Manifest, string, models.Options) (T, error)) (T, error) {
	m, err := models.LoadManifest(name)
	if err != nil {
		var zero T
		return zero, err
	}
	return newModel(m, testenv.ModelsDir(t), models.Options{IntraOpThreads: 1, BatchSize: 8})
}

// classifier is shared by every in-process worker: sessions are made once.
func classifier(t testing.TB) *models.Classifier {
	t.Helper()
	return sharedClassifier.get(t, func() (*models.Classifier, error) {
		if err := models.Init(testenv.ORTLib(t)); err != nil {
			return nil, err
		}
		return loadModel(t, "nsfw_mobilenet_v2_224", models.NewClassifier)
	})
}

// embedder is shared like the classifier.
func embedder(t testing.TB) *models.Embedder {
	t.Helper()
	classifier(t) // initialises ONNX Runtime
	return sharedEmbedder.get(t, func() (*models.Embedder, error) {
		return loadModel(t, "mobilenet_v1_1.0_224_embed", models.NewEmbedder)
	})
}

// stack is one LessonFlow deployment: its own data dir and task queue, a real
// API server and (unless external) an in-process worker.
type stack struct {
	t         *testing.T
	namespace string
	server    *devserver.Server
	dataDir   string
	taskQueue string
	catalog   catalog.Backend
	blobs     blob.Store
	vectors   *vectorstore.SQLiteVec
	temporal  client.Client
	api       *httptest.Server
	// workerEnv points worker processes at the stack's Postgres and S3
	// (startWorkerProcess), "KEY=value" each.
	workerEnv []string
	// sourceCache is the in-process worker's copies of uploads (S3 only).
	sourceCache *blob.Cache
}

type stackOptions struct {
	policy         string
	maxUploadBytes int64
	limits         media.Limits
	noWorker       bool // workers run as separate processes
	// review and webhook set the worker's review rules and webhook sender;
	// extraKeys adds API keys (more reviewers); names makes some keys
	// name an account (token -> name).
	review    activities.ReviewSettings
	webhook   *webhook.Sender
	extraKeys map[string]string
	names     map[string]string
	// server and namespace replace the shared dev server (tests that kill it).
	server    *devserver.Server
	namespace string
	// s3 keeps the objects in a bucket of testenv.S3 instead of files;
	// postgres keeps the catalog in a database of testenv.Postgres.
	s3, postgres bool
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	srv := o.server
	if srv == nil {
		srv = temporal(t)
	}
	if o.policy == "" {
		o.policy = "default"
	}
	if o.maxUploadBytes == 0 {
		o.maxUploadBytes = 4 << 30
	}
	if o.limits == (media.Limits{}) {
		o.limits = media.DefaultLimits
	}
	n := int(stackCount.Add(1)) - 1
	if n >= maxStacks {
		t.Fatalf("more than %d stacks: raise maxStacks", maxStacks)
	}
	s := &stack{t: t, namespace: fmt.Sprintf("it-%d", n), dataDir: t.TempDir(), taskQueue: "lessonflow", server: srv}
	if o.namespace != "" {
		s.namespace = o.namespace
	}
	var err error
	if o.postgres {
		dsn := testenv.Postgres(t).Database(t)
		s.catalog, err = catalog.OpenPostgres(context.Background(), dsn)
		s.workerEnv = append(s.workerEnv, "LESSONFLOW_POSTGRES_DSN="+dsn)
	} else {
		s.catalog, err = catalog.OpenSQLite(filepath.Join(s.dataDir, "catalog.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.catalog.Close() })
	if o.s3 {
		svc := testenv.S3(t)
		cfg := blob.S3Config{Endpoint: svc.Endpoint, Bucket: svc.Bucket(t), Prefix: "it/",
			AccessKey: svc.AccessKey, SecretKey: svc.SecretKey, Insecure: svc.Insecure}
		s.blobs, err = blob.NewS3(context.Background(), cfg)
		s.workerEnv = append(s.workerEnv, "LESSONFLOW_S3_ENDPOINT="+cfg.Endpoint, "LESSONFLOW_S3_BUCKET="+cfg.Bucket,
			"LESSONFLOW_S3_PREFIX="+cfg.Prefix, "LESSONFLOW_S3_ACCESS_KEY="+cfg.AccessKey, "LESSONFLOW_S3_SECRET_KEY="+cfg.SecretKey,
			"LESSONFLOW_S3_INSECURE="+strconv.FormatBool(cfg.Insecure))
	} else {
		s.blobs, err = blob.NewFS(filepath.Join(s.dataDir, "blobs"))
	}
	if err != nil {
		t.Fatal(err)
	}
	e := embedder(t)
	if s.vectors, err = vectorstore.OpenSQLiteVec(filepath.Join(s.dataDir, "vectors"), vectorstore.CollectionName(e.ModelID(), e.Dim()), e.Dim()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.vectors.Close() })
	s.temporal, err = client.Dial(client.Options{HostPort: srv.Address, Namespace: s.namespace, Logger: tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.temporal.Close)
	if !o.noWorker {
		policy, err := moderation.LoadPolicy(o.policy)
		if err != nil {
			t.Fatal(err)
		}
		acts := &activities.Activities{Catalog: s.catalog, Blobs: s.blobs, Classifier: classifier(t),
			Policy: policy, Limits: o.limits, TempDir: t.TempDir()}
		acts.Embedder, acts.Vectors = embedder(t), s.vectors
		acts.Review, acts.Webhook = o.review, o.webhook
		acts.WatermarkKeys, acts.Encode = itWatermarkKeys(t), itEncode // integration/watermark_test.go
		if o.s3 {
			if s.sourceCache, err = blob.NewCache(s.blobs, filepath.Join(t.TempDir(), "cache"), 1<<30); err != nil {
				t.Fatal(err)
			}
			acts.SourceCache = s.sourceCache
		}
		w := sdkworker.New(s.temporal, s.taskQueue, sdkworker.Options{MaxConcurrentActivityExecutionSize: 2})
		worker.Register(w, acts)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
	a := &api.Server{Catalog: s.catalog, Blobs: s.blobs, Temporal: s.temporal, TaskQueue: s.taskQueue,
		WorkflowName: worker.WorkflowName, MaxUploadBytes: o.maxUploadBytes,
		Keys:   map[string]string{appKey: api.RoleApp, reviewerKey: api.RoleReviewer, adminKey: api.RoleAdmin},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a.Events, a.Recs = s.catalog, &recommend.Engine{Vectors: s.vectors, Catalog: s.catalog}
	a.WatermarkKeys = itWatermarkKeys(t)
	for k, role := range o.extraKeys {
		a.Keys[k] = role
	}
	a.Names = o.names
	s.api = httptest.NewServer(a.Handler())
	t.Cleanup(s.api.Close)
	return s
}

// form is an upload form: fields plus an optional file.
type form struct {
	fields   map[string]string
	filename string
	file     io.Reader // nil: no file part
}

func lessonForm(path string) form {
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	return form{
		fields:   map[string]string{"title": filepath.Base(path), "level": "2", "language": "en", "tags": "test,clip", "teacher_id": "t-1"},
		filename: filepath.Base(path), file: f,
	}
}

// upload posts a form and returns the status and the decoded JSON body.
func (s *stack) upload(key string, f form) (int, map[string]any) {
	s.t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for k, v := range f.fields {
			_ = mw.WriteField(k, v)
		}
		if f.file != nil {
			part, err := mw.CreateFormFile("file", f.filename)
			if err == nil {
				_, err = io.Copy(part, f.file)
			}
			if c, ok := f.file.(io.Closer); ok {
				c.Close()
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", s.api.URL+"/v1/videos", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return s.do(key, req)
}

func (s *stack) get(key, path string) (int, map[string]any) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.api.URL+path, nil)
	return s.do(key, req)
}

func (s *stack) do(key string, req *http.Request) (int, map[string]any) {
	s.t.Helper()
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &out) != nil {
		out = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, out
}

// waitState polls the API until the video leaves `processing`, and
// `approved` too: an approved video goes on to be watermarked, indexed and
// published.
func (s *stack) waitState(id string, timeout time.Duration) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, v := s.get(adminKey, "/v1/videos/"+id)
		if code != http.StatusOK {
			s.t.Fatalf("GET video %s: %d %v", id, code, v)
		}
		if v["state"] != "processing" && v["state"] != "approved" {
			return v
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("video %s still processing after %s: stages %v; workflow: %s", id, timeout, v["stages"], s.describePipeline(id))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// describePipeline sums up a video's pipeline run as the server sees it
// (pending activities and workflow task), for a test that timed out.
func (s *stack) describePipeline(id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := s.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
	if err != nil {
		return "describe: " + err.Error()
	}
	out := fmt.Sprintf("run %s status %s history length %d", d.WorkflowExecutionInfo.GetExecution().GetRunId(), d.WorkflowExecutionInfo.GetStatus(), d.WorkflowExecutionInfo.GetHistoryLength())
	if wt := d.GetPendingWorkflowTask(); wt != nil {
		out += fmt.Sprintf("; pending workflow task %s, attempt %d", wt.GetState(), wt.GetAttempt())
	}
	for _, a := range d.GetPendingActivities() {
		out += fmt.Sprintf("; pending activity %s %s attempt %d worker %q last failure %q", a.GetActivityType().GetName(), a.GetState(), a.GetAttempt(), a.GetLastWorkerIdentity(), a.GetLastFailure().GetMessage())
	}
	return out
}

// blobKeys lists stored keys under a prefix.
func (s *stack) blobKeys(prefix string) []string {
	s.t.Helper()
	infos, err := s.blobs.List(context.Background(), prefix)
	if err != nil {
		s.t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	tlog "go.temporal.io/sdk/log"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/api"
	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/devserver"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/models"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/worker"
)

// stores are the backends: embedded defaults opened from the data
// directory, or the services the configuration names.
type stores struct {
	catalog catalog.Backend
	blobs   blob.Store
	vectors vectorstore.Store // the configured embedding model's collection
}

func openStores(cfg config.Config) (*stores, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	cat, err := openCatalog(cfg)
	if err != nil {
		return nil, err
	}
	blobs, err := openBlobs(cfg)
	if err != nil {
		cat.Close()
		return nil, err
	}
	vectors, err := openVectors(context.Background(), cfg)
	if err != nil {
		cat.Close()
		return nil, err
	}
	return &stores{catalog: cat, blobs: blobs, vectors: vectors}, nil
}

// openCatalog opens the Postgres database when one is configured, else the
// SQLite file in the data directory.
func openCatalog(cfg config.Config) (catalog.Backend, error) {
	if cfg.PostgresDSN == "" {
		return catalog.OpenSQLite(cfg.Path("catalog.db"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cat, err := catalog.OpenPostgres(ctx, cfg.PostgresDSN)
	if err != nil {
		return nil, fmt.Errorf("LESSONFLOW_POSTGRES_DSN: %w", err)
	}
	if cfg.PostgresMaxConns > 0 {
		cat.SetMaxConns(cfg.PostgresMaxConns)
	}
	slog.Info("catalog in Postgres")
	return cat, nil
}

// openBlobs opens the S3 bucket when one is configured, else files under
// the data directory.
func openBlobs(cfg config.Config) (blob.Store, error) {
	s3 := cfg.Blob.S3
	if s3.Bucket == "" {
		return blob.NewFS(cfg.Path("blobs"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := blob.NewS3(ctx, s3)
	if err != nil {
		return nil, fmt.Errorf("LESSONFLOW_S3_*: %w", err)
	}
	slog.Info("objects in S3", "endpoint", s3.Endpoint, "bucket", s3.Bucket, "prefix", s3.Prefix)
	return st, nil
}

func (s *stores) Close() {
	s.vectors.Close()
	s.catalog.Close()
}

// dialTemporal dials the Temporal frontend cfg names, with the security
// settings of temporalClientOptions.
func dialTemporal(ctx context.Context, cfg config.Config) (client.Client, error) {
	opts, err := temporalClientOptions(cfg)
	if err != nil {
		return nil, err
	}
	return dialTemporalOptions(ctx, opts)
}

// temporalClientOptions are the client options for a Temporal cluster: the
// address and namespace from cfg, and TLS (mTLS), an API key and gRPC
// metadata from the variables Temporal's own CLI and SDKs read
// (TEMPORAL_TLS*, TEMPORAL_API_KEY, TEMPORAL_GRPC_META_*), through the SDK's
// envconfig. A temporal.toml profile is read only when TEMPORAL_CONFIG_FILE
// or TEMPORAL_PROFILE asks for one, so a developer's personal profile never
// reaches `make run`.
func temporalClientOptions(cfg config.Config) (client.Options, error) {
	_, file := os.LookupEnv("TEMPORAL_CONFIG_FILE")
	_, profile := os.LookupEnv("TEMPORAL_PROFILE")
	opts, err := envconfig.LoadClientOptions(envconfig.LoadClientOptionsRequest{DisableFile: !file && !profile})
	if err != nil {
		return client.Options{}, fmt.Errorf("Temporal client settings (TEMPORAL_TLS*, TEMPORAL_API_KEY, temporal.toml): %w", err)
	}
	switch {
	case cfg.TemporalAddress != "":
		opts.HostPort = cfg.TemporalAddress
	case opts.HostPort == "": // nor a profile: a dev server on this machine
		opts.HostPort = localTemporal
	}
	if _, set := os.LookupEnv("TEMPORAL_NAMESPACE"); set || opts.Namespace == "" {
		opts.Namespace = cfg.TemporalNamespace
	}
	return opts, nil
}

// localTemporal is where `lessonflow api`, `worker` and `reembed` look for
// Temporal when nothing names a frontend: `make run`'s dev server.
const localTemporal = "127.0.0.1:7233"

func dialTemporalOptions(ctx context.Context, opts client.Options) (client.Client, error) {
	opts.Logger = tlog.NewStructuredLogger(slog.Default())
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s: %w", opts.HostPort, err)
	}
	return c, nil
}

// connect opens the stores and dials Temporal (a local dev server unless
// TEMPORAL_ADDRESS says otherwise) for the api and worker commands.
func connect(ctx context.Context, cfg config.Config) (*stores, client.Client, error) {
	st, err := openStores(cfg)
	if err != nil {
		return nil, nil, err
	}
	c, err := dialTemporal(ctx, cfg)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, c, nil
}

// newActivities loads ONNX Runtime, the model and the policy once per worker.
func newActivities(cfg config.Config, st *stores) (*activities.Activities, func(), error) {
	policy, err := moderation.LoadPolicy(cfg.Policy)
	if err != nil {
		return nil, nil, err
	}
	if err := models.Init(cfg.ORTLib()); err != nil {
		return nil, nil, fmt.Errorf("%w (run `make setup`)", err)
	}
	m, err := models.LoadManifest(policy.Model)
	if err != nil {
		return nil, nil, err
	}
	clf, err := models.NewClassifier(m, cfg.ModelsDir(), models.Options{IntraOpThreads: cfg.ORTThreads, BatchSize: cfg.ClassifyBatch})
	if err != nil {
		return nil, nil, fmt.Errorf("%w (run `make setup`)", err)
	}
	if err := policy.CheckLabels(clf.Labels()); err != nil {
		clf.Close()
		return nil, nil, err
	}
	em, err := models.LoadManifest(cfg.EmbedModel)
	if err != nil {
		clf.Close()
		return nil, nil, fmt.Errorf("LESSONFLOW_EMBED_MODEL: %w", err)
	}
	emb, err := models.NewEmbedder(em, cfg.ModelsDir(), models.Options{IntraOpThreads: cfg.ORTThreads, BatchSize: cfg.ClassifyBatch})
	if err != nil {
		clf.Close()
		return nil, nil, fmt.Errorf("%w (run `make setup`)", err)
	}
	acts := &activities.Activities{
		Catalog: st.catalog, Blobs: st.blobs, Classifier: clf, Policy: policy,
		Limits:  media.Limits{MaxDuration: cfg.MaxDuration, MaxWidth: cfg.MaxWidth, MaxHeight: cfg.MaxHeight},
		TempDir: os.TempDir(),
	}
	acts.Embedder, acts.Vectors = emb, st.vectors
	acts.Review, acts.Webhook = reviewSettings(cfg), webhookSender(cfg)
	err = setupWatermark(cfg, acts)
	if _, local := st.blobs.(blob.LocalPather); err == nil && !local {
		acts.SourceCache, err = openSourceCache(cfg, st.blobs)
	}
	if err != nil {
		clf.Close()
		emb.Close()
		return nil, nil, err
	}
	slog.Info("worker ready", "model", clf.ModelID(), "model_sha256", clf.ModelSHA256()[:12], "policy", policy.Version)
	return acts, func() { clf.Close(); emb.Close() }, nil
}

// openSourceCache keeps this worker's copies of remote uploads in
// <data dir>/cache/blobs-<pid>: worker processes sharing a data directory
// each have their own, and those of processes that are gone are removed.
func openSourceCache(cfg config.Config, blobs blob.Store) (*blob.Cache, error) {
	root := cfg.Path("cache")
	dirs, _ := filepath.Glob(filepath.Join(root, "blobs-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "blobs-"))
		if err == nil && pid != os.Getpid() && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
	c, err := blob.NewCache(blobs, filepath.Join(root, "blobs-"+strconv.Itoa(os.Getpid())), cfg.SourceCacheBytes)
	if err != nil {
		return nil, fmt.Errorf("LESSONFLOW_SOURCE_CACHE_BYTES: %w", err)
	}
	return c, nil
}

// runWorkerLoop runs a Temporal worker until ctx ends.
func runWorkerLoop(ctx context.Context, cfg config.Config, c client.Client, st *stores) error {
	acts, closeActs, err := newActivities(cfg, st)
	if err != nil {
		return err
	}
	defer closeActs()
	w, err := worker.New(c, acts, worker.Options{TaskQueue: cfg.TaskQueue, Concurrency: cfg.WorkerConcurrency})
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	<-ctx.Done()
	w.Stop()
	return nil
}

// serveHTTP serves h on addr until ctx ends, then drains for a few seconds.
func serveHTTP(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

// Uploads older than this with no video are leftovers of a crash.
const orphanUploadAge = 24 * time.Hour

// startAPI builds the API and starts its upload sweeper.
func startAPI(ctx context.Context, cfg config.Config, c client.Client, st *stores, keys config.APIKeys) *api.Server {
	s := newAPI(cfg, c, st, keys)
	go s.SweepEvery(ctx, time.Hour, orphanUploadAge)
	return s
}

func newAPI(cfg config.Config, c client.Client, st *stores, keys config.APIKeys) *api.Server {
	s := &api.Server{
		Catalog: st.catalog, Blobs: st.blobs, Temporal: c, TaskQueue: cfg.TaskQueue,
		WorkflowName: worker.WorkflowName, Keys: keys.Roles, Names: keys.Names, MaxUploadBytes: cfg.MaxUploadBytes, Logger: slog.Default(),
		Events: st.catalog, Recs: &recommend.Engine{Vectors: st.vectors, Catalog: st.catalog},
		EvidenceKey: []byte(cfg.Review.EvidenceKey), EvidenceTTL: cfg.Review.EvidenceTTL,
		Policy: activePolicy(cfg),
	}
	setupDetect(cfg, s)
	return s
}

func loadConfig(name string, args []string, extra func(*flag.FlagSet)) (config.Config, error) {
	cfg, err := config.FromEnv()
	if err != nil {
		return cfg, err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.Flags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func runAPI(ctx context.Context, args []string) error {
	cfg, err := loadConfig("api", args, nil)
	if err != nil {
		return err
	}
	keys, err := config.ParseAPIKeys(cfg.APIKeys)
	if err != nil {
		return err
	}
	if len(keys.Roles) == 0 {
		return errors.New("LESSONFLOW_API_KEYS is empty: set token=role pairs (roles app, reviewer, admin)")
	}
	st, c, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	defer c.Close()
	if cfg.Review.EvidenceKey == "" {
		slog.Warn("LESSONFLOW_EVIDENCE_KEY is not set: evidence URLs are signed with a key of this process only, so they fail on other API processes and after a restart")
	}
	slog.Info("API listening", "url", "http://"+cfg.HTTPAddr)
	return serveHTTP(ctx, cfg.HTTPAddr, startAPI(ctx, cfg, c, st, keys).Handler())
}

func runWorker(ctx context.Context, args []string) error {
	cfg, err := loadConfig("worker", args, nil)
	if err != nil {
		return err
	}
	st, c, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	defer c.Close()
	metrics, err := workerMetrics(cfg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	go func() {
		if err := serveHTTP(ctx, cfg.MetricsAddr, mux); err != nil {
			slog.Warn("worker metrics endpoint", "addr", cfg.MetricsAddr, "error", err)
		}
	}()
	return runWorkerLoop(ctx, cfg, c, st)
}

// workerMetrics is the worker's /metrics handler: behind the API's metrics
// and admin keys when LESSONFLOW_API_KEYS is set (one scrape credential for
// every process), else open, which only a loopback address keeps private.
func workerMetrics(cfg config.Config) (http.Handler, error) {
	if cfg.APIKeys == "" {
		if host, _, err := net.SplitHostPort(cfg.MetricsAddr); err != nil || !isLoopback(host) {
			slog.Warn("the worker's /metrics has no credentials (LESSONFLOW_API_KEYS is not set) and listens beyond loopback", "addr", cfg.MetricsAddr)
		}
		return promhttp.Handler(), nil
	}
	keys, err := config.ParseAPIKeys(cfg.APIKeys)
	if err != nil {
		return nil, err
	}
	return api.MetricsHandler(keys.Roles), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func runDev(ctx context.Context, args []string) error {
	withWorker := true
	cfg, err := loadConfig("dev", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&withWorker, "worker", true, "run a worker in this process")
	})
	if err != nil {
		return err
	}
	st, err := openStores(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := devKeys(cfg)
	if err != nil {
		return err
	}
	if cfg.Watermark.Key, err = devWatermarkKey(cfg); err != nil {
		return err
	}
	if cfg.Review.EvidenceKey, err = devEvidenceKey(cfg); err != nil {
		return err
	}
	uiURL, started := "", cfg.TemporalAddress == ""
	if started {
		logf, err := os.OpenFile(cfg.Path("temporal.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer logf.Close()
		slog.Info("starting Temporal dev server", "db", cfg.Path("temporal.db"), "log", logf.Name())
		srv, err := devserver.Start(ctx, devserver.Options{
			CLI: cfg.TemporalCLI(), Port: cfg.TemporalPort, UIPort: cfg.TemporalUIPort,
			DBFile: cfg.Path("temporal.db"), Namespace: cfg.TemporalNamespace, Log: logf,
		})
		if err != nil {
			return fmt.Errorf("%w (is `make setup` done?)", err)
		}
		defer srv.Stop()
		cfg.TemporalAddress, uiURL = srv.Address, srv.UIURL
	}
	// The dev server started here has no TLS: the cluster settings are for
	// a TEMPORAL_ADDRESS.
	var c client.Client
	if started {
		c, err = dialTemporalOptions(ctx, client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace})
	} else {
		c, err = dialTemporal(ctx, cfg)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	running := 1
	if withWorker {
		running++
		go func() { errc <- runWorkerLoop(ctx, cfg, c, st) }()
	}
	go func() { errc <- serveHTTP(ctx, cfg.HTTPAddr, startAPI(ctx, cfg, c, st, keys).Handler()) }()
	printBanner(cfg, uiURL, keys, withWorker)
	var first error
	select {
	case <-ctx.Done():
		slog.Info("shutting down")
	case first = <-errc:
		running--
	}
	// Stop the worker and the API before the client and server they use.
	cancel()
	for ; running > 0; running-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

// devKeys uses LESSONFLOW_API_KEYS, else keys generated once and kept in the
// data directory so a restart does not invalidate them.
func devKeys(cfg config.Config) (config.APIKeys, error) {
	if cfg.APIKeys != "" {
		return config.ParseAPIKeys(cfg.APIKeys)
	}
	path := cfg.Path("dev-api-keys")
	if b, err := os.ReadFile(path); err == nil {
		return config.ParseAPIKeys(strings.TrimSpace(string(b)))
	}
	var parts []string
	for _, role := range []string{api.RoleApp, api.RoleReviewer, api.RoleAdmin} {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return config.APIKeys{}, err
		}
		parts = append(parts, "lf_"+role+"_"+hex.EncodeToString(b[:])+"="+role)
	}
	line := strings.Join(parts, ",")
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		return config.APIKeys{}, err
	}
	return config.ParseAPIKeys(line)
}

func printBanner(cfg config.Config, uiURL string, keys config.APIKeys, withWorker bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nLessonFlow is running.\n  API:         http://%s  (OpenAPI: http://%s/openapi.json)\n", cfg.HTTPAddr, cfg.HTTPAddr)
	fmt.Fprintf(&b, "  Review page: http://%s/review/  (sign in with the reviewer key)\n", cfg.HTTPAddr)
	if uiURL != "" {
		fmt.Fprintf(&b, "  Temporal UI: %s\n", uiURL)
	}
	fmt.Fprintf(&b, "  Temporal:    %s (namespace %s)\n  Worker:      %v\n  Data:        %s\n  API keys:\n", cfg.TemporalAddress, cfg.TemporalNamespace, withWorker, absPath(cfg.DataDir))
	roles := keys.Roles
	toks := slices.Collect(maps.Keys(roles))
	slices.SortFunc(toks, func(a, b string) int { return strings.Compare(roles[a], roles[b]) })
	for _, tok := range toks {
		fmt.Fprintf(&b, "    %-8s %s\n", roles[tok], tok)
	}
	fmt.Fprintf(&b, "  Try: LESSONFLOW_API_KEY=<app key> bin/lessonflow upload FILE --title 'My lesson' --wait\n  Ctrl-C stops everything.\n\n")
	fmt.Print(b.String())
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Package api serves LessonFlow's HTTP API: uploads, video status and lists,
// health, metrics and the OpenAPI document. It validates every input, answers
// errors as {"error": {"code", "message"}}, and starts one pipeline workflow
// per distinct upload.
package api

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/watermark"
)

// Roles a key can hold. Admin may do everything.
const (
	RoleApp      = "app"
	RoleReviewer = "reviewer"
	RoleAdmin    = "admin"
	// RoleMetrics may only scrape /metrics (a Prometheus server's key).
	RoleMetrics = "metrics"
)

// Server is the API. Its zero value is not usable: fill every field.
type Server struct {
	Catalog      catalog.Store
	Blobs        blob.Store
	Temporal     client.Client
	TaskQueue    string
	WorkflowName string
	Keys         map[string]string // token → role
	// Names maps tokens that name an account to it (config.APIKeys.Names):
	// reviewers' leases, decisions and exclusions follow the account.
	Names          map[string]string
	MaxUploadBytes int64
	Logger         *slog.Logger
	// Events and Recs serve users' events and recommendations (issue 4);
	// nil answers those routes with 503.
	Events catalog.EventStore
	Recs   *recommend.Engine
	// Reviews is the review queue (nil: Catalog, when it keeps one).
	// EvidenceKey signs evidence URLs (≥ 32 bytes; nil: a key made at
	// start), valid for EvidenceTTL (0: DefaultEvidenceTTL).
	Reviews     catalog.ReviewStore
	EvidenceKey []byte
	EvidenceTTL time.Duration
	// Policy is the active moderation policy, shown on the reviewer page
	// (nil: GET /v1/review/policy without a version answers 404).
	Policy *moderation.Policy
	// WatermarkKeys detect marks (nil: POST /v1/watermark/detect answers
	// 503). DetectMaxBytes and DetectTimeout bound one detection (0:
	// DefaultDetectMaxBytes, DefaultDetectTimeout).
	WatermarkKeys  *watermark.Keyring
	DetectMaxBytes int64
	DetectTimeout  time.Duration

	keyHashes  map[[32]byte]string
	nameHashes map[[32]byte]string

	evidenceOnce       sync.Once
	evidenceSigningKey []byte
}

// route is one endpoint; the OpenAPI test checks this table against the document.
type route struct {
	method, path string
	roles        []string // nil: no credentials needed
	handler      http.HandlerFunc
}

func (s *Server) routes() []route {
	anyRole := []string{RoleApp, RoleReviewer, RoleAdmin}
	return []route{
		{"POST", "/v1/videos", []string{RoleApp, RoleAdmin}, s.createVideo},
		{"GET", "/v1/videos", anyRole, s.listVideos},
		{"GET", "/v1/videos/{id}", anyRole, s.getVideo},
		{"GET", "/v1/videos/{id}/rendition", []string{RoleApp}, s.getRendition},
		{"POST", "/v1/watermark/detect", []string{RoleReviewer}, s.detectWatermark},
		{"POST", "/v1/users/{user_id}/events", []string{RoleApp, RoleAdmin}, s.postEvents},
		{"GET", "/v1/users/{user_id}/recommendations", []string{RoleApp, RoleAdmin}, s.getRecommendations},
		{"GET", "/v1/lessons/{id}/similar", []string{RoleApp, RoleAdmin}, s.getSimilar},
		{"GET", "/v1/videos/{id}/decisions", anyRole, s.getDecisions},
		{"POST", "/v1/videos/{id}/reports", []string{RoleApp}, s.reportVideo},
		{"POST", "/v1/videos/{id}/appeals", []string{RoleApp}, s.appealVideo},
		{"GET", "/v1/review/items", []string{RoleReviewer}, s.listReviewItems},
		{"GET", "/v1/review/items/{id}", []string{RoleReviewer}, s.getReviewItem},
		{"POST", "/v1/review/items/{id}/claim", []string{RoleReviewer}, s.claimReviewItem},
		{"POST", "/v1/review/items/{id}/release", []string{RoleReviewer}, s.releaseReviewItem},
		{"POST", "/v1/review/items/{id}/decision", []string{RoleReviewer}, s.decideReviewItem},
		{"GET", "/v1/review/policy", []string{RoleReviewer}, s.getReviewPolicy},
		{"GET", "/v1/review/me", []string{RoleReviewer}, s.getMe},
		{"POST", "/v1/admin/videos/{id}/retry", []string{RoleAdmin}, s.retryVideo},
		{"POST", "/v1/admin/rechecks", []string{RoleAdmin}, s.startRecheck},
		{"GET", "/v1/admin/rechecks/{id}", []string{RoleAdmin}, s.getRecheck},
		{"GET", "/v1/admin/rechecks/{id}/results", []string{RoleAdmin}, s.listRecheckResults},
		{"GET", "/v1/review/evidence/{token}", nil, s.getEvidence},
		{"GET", "/healthz", nil, s.health},
		{"GET", "/metrics", []string{RoleMetrics}, promhttp.Handler().ServeHTTP},
		{"GET", "/openapi.json", nil, serveOpenAPI},
	}
}

// Handler returns the API's routes behind auth, metrics and panic recovery.
func (s *Server) Handler() http.Handler {
	s.hashKeys()
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		pattern := rt.method + " " + rt.path
		mux.Handle(pattern, s.instrument(rt.path, s.authorize(rt.roles, rt.handler)))
	}
	s.mountWeb(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path)
	})
	return s.recover(mux)
}

func (s *Server) hashKeys() {
	s.keyHashes = make(map[[32]byte]string, len(s.Keys))
	for tok, role := range s.Keys {
		s.keyHashes[sha256.Sum256([]byte(tok))] = role
	}
	s.nameHashes = make(map[[32]byte]string, len(s.Names))
	for tok, name := range s.Names {
		s.nameHashes[sha256.Sum256([]byte(tok))] = name
	}
}

// MetricsHandler serves the process's Prometheus metrics to a metrics or
// admin key of keys (token -> role), answering others as the API's
// /metrics does: the worker's own endpoint, scraped with the same key.
func MetricsHandler(keys map[string]string) http.Handler {
	s := &Server{Keys: keys}
	s.hashKeys()
	return s.authorize([]string{RoleMetrics}, promhttp.Handler().ServeHTTP)
}

// authorize checks the bearer token's role. Tokens are compared by hash so
// lookup time says nothing about how much of a token was right.
func (s *Server) authorize(roles []string, next http.HandlerFunc) http.Handler {
	if roles == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lessonflow"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "missing Authorization: Bearer <token> header")
			return
		}
		role, ok := s.keyHashes[sha256.Sum256([]byte(tok))]
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lessonflow", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "unknown API key")
			return
		}
		if role != RoleAdmin && !slices.Contains(roles, role) {
			writeError(w, http.StatusForbidden, "forbidden", "role "+role+" may not "+r.Method+" "+r.URL.Path)
			return
		}
		next(w, r)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !equalFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i]|0x20, b[i]|0x20
		if ca != cb {
			return false
		}
	}
	return true
}

var (
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "lessonflow_http_requests_total", Help: "API requests by route and status code.",
	}, []string{"route", "code"})
	httpSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "lessonflow_http_request_seconds", Help: "API request duration by route.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"route"})
)

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		httpRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		httpSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

func (s *Server) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// errorBody is every error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, http.StatusInternalServerError, "internal", "internal error; the server logged the cause")
}

// health answers whether the API's dependencies answer: the catalog, the
// blob store (a Postgres server, an S3 bucket at scale) and Temporal. The
// endpoint needs no credentials, so a failure is logged, not shown.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"catalog": "ok", "blobs": "ok", "temporal": "ok"}
	status := http.StatusOK
	fail := func(name string, err error) {
		s.Logger.Warn("health check failed", "dependency", name, "error", err)
		checks[name], status = "unavailable", http.StatusServiceUnavailable
	}
	if _, err := s.Catalog.GetVideo(r.Context(), "healthz-probe"); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		fail("catalog", err)
	}
	if _, err := s.Blobs.Stat(r.Context(), "healthz-probe"); err != nil && !errors.Is(err, blob.ErrNotFound) {
		fail("blobs", err)
	}
	if _, err := s.Temporal.CheckHealth(r.Context(), &client.CheckHealthRequest{}); err != nil {
		fail("temporal", err)
	}
	state := "ok"
	if status != http.StatusOK {
		state = "degraded"
	}
	writeJSON(w, status, map[string]any{"status": state, "checks": checks})
}

// Package config owns LessonFlow's settings: read from the environment with
// defaults that run everything on one machine, overridable by flags.
package config

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of every process (dev, api, worker).
type Config struct {
	DataDir           string        // LESSONFLOW_DATA_DIR: catalog, blobs, Temporal's SQLite file
	ToolsDir          string        // LESSONFLOW_TOOLS_DIR: ONNX Runtime, models, Temporal CLI (installed by make setup)
	HTTPAddr          string        // LESSONFLOW_HTTP_ADDR
	APIKeys           string        // LESSONFLOW_API_KEYS: token=role[:name],...
	Policy            string        // LESSONFLOW_POLICY: built-in name or file path
	TemporalAddress   string        // TEMPORAL_ADDRESS: empty means `dev` starts a dev server
	TemporalNamespace string        // TEMPORAL_NAMESPACE
	TaskQueue         string        // LESSONFLOW_TASK_QUEUE
	MaxUploadBytes    int64         // LESSONFLOW_MAX_UPLOAD_BYTES
	MaxDuration       time.Duration // LESSONFLOW_MAX_DURATION
	MaxWidth          int           // LESSONFLOW_MAX_WIDTH
	MaxHeight         int           // LESSONFLOW_MAX_HEIGHT
	ORTThreads        int           // LESSONFLOW_ORT_THREADS: intra-op threads per session
	ClassifyBatch     int           // LESSONFLOW_CLASSIFY_BATCH
	WorkerConcurrency int           // LESSONFLOW_WORKER_CONCURRENCY: activities at once per worker
	MetricsAddr       string        // LESSONFLOW_METRICS_ADDR: the worker's own /metrics (worker command)
	TemporalUIPort    int           // LESSONFLOW_TEMPORAL_UI_PORT
	TemporalPort      int           // LESSONFLOW_TEMPORAL_PORT: the dev server's gRPC port
	EmbedModel        string        // LESSONFLOW_EMBED_MODEL: embedding model id; names the vector collection
	VectorProbe       int           // LESSONFLOW_VECTOR_PROBE: most IVF lists an embedded-store search scans
	VectorProbeMargin float64       // LESSONFLOW_VECTOR_PROBE_MARGIN: the adaptive probe's margin (negative: fixed)
	MilvusAddress     string        // MILVUS_ADDRESS: use Milvus for lesson vectors instead of sqlite-vec
	MilvusToken       string        // MILVUS_TOKEN: API key or user:password token
	MilvusUsername    string        // MILVUS_USERNAME
	MilvusPassword    string        // MILVUS_PASSWORD
	Review            ReviewConfig  // LESSONFLOW_REVIEW_*, LESSONFLOW_WEBHOOK_*, LESSONFLOW_EVIDENCE_* (config/review.go)
	Blob              BlobConfig    // LESSONFLOW_S3_* (config/blob.go)
	PostgresDSN       string        // LESSONFLOW_POSTGRES_DSN: catalog in Postgres instead of SQLite. Secret: holds a password
	PostgresMaxConns  int           // LESSONFLOW_POSTGRES_MAX_CONNS: connections per process
	SourceCacheBytes  int64         // LESSONFLOW_SOURCE_CACHE_BYTES: a worker's copies of uploads from a remote blob store

	// LESSONFLOW_WATERMARK_*, LESSONFLOW_DETECT_* (config/watermark.go)
	Watermark WatermarkConfig
}

// Setting documents one environment variable (the README's table is generated from this list).
type Setting struct{ Env, Default, Doc string }

// Settings lists every environment variable with its default.
var Settings = []Setting{
	{"LESSONFLOW_DATA_DIR", ".data", "catalog (SQLite), blobs, Temporal dev server database"},
	{"LESSONFLOW_TOOLS_DIR", ".tools", "ONNX Runtime, verified models and Temporal CLI installed by `make setup`"},
	{"LESSONFLOW_MODELS_DIR", "../shared/models", "where `make setup` copies the model files from (checked against models/manifests)"},
	{"LESSONFLOW_HTTP_ADDR", "127.0.0.1:8080", "API listen address"},
	{"LESSONFLOW_API_KEYS", "(dev: generated)", "`token=role[:name],...` with roles app, reviewer, admin, metrics (a Prometheus scraper); a name makes the token an account's (reviewers)"},
	{"LESSONFLOW_POLICY", "default", "moderation policy: a built-in name (moderation/policies) or a YAML file"},
	{"TEMPORAL_ADDRESS", "(dev: starts one)", "Temporal frontend host:port; `dev` starts a dev server when unset"},
	{"TEMPORAL_NAMESPACE", "default", "Temporal namespace"},
	{"LESSONFLOW_TASK_QUEUE", "lessonflow", "Temporal task queue of the workers"},
	{"LESSONFLOW_MAX_UPLOAD_BYTES", "4294967296", "upload size limit (413 past it)"},
	{"LESSONFLOW_MAX_DURATION", "4h", "longest accepted video"},
	{"LESSONFLOW_MAX_WIDTH", "4096", "widest accepted frame (either orientation)"},
	{"LESSONFLOW_MAX_HEIGHT", "2160", "tallest accepted frame (either orientation)"},
	{"LESSONFLOW_ORT_THREADS", "1", "ONNX Runtime intra-op threads per session"},
	{"LESSONFLOW_CLASSIFY_BATCH", "8", "frames per model run"},
	{"LESSONFLOW_WORKER_CONCURRENCY", "2", "activities a worker runs at once"},
	{"LESSONFLOW_METRICS_ADDR", "127.0.0.1:9464", "`worker` command's Prometheus /metrics address (with LESSONFLOW_API_KEYS set, it wants a metrics or admin key)"},
	{"LESSONFLOW_TEMPORAL_UI_PORT", "8233", "dev server Web UI port"},
	{"LESSONFLOW_TEMPORAL_PORT", "7233", "dev server gRPC port"},
	{"LESSONFLOW_EMBED_MODEL", "mobilenet_v1_1.0_224_embed", "embedding model (a models/manifests id); with its dimension it names the vector collection"},
	{"LESSONFLOW_VECTOR_PROBE", "4", "embedded vector store (sqlite-vec): the most IVF lists a search scans, 1-256; more buys recall on embeddings that cluster loosely, at about a millisecond a list"},
	{"LESSONFLOW_VECTOR_PROBE_MARGIN", "0.15", "embedded vector store: besides the nearest list, a search scans those whose centroid's squared distance is within 1+margin of the nearest's; negative scans LESSONFLOW_VECTOR_PROBE lists always"},
	{"MILVUS_ADDRESS", "(unset: sqlite-vec)", "Milvus `host:port` or URL (`https://` for TLS, a path names the database) for lesson vectors; unset keeps them in `<data dir>/vectors/`"},
	{"MILVUS_TOKEN", "(unset: no credentials)", "Milvus API key (Zilliz Cloud) or `user:password` token. Secret: never logged"},
	{"MILVUS_USERNAME", "(unset)", "Milvus user, with `MILVUS_PASSWORD`: the other way to authenticate"},
	{"MILVUS_PASSWORD", "(unset)", "Milvus password. Secret: never logged"},
	{"LESSONFLOW_POSTGRES_DSN", "(unset: SQLite in <data dir>/catalog.db)", "PostgreSQL (13+) database of the catalog, `postgres://user:pass@host/db` or `key=value` pairs; migrated at start. Secret: never logged"},
	{"LESSONFLOW_POSTGRES_MAX_CONNS", "16", "Postgres connections one API or worker process opens at most; all processes together must stay under the server's max_connections"},
	{"LESSONFLOW_S3_BUCKET", "(unset: files in <data dir>/blobs/)", "S3 bucket for uploads, frames, scores and renditions; it must exist. Give it a lifecycle rule that aborts incomplete multipart uploads"},
	{"LESSONFLOW_S3_ENDPOINT", "s3.amazonaws.com", "S3-compatible endpoint `host[:port]` (MinIO, Ceph RGW, versitygw, ...)"},
	{"LESSONFLOW_S3_PREFIX", "(none)", "key prefix inside the bucket, ending in `/`, so deployments can share a bucket"},
	{"LESSONFLOW_S3_REGION", "(looked up)", "the bucket's region"},
	{"LESSONFLOW_S3_ACCESS_KEY", "(unset: AWS_ACCESS_KEY_ID or the instance's IAM role)", "access key id, with LESSONFLOW_S3_SECRET_KEY"},
	{"LESSONFLOW_S3_SECRET_KEY", "(unset)", "secret access key. Secret: never logged"},
	{"LESSONFLOW_S3_INSECURE", "false", "`true`: plain HTTP, for a gateway on loopback"},
	{"LESSONFLOW_SOURCE_CACHE_BYTES", "10737418240", "with objects in S3: how many bytes of uploads a worker keeps on local disk (<data dir>/cache/) so that the stages of a video download it once"},
	{"LESSONFLOW_REVIEW_LEASE", "15m", "how long a reviewer's claim on a review item holds; an expired lease returns the item to the queue"},
	{"LESSONFLOW_REVIEW_DEADLINE", "24h", "a review item not decided within this escalates (priority up, escalation webhook)"},
	{"LESSONFLOW_SECOND_OPINION_AUDIENCE", "1000", "blocking a lesson with more distinct viewers than this needs a second reviewer (0: never)"},
	{"LESSONFLOW_REPORTS_TO_UNPUBLISH", "3", "this many reports take a published video offline pending review (0: never)"},
	{"LESSONFLOW_WEBHOOK_URL", "(unset: none)", "where decisions and escalations are POSTed, signed with HMAC-SHA256"},
	{"LESSONFLOW_WEBHOOK_SECRET", "(required with the URL)", "webhook signing secret, at least 16 bytes"},
	{"LESSONFLOW_EVIDENCE_KEY", "(unset: dev keeps one in the data dir; api uses a random per-process key)", "signs evidence URLs, at least 32 bytes; set the same on every API process"},
	{"LESSONFLOW_EVIDENCE_TTL", "10m", "how long a signed evidence URL works"},
	{"LESSONFLOW_WATERMARK_KEY", "(dev: generated)", "watermark keyring `id:HEX,...` (secrets 16-64 bytes); the first key marks new videos, all are tried by detection. Secret: never logged"},
	{"LESSONFLOW_WATERMARK_CRF", "23", "x264 CRF of the watermarked renditions (1-51)"},
	{"LESSONFLOW_WATERMARK_PRESET", "medium", "x264 preset of the watermarked renditions"},
	{"LESSONFLOW_WATERMARK_MOTION_GATE", "on", "`on`: on the block grid (screen content), squares that keep moving through a 32-frame block carry no mark in it, which saves most of what a scrolling editor's mark costs; `off`: every square, every frame"},
	{"LESSONFLOW_DETECT_MAX_BYTES", "268435456", "`POST /v1/watermark/detect` upload limit (413 past it)"},
	{"LESSONFLOW_DETECT_TIMEOUT", "60s", "time bound of one detection request"},
}

// FromEnv reads the environment; unset variables take their defaults.
func FromEnv() (Config, error) {
	c := Config{
		DataDir:           env("LESSONFLOW_DATA_DIR", ".data"),
		ToolsDir:          env("LESSONFLOW_TOOLS_DIR", ".tools"),
		HTTPAddr:          env("LESSONFLOW_HTTP_ADDR", "127.0.0.1:8080"),
		APIKeys:           os.Getenv("LESSONFLOW_API_KEYS"),
		Policy:            env("LESSONFLOW_POLICY", "default"),
		TemporalAddress:   os.Getenv("TEMPORAL_ADDRESS"),
		TemporalNamespace: env("TEMPORAL_NAMESPACE", "default"),
		TaskQueue:         env("LESSONFLOW_TASK_QUEUE", "lessonflow"),
		MetricsAddr:       env("LESSONFLOW_METRICS_ADDR", "127.0.0.1:9464"),
		EmbedModel:        env("LESSONFLOW_EMBED_MODEL", "mobilenet_v1_1.0_224_embed"),
		MilvusAddress:     os.Getenv("MILVUS_ADDRESS"),
		MilvusToken:       os.Getenv("MILVUS_TOKEN"),
		MilvusUsername:    os.Getenv("MILVUS_USERNAME"),
		MilvusPassword:    os.Getenv("MILVUS_PASSWORD"),
		PostgresDSN:       os.Getenv("LESSONFLOW_POSTGRES_DSN"),
	}
	var errs []error
	num := func(name string, def int64) int64 {
		v, err := strconv.ParseInt(env(name, strconv.FormatInt(def, 10)), 10, 64)
		if err != nil || v <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive integer, got %q", name, os.Getenv(name)))
		}
		return v
	}
	c.MaxUploadBytes = num("LESSONFLOW_MAX_UPLOAD_BYTES", 4<<30)
	c.MaxWidth = int(num("LESSONFLOW_MAX_WIDTH", 4096))
	c.MaxHeight = int(num("LESSONFLOW_MAX_HEIGHT", 2160))
	c.ORTThreads = int(num("LESSONFLOW_ORT_THREADS", 1))
	c.ClassifyBatch = int(num("LESSONFLOW_CLASSIFY_BATCH", 8))
	c.WorkerConcurrency = int(num("LESSONFLOW_WORKER_CONCURRENCY", 2))
	c.TemporalUIPort = int(num("LESSONFLOW_TEMPORAL_UI_PORT", 8233))
	c.TemporalPort = int(num("LESSONFLOW_TEMPORAL_PORT", 7233))
	c.PostgresMaxConns = int(num("LESSONFLOW_POSTGRES_MAX_CONNS", 16))
	c.SourceCacheBytes = num("LESSONFLOW_SOURCE_CACHE_BYTES", 10<<30)
	if c.VectorProbe = int(num("LESSONFLOW_VECTOR_PROBE", 4)); c.VectorProbe > 256 {
		errs = append(errs, fmt.Errorf("LESSONFLOW_VECTOR_PROBE: want 1-256, got %d", c.VectorProbe))
	}
	m, err := strconv.ParseFloat(env("LESSONFLOW_VECTOR_PROBE_MARGIN", "0.15"), 64)
	if err != nil || math.IsNaN(m) || math.IsInf(m, 0) || m == 0 {
		errs = append(errs, fmt.Errorf("LESSONFLOW_VECTOR_PROBE_MARGIN: want a non-zero number such as 0.15 (negative: a fixed probe), got %q", os.Getenv("LESSONFLOW_VECTOR_PROBE_MARGIN")))
	}
	c.VectorProbeMargin = m
	d, err := time.ParseDuration(env("LESSONFLOW_MAX_DURATION", "4h"))
	if err != nil || d <= 0 {
		errs = append(errs, fmt.Errorf("LESSONFLOW_MAX_DURATION: want a duration like 4h, got %q", os.Getenv("LESSONFLOW_MAX_DURATION")))
	}
	c.MaxDuration = d
	errs = append(errs, c.Review.fromEnv()...)
	errs = append(errs, c.Watermark.fromEnv()...)
	errs = append(errs, c.Blob.fromEnv()...)
	return c, errors.Join(errs...)
}

// Flags registers the settings worth overriding on the command line.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "data directory (LESSONFLOW_DATA_DIR)")
	fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "API listen address (LESSONFLOW_HTTP_ADDR)")
	fs.StringVar(&c.Policy, "policy", c.Policy, "moderation policy name or file (LESSONFLOW_POLICY)")
	fs.StringVar(&c.TemporalAddress, "temporal", c.TemporalAddress, "Temporal frontend host:port (TEMPORAL_ADDRESS)")
	fs.StringVar(&c.TemporalNamespace, "namespace", c.TemporalNamespace, "Temporal namespace (TEMPORAL_NAMESPACE)")
}

// Path resolves p against the data directory.
func (c Config) Path(p ...string) string { return filepath.Join(append([]string{c.DataDir}, p...)...) }

// ORTLib is the ONNX Runtime shared library installed by setup.
func (c Config) ORTLib() string { return filepath.Join(c.ToolsDir, "lib", "libonnxruntime.so.1") }

// ModelsDir holds the verified model files.
func (c Config) ModelsDir() string { return filepath.Join(c.ToolsDir, "models") }

// TemporalCLI is the Temporal CLI used by `dev`.
func (c Config) TemporalCLI() string { return filepath.Join(c.ToolsDir, "bin", "temporal") }

// APIKeys are the API's tokens: each one's role and, for tokens that name
// an account (`token=role:name`), the account. A reviewer's leases,
// decisions and exclusions follow the account, so rotating their token
// keeps their identity; an unnamed token is its own account.
type APIKeys struct {
	Roles map[string]string // token -> app, reviewer or admin
	Names map[string]string // token -> account name, for named tokens only
}

// accountName is an account's name: lower case, not shaped like the id of
// an unnamed token ("rk_...").
var accountName = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// ParseAPIKeys parses `token=role[:name],...`. Tokens must be at least 16
// characters; several tokens may name one account (a rotation).
func ParseAPIKeys(s string) (APIKeys, error) {
	keys := APIKeys{Roles: map[string]string{}, Names: map[string]string{}}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		tok, role, ok := strings.Cut(item, "=")
		if !ok {
			return APIKeys{}, fmt.Errorf("LESSONFLOW_API_KEYS: %q is not token=role", redact(item))
		}
		role, name, named := strings.Cut(role, ":")
		switch role {
		case "app", "reviewer", "admin", "metrics":
		default:
			return APIKeys{}, fmt.Errorf("LESSONFLOW_API_KEYS: unknown role %q (want app, reviewer, admin or metrics)", role)
		}
		if len(tok) < 16 {
			return APIKeys{}, fmt.Errorf("LESSONFLOW_API_KEYS: token %s is shorter than 16 characters", redact(tok))
		}
		if _, dup := keys.Roles[tok]; dup {
			return APIKeys{}, fmt.Errorf("LESSONFLOW_API_KEYS: token %s is listed twice", redact(tok))
		}
		if named {
			if !accountName.MatchString(name) || strings.HasPrefix(name, "rk_") {
				return APIKeys{}, fmt.Errorf("LESSONFLOW_API_KEYS: account name %q: want 1-63 of a-z 0-9 . _ - starting with a letter, not rk_", name)
			}
			keys.Names[tok] = name
		}
		keys.Roles[tok] = role
	}
	return keys, nil
}

func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:4] + "****"
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

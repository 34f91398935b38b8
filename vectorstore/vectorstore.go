// Package vectorstore owns lesson vectors: upsert, delete, get and filtered
// nearest-neighbour search, behind one small interface with an embedded
// default (sqlite-vec) and Milvus for scale.
//
// A Store is bound to one collection and one dimension. The collection is
// named after the embedding model and the dimension (CollectionName), so the
// vectors of two models never mix: re-embedding with a new model fills a new
// collection while the old one keeps serving.
//
// Stored vectors must be L2-normalised (the embedder's output is); a vector
// whose norm is off by more than NormTolerance is rejected rather than ranked
// wrongly. Queries need not be: Search normalises the query, so a user
// profile may be, for example, the plain sum of watched lessons' vectors.
// Scores are cosine similarities in [-1, 1], higher is closer.
//
// Every argument is validated in the same way by every backend before
// anything is written: a batch with one bad lesson is rejected whole with an
// error wrapping ErrInvalid.
package vectorstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

var (
	// ErrNotFound is returned (wrapped) by Get when no lesson has the id.
	ErrNotFound = errors.New("vectorstore: not found")
	// ErrInvalid is returned (wrapped) for arguments no retry can fix: a
	// vector of the wrong dimension or with NaN/Inf values, a bad id, k out of
	// range, an oversized batch. Nothing has been written when it is returned.
	ErrInvalid = errors.New("vectorstore: invalid argument")
)

const (
	// MaxIDLen bounds lesson ids in bytes.
	MaxIDLen = 128
	// MaxBatch bounds the lessons of one Upsert and the ids of one Delete:
	// 1000 x 1024-d vectors are 4 MiB, one transaction or one gRPC message.
	MaxBatch = 1000
	// MaxK bounds k in Search.
	MaxK = 1000
	// MaxExclude bounds Filter.ExcludeIDs (after removing duplicates).
	MaxExclude = 1000
	// MaxDim bounds the dimension of a collection.
	MaxDim = 4096
	// NormTolerance is how far a stored vector's L2 norm may be from 1.
	NormTolerance = 1e-3
	// MaxLanguageLen bounds Lesson.Language and Filter.Language in bytes, as
	// the API does.
	MaxLanguageLen = 35
)

// Lesson is one approved lesson's vector and the fields searches filter on
// or return.
type Lesson struct {
	ID     string
	Vector []float32
	// Language is a BCP 47 tag as the API accepts it ("en", "pt-BR"); Filter
	// compares it exactly.
	Language string
	// Level is the lesson's level (the API uses 1-6); 0 means unknown.
	Level int
	// PublishedAt is kept to the millisecond and returned in UTC.
	PublishedAt time.Time
	Popularity  float64
}

// Filter restricts a Search. The zero Filter matches every lesson.
type Filter struct {
	// Language, if not "", keeps only lessons of exactly this language.
	Language string
	// LevelMin and LevelMax bound Level inclusively; 0 leaves a side unbounded.
	LevelMin, LevelMax int
	// ExcludeIDs are never returned (e.g. lessons the user has watched).
	ExcludeIDs []string
}

// Hit is one Search result.
type Hit struct {
	ID string
	// Score is the cosine similarity to the query, in [-1, 1]; higher is closer.
	Score       float64
	Language    string
	Level       int
	PublishedAt time.Time
	Popularity  float64
}

// Store holds the lesson vectors of one collection. Implementations are safe
// for concurrent use and give read-your-writes: once Upsert or Delete
// returns, Get, Search and Count see the change.
type Store interface {
	// Upsert inserts or replaces lessons by ID, at most MaxBatch at a time.
	// A batch is all-or-nothing with respect to validation; see each backend
	// for failures in flight.
	Upsert(ctx context.Context, lessons []Lesson) error
	// Delete removes lessons by ID; missing ids are not an error.
	Delete(ctx context.Context, ids []string) error
	// Get returns one lesson, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) (Lesson, error)
	// Search returns up to k (1..MaxK) lessons matching f, nearest first.
	// It returns an empty, non-nil slice when nothing matches.
	Search(ctx context.Context, query []float32, k int, f Filter) ([]Hit, error)
	// Count returns the number of lessons stored.
	Count(ctx context.Context) (int, error)
	// Close releases the store. Calling it again returns the same result.
	Close() error
}

// maxCollectionLen is Milvus's limit on collection names.
const maxCollectionLen = 255

// CollectionName names the collection of a model's vectors, e.g.
// CollectionName("mobilenet_v1_1.0_224_embed", 1024) is
// "lessons_mobilenet_v1_1_0_224_embed_1024". The model id is lowercased
// and every run of characters outside [a-z0-9] becomes one '_'. Ids that
// differ only in case or punctuation therefore share a collection; ids too
// long for a collection name are cut and suffixed with a hash of the whole
// id so they stay distinct.
func CollectionName(modelID string, dim int) string {
	var b strings.Builder
	pendingSep := false
	for _, r := range strings.ToLower(modelID) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			if pendingSep && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingSep = false
			b.WriteRune(r)
			continue
		}
		pendingSep = true
	}
	model := b.String()
	if model == "" {
		model = "model"
	}
	suffix := "_" + strconv.Itoa(dim)
	if room := maxCollectionLen - len("lessons_") - len(suffix); len(model) > room {
		sum := sha256.Sum256([]byte(modelID))
		h := hex.EncodeToString(sum[:8])
		model = strings.TrimRight(model[:room-len(h)-1], "_") + "_" + h
	}
	return "lessons_" + model + suffix
}

// ValidCollection reports whether name may name a collection: 1 to 255
// bytes of [a-z0-9_], starting with a letter. Every CollectionName is valid,
// and a valid name is safe as a file name and as a Milvus collection name.
func ValidCollection(name string) error {
	if name == "" || len(name) > maxCollectionLen {
		return errorf("collection name of %d bytes, want 1 to %d", len(name), maxCollectionLen)
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return errorf("collection %q must start with a lowercase letter", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return errorf("collection %q: byte %q not allowed, want [a-z0-9_]", name, c)
		}
	}
	return nil
}

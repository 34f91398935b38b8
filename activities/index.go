package activities

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"math"
	"path"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/vectorstore"
)

// Stage names of the post-approval stages owned here.
const (
	StageEmbed   = "embed"
	StageIndex   = "index"
	StagePublish = catalog.StagePublish
)

// Application error types the workflows branch on.
const (
	// ErrNotPublishable: the video left `approved` (e.g. a review blocked
	// it) before it could be published.
	ErrNotPublishable = "NotPublishable"
	// ErrModelMismatch: a vector made by another embedding model than the
	// one this worker indexes (a worker upgraded between two activities).
	ErrModelMismatch = "ModelMismatch"
)

// VectorRef references a lesson vector stored as a blob (1024 float32s
// would be 4 KiB of history per video otherwise).
type VectorRef struct {
	Key        string `json:"key"`
	SHA256     string `json:"sha256"`
	Frames     int    `json:"frames"`
	ModelID    string `json:"model_id"`
	Collection string `json:"collection"`
	Dim        int    `json:"dim"`
}

// EmbedInput names the video whose coarse frames are embedded.
type EmbedInput struct {
	VideoID string `json:"video_id"`
}

// collection is the vector collection of the worker's embedding model.
func (a *Activities) collection() string {
	if a.Embedder == nil {
		return ""
	}
	return vectorstore.CollectionName(a.Embedder.ModelID(), a.Embedder.Dim())
}

func vectorKey(videoID, collection string) string {
	return "vectors/" + videoID + "/" + collection + ".f32"
}

// Embed runs the embedding model over the frames already sampled for
// moderation (the coarse pass: scene changes plus a minimum rate, so every
// part of the lesson is represented) and stores the lesson vector: the
// L2-normalised mean of the frame vectors.
//
// Why the normalised mean: frame vectors are unit length, and the dot
// product of two means is the average similarity over all pairs of frames
// of the two lessons, which is what "these lessons look alike" should
// measure. Normalising turns it into a cosine, so a lesson with varied
// frames (a shorter mean) is not ranked down for it, and the store
// requires unit vectors. A max-pool would let one odd frame dominate;
// several vectors per lesson would multiply storage and need grouping in
// every query.
//
// It reads the frame manifest by its fixed key (a reviewer's approval runs
// this too, without the sampling result at hand) and checks every frame
// against the sha256 the manifest recorded. A retry recomputes the same
// vector and overwrites the same key.
func (a *Activities) Embed(ctx context.Context, in EmbedInput) (ref VectorRef, err error) {
	defer a.stage(ctx, in.VideoID, StageEmbed)(&err)
	if a.Embedder == nil {
		return ref, errors.New("embed: this worker has no embedding model")
	}
	var m frameManifest
	if err := getJSON(ctx, a.Blobs, path.Join(framesPrefix(in.VideoID), pass(false)+".json"), "", &m); err != nil {
		return ref, fmt.Errorf("embed %s: frame manifest: %w", in.VideoID, err)
	}
	if m.VideoID != in.VideoID || len(m.Frames) == 0 {
		return ref, fmt.Errorf("embed %s: manifest is for %q with %d frames", in.VideoID, m.VideoID, len(m.Frames))
	}
	dim := a.Embedder.Dim()
	sum := make([]float64, dim)
	const batch = 8
	for start := 0; start < len(m.Frames); start += batch {
		frames := m.Frames[start:min(start+batch, len(m.Frames))]
		imgs := make([]image.Image, len(frames))
		for i, f := range frames {
			if imgs[i], err = a.decodeFrame(ctx, f); err != nil {
				return ref, fmt.Errorf("embed %s: %w", in.VideoID, err)
			}
		}
		vecs, err := a.Embedder.Embed(ctx, imgs)
		if err != nil {
			return ref, fmt.Errorf("embed %s: %w", in.VideoID, err)
		}
		for _, v := range vecs {
			for i, x := range v {
				sum[i] += float64(x)
			}
		}
		activity.RecordHeartbeat(ctx, start+len(frames))
	}
	vec, err := normalise(sum)
	if err != nil {
		return ref, fmt.Errorf("embed %s: %w", in.VideoID, err)
	}
	col := a.collection()
	key := vectorKey(in.VideoID, col)
	info, err := blob.PutBytes(ctx, a.Blobs, key, encodeF32(vec))
	if err != nil {
		return ref, fmt.Errorf("store vector of %s: %w", in.VideoID, err)
	}
	return VectorRef{Key: key, SHA256: info.SHA256, Frames: len(m.Frames), ModelID: a.Embedder.ModelID(), Collection: col, Dim: dim}, nil
}

func normalise(sum []float64) ([]float32, error) {
	var n float64
	for _, x := range sum {
		n += x * x
	}
	n = math.Sqrt(n)
	if n == 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return nil, fmt.Errorf("mean frame vector has norm %v", n)
	}
	out := make([]float32, len(sum))
	for i, x := range sum {
		out[i] = float32(x / n)
	}
	return out, nil
}

func encodeF32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// loadVector reads a VectorRef's blob, checking its hash and size.
func (a *Activities) loadVector(ctx context.Context, ref VectorRef) ([]float32, error) {
	b, err := blob.GetBytes(ctx, a.Blobs, ref.Key, 4*vectorstore.MaxDim)
	if err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("vector blob %s does not match its reference", ref.Key)
	}
	if len(b) != 4*ref.Dim {
		return nil, fmt.Errorf("vector blob %s holds %d bytes, want %d", ref.Key, len(b), 4*ref.Dim)
	}
	v := make([]float32, ref.Dim)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// IndexInput asks to index one embedded video.
type IndexInput struct {
	VideoID string    `json:"video_id"`
	Vector  VectorRef `json:"vector"`
	// PublishedAt is the publication time to index with when the catalog
	// has none yet (the workflow passes the time it will publish with).
	PublishedAt time.Time `json:"published_at"`
}

// IndexResult says whether the video was indexed.
type IndexResult struct {
	Indexed bool   `json:"indexed"`
	State   string `json:"state"` // the catalog state seen
}

// events returns the catalog's EventStore side.
func (a *Activities) events() (catalog.EventStore, error) {
	es, ok := a.Catalog.(catalog.EventStore)
	if !ok {
		return nil, fmt.Errorf("catalog %T does not implement catalog.EventStore", a.Catalog)
	}
	return es, nil
}

// Index upserts the lesson vector, keyed by video id, with the fields
// searches filter on (language, level) and the ones ranking uses
// (publication time, popularity at indexing time). Only an approved or
// published video is indexed; for any other state (blocked by a review in
// the meantime) it makes sure no vector is left and reports Indexed false.
// An upsert replaces by id, so retries and a kill -9 at any point leave one
// vector.
func (a *Activities) Index(ctx context.Context, in IndexInput) (res IndexResult, err error) {
	defer a.stage(ctx, in.VideoID, StageIndex)(&err)
	if a.Vectors == nil {
		return res, errors.New("index: this worker has no vector store")
	}
	if want := a.collection(); in.Vector.Collection != want {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("vector of %s is for collection %s, this worker indexes %s", in.VideoID, in.Vector.Collection, want),
			ErrModelMismatch, nil)
	}
	es, err := a.events()
	if err != nil {
		return res, err
	}
	ls, err := es.Lessons(ctx, []string{in.VideoID})
	if err != nil {
		return res, fmt.Errorf("index %s: %w", in.VideoID, err)
	}
	l, ok := ls[in.VideoID]
	if !ok {
		return res, temporal.NewNonRetryableApplicationError("index: no video "+in.VideoID, ErrNotPublishable, nil)
	}
	res.State = string(l.State)
	if l.State != catalog.StateApproved && l.State != catalog.StatePublished {
		if err := a.Vectors.Delete(ctx, []string{in.VideoID}); err != nil {
			return res, fmt.Errorf("index %s: remove: %w", in.VideoID, err)
		}
		activity.GetLogger(ctx).Info("not indexing: video is no longer approved", "video", in.VideoID, "state", l.State)
		return res, nil
	}
	vec, err := a.loadVector(ctx, in.Vector)
	if err != nil {
		return res, fmt.Errorf("index %s: %w", in.VideoID, err)
	}
	published := l.PublishedAt
	if published.IsZero() {
		published = in.PublishedAt
	}
	err = a.Vectors.Upsert(ctx, []vectorstore.Lesson{{
		ID: in.VideoID, Vector: vec, Language: l.Language, Level: l.Level,
		PublishedAt: published, Popularity: l.Stats.Popularity(),
	}})
	if errors.Is(err, vectorstore.ErrInvalid) {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidVector", err)
	}
	if err != nil {
		return res, fmt.Errorf("index %s: %w", in.VideoID, err)
	}
	res.Indexed = true
	return res, nil
}

// Unindex removes a video from the worker's vector collection. Whoever
// blocks a published video (a review, a report, a re-check) calls it in the
// same workflow step. Removing a missing vector is not an error, so it is
// safe to retry. Recommendations also check the catalog state, so a video
// is never served between the block and this call.
func (a *Activities) Unindex(ctx context.Context, videoID string) error {
	if a.Vectors == nil {
		return errors.New("unindex: this worker has no vector store")
	}
	if err := a.Vectors.Delete(ctx, []string{videoID}); err != nil {
		return fmt.Errorf("unindex %s: %w", videoID, err)
	}
	return nil
}

// PublishInput asks to publish one video.
type PublishInput struct {
	VideoID     string    `json:"video_id"`
	PublishedAt time.Time `json:"published_at"`
}

// PublishResult is when the video was (first) published.
type PublishResult struct {
	PublishedAt time.Time `json:"published_at"`
}

// Publish moves an approved video, now watermarked and indexed, to
// `published`. A retry keeps the first publication time. A video that is
// no longer approved fails with the non-retryable ErrNotPublishable.
func (a *Activities) Publish(ctx context.Context, in PublishInput) (res PublishResult, err error) {
	defer a.stage(ctx, in.VideoID, StagePublish)(&err)
	es, err := a.events()
	if err != nil {
		return res, err
	}
	at, err := es.Publish(ctx, in.VideoID, in.PublishedAt)
	if errors.Is(err, catalog.ErrNotPublishable) || errors.Is(err, catalog.ErrNotFound) {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrNotPublishable, err)
	}
	if err != nil {
		return res, fmt.Errorf("publish %s: %w", in.VideoID, err)
	}
	return PublishResult{PublishedAt: at}, nil
}

// PageInput asks for a page of published video ids after After.
type PageInput struct {
	After string `json:"after"`
	Limit int    `json:"limit"`
}

// PageResult is a page of ids; Next is "" after the last page.
type PageResult struct {
	IDs  []string `json:"ids"`
	Next string   `json:"next"`
}

// PublishedPage lists published videos by id, for the re-embed workflow.
func (a *Activities) PublishedPage(ctx context.Context, in PageInput) (PageResult, error) {
	es, err := a.events()
	if err != nil {
		return PageResult{}, err
	}
	ls, err := es.PublishedLessons(ctx, catalog.PublishedQuery{Order: catalog.ByID, After: in.After, Limit: in.Limit})
	if err != nil {
		return PageResult{}, fmt.Errorf("published page after %q: %w", in.After, err)
	}
	out := PageResult{IDs: make([]string, len(ls))}
	for i, l := range ls {
		out.IDs[i] = l.ID
	}
	if len(ls) > 0 && len(ls) == in.Limit {
		out.Next = ls[len(ls)-1].ID
	}
	return out, nil
}

// Package activities adapts LessonFlow's plain packages (media, models,
// moderation, catalog, blob) into Temporal activities. Each activity is a thin
// method on Activities: it reads references from blob storage, calls the plain
// package, writes results back as blobs and returns only keys, hashes and
// small summaries, so large data never enters workflow history.
package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/models"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/watermark"
	"github.com/lessonflow/lessonflow/webhook"
)

// ErrInvalidMedia is the application error type of input no retry can fix.
const ErrInvalidMedia = "InvalidMedia"

// Stage names, as shown in the API.
const (
	StageProbe         = "probe"
	StageSample        = "sample"
	StageClassify      = "classify"
	StageSampleDense   = "sample_dense"
	StageClassifyDense = "classify_dense"
	StageDecide        = "decide"
)

// DecisionKeyModeration makes the pipeline's moderation decision idempotent
// across activity retries: one record per video however often Decide runs.
const DecisionKeyModeration = "pipeline:moderation"

// Activities holds the dependencies of every activity; one per worker.
type Activities struct {
	Catalog    catalog.Store
	Blobs      blob.Store
	Classifier *models.Classifier
	Policy     *moderation.Policy
	Limits     media.Limits
	TempDir    string
	// SourceCache, with a store that has no local files, keeps the uploads
	// ffmpeg reads, so the stages of a video on one worker download it
	// once; nil downloads it for every stage.
	SourceCache *blob.Cache
	// Embedder makes lesson vectors and Vectors stores them, in the
	// collection named after the embedder (Collection); nil fails the
	// embed and index stages.
	Embedder *models.Embedder
	Vectors  vectorstore.Store
	// Reviews is the review queue's projection; nil means Catalog, when it
	// implements catalog.ReviewStore.
	Reviews catalog.ReviewStore
	// Webhook receives decision and escalation events; nil sends none.
	Webhook *webhook.Sender
	// Review holds the review queue's rules (zero fields: defaults).
	Review ReviewSettings
	// WatermarkKeys marks renditions (Current for new videos); nil fails
	// the watermark stage.
	WatermarkKeys *watermark.Keyring
	// Encode is the renditions' H.264 encode (zero fields: media.DefaultEncode).
	Encode media.EncodeOptions
	// NoMotionGate marks every square of the block grid in every frame,
	// moving or not (LESSONFLOW_WATERMARK_MOTION_GATE=off).
	NoMotionGate bool
	// SegmentSeconds is the watermark pass's resumable segment length (0: media's default).
	SegmentSeconds float64
	// SampleCheckpoint is how often the coarse sampling stage stores where
	// a retry may resume (0: DefaultSampleCheckpoint).
	SampleCheckpoint time.Duration
	// WatermarkWorkers mark frames in parallel (0: GOMAXPROCS).
	WatermarkWorkers int
}

// VideoRef names an uploaded video and where its bytes are.
type VideoRef struct {
	VideoID string `json:"video_id"`
	BlobKey string `json:"blob_key"`
}

// stage records a stage's start and, through the returned func, its end.
func (a *Activities) stage(ctx context.Context, videoID, name string) func(*error) {
	start := time.Now()
	if err := a.Catalog.StageStarted(ctx, videoID, name, start.UTC()); err != nil {
		activity.GetLogger(ctx).Warn("record stage start", "video", videoID, "stage", name, "error", err)
	}
	return func(errp *error) {
		state, msg := "succeeded", ""
		if *errp != nil {
			state, msg = "failed", (*errp).Error()
		}
		stageSeconds.WithLabelValues(name, state).Observe(time.Since(start).Seconds())
		// The stage's context may be cancelled already; the record must still land.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.Catalog.StageFinished(ctx, videoID, name, time.Now().UTC(), state, msg); err != nil {
			activity.GetLogger(ctx).Warn("record stage end", "video", videoID, "stage", name, "error", err)
		}
	}
}

// localPath gives ffmpeg a file to read: the blob itself when the store is
// local, else a copy in SourceCache or a temporary download (the returned
// func releases or removes it).
func (a *Activities) localPath(ctx context.Context, key string) (string, func(), error) {
	if lp, ok := a.Blobs.(blob.LocalPather); ok {
		p, err := lp.LocalPath(key)
		return p, func() {}, err
	}
	if a.SourceCache != nil {
		return a.SourceCache.File(ctx, key)
	}
	rc, err := a.Blobs.Get(ctx, key)
	if err != nil {
		return "", nil, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(a.TempDir, "lessonflow-src-*"+filepath.Ext(key))
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(f.Name()) }
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		cleanup()
		return "", nil, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return f.Name(), cleanup, nil
}

// Probe validates the upload with ffprobe and records what it found. Invalid
// media fails with the non-retryable ErrInvalidMedia type and its reason.
func (a *Activities) Probe(ctx context.Context, ref VideoRef) (info media.Info, err error) {
	defer a.stage(ctx, ref.VideoID, StageProbe)(&err)
	path, cleanup, err := a.localPath(ctx, ref.BlobKey)
	if err != nil {
		return info, fmt.Errorf("probe %s: %w", ref.VideoID, err)
	}
	defer cleanup()
	info, err = media.Probe(ctx, path, a.Limits)
	if err != nil {
		var inv *media.InvalidError
		if errors.As(err, &inv) {
			return info, temporal.NewNonRetryableApplicationError(inv.Reason, ErrInvalidMedia, err)
		}
		return info, fmt.Errorf("probe %s: %w", ref.VideoID, err)
	}
	if err := a.Catalog.SetMedia(ctx, ref.VideoID, info); err != nil {
		return info, fmt.Errorf("record media of %s: %w", ref.VideoID, err)
	}
	return info, nil
}

// RejectInput says why an upload was rejected.
type RejectInput struct {
	VideoID string `json:"video_id"`
	BlobKey string `json:"blob_key"`
	Reason  string `json:"reason"`
}

// Reject records an invalid upload and removes its bytes and any frames, so
// nothing half-processed stays behind; the catalog keeps the reason.
func (a *Activities) Reject(ctx context.Context, in RejectInput) error {
	_, _, err := a.Catalog.AppendDecision(ctx, catalog.Decision{
		VideoID: in.VideoID, Key: "pipeline:probe", Actor: "system:probe",
		Outcome: string(catalog.StateRejectedInvalid), Reason: in.Reason,
	})
	if err != nil {
		return fmt.Errorf("reject %s: %w", in.VideoID, err)
	}
	if err := a.Catalog.SetState(ctx, in.VideoID, catalog.StateRejectedInvalid, in.Reason); err != nil {
		return fmt.Errorf("reject %s: %w", in.VideoID, err)
	}
	return a.removeWorkFiles(ctx, in.VideoID, in.BlobKey)
}

func (a *Activities) removeWorkFiles(ctx context.Context, videoID, blobKey string) error {
	if blobKey != "" {
		if err := a.Blobs.Delete(ctx, blobKey); err != nil {
			return fmt.Errorf("remove upload of %s: %w", videoID, err)
		}
	}
	for _, prefix := range []string{framesPrefix(videoID), scoresPrefix(videoID)} {
		if err := a.Blobs.DeletePrefix(ctx, prefix); err != nil {
			return fmt.Errorf("remove work files of %s: %w", videoID, err)
		}
	}
	return nil
}

// FailInput says why processing gave up.
type FailInput struct {
	VideoID string `json:"video_id"`
	Reason  string `json:"reason"`
}

// Fail records that processing gave up after its retries. The upload is kept,
// so the video can be processed again once the cause is fixed.
func (a *Activities) Fail(ctx context.Context, in FailInput) error {
	if err := a.Catalog.SetState(ctx, in.VideoID, catalog.StateFailed, in.Reason); err != nil {
		return fmt.Errorf("mark %s failed: %w", in.VideoID, err)
	}
	return nil
}

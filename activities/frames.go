package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"go.temporal.io/sdk/activity"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
)

// maxManifestBytes bounds what an activity reads back from a manifest blob.
const maxManifestBytes = 64 << 20

// FrameSet references a stored set of sampled frames: the manifest's key and
// hash, never the frames themselves.
type FrameSet struct {
	Key     string                `json:"key"`
	SHA256  string                `json:"sha256"`
	Count   int                   `json:"count"`
	Dense   bool                  `json:"dense"`
	Sampler media.SamplerSettings `json:"sampler"`
}

// frameManifest is the stored list of a FrameSet's frames.
type frameManifest struct {
	VideoID string                `json:"video_id"`
	Dense   bool                  `json:"dense"`
	Sampler media.SamplerSettings `json:"sampler"`
	Frames  []storedFrame         `json:"frames"`
}

type storedFrame struct {
	Index  int    `json:"index"`
	PTSMS  int64  `json:"pts_ms"`
	Scene  bool   `json:"scene,omitempty"`
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

func framesPrefix(videoID string) string { return "frames/" + videoID + "/" }
func scoresPrefix(videoID string) string { return "scores/" + videoID + "/" }

func pass(dense bool) string {
	if dense {
		return "dense"
	}
	return "coarse"
}

// SampleInput asks for the coarse pass over a probed video.
type SampleInput struct {
	VideoRef
	Info media.Info `json:"info"`
}

// SampleFrames decodes the video once and stores the frames picked at scene
// changes and at the policy's minimum rate. It heartbeats the frame count; a
// retry starts over, overwriting the same keys, so it never duplicates.
func (a *Activities) SampleFrames(ctx context.Context, in SampleInput) (fs FrameSet, err error) {
	defer a.stage(ctx, in.VideoID, StageSample)(&err)
	s := a.Policy.Sampling
	fs, err = a.storeFrames(ctx, in.VideoRef, false, s, func(emit func(media.Frame) error, path string) error {
		return media.SampleFrames(ctx, path, in.Info, s, emit)
	})
	if err != nil {
		return fs, fmt.Errorf("sample frames of %s: %w", in.VideoID, err)
	}
	return fs, nil
}

// DenseInput asks for a dense re-sample around the coarse pass's suspicious frames.
type DenseInput struct {
	VideoRef
	Info   media.Info `json:"info"`
	Coarse ScoreSet   `json:"coarse"`
}

// SampleDense re-samples densely around every coarse frame whose score
// reaches a rescan threshold of the policy. Count is 0 when none does.
func (a *Activities) SampleDense(ctx context.Context, in DenseInput) (fs FrameSet, err error) {
	defer a.stage(ctx, in.VideoID, StageSampleDense)(&err)
	scores, err := a.loadScores(ctx, in.Coarse)
	if err != nil {
		return fs, fmt.Errorf("dense sample of %s: %w", in.VideoID, err)
	}
	windows := a.Policy.RescanWindows(scores.Frames, in.Info.DurationMS)
	activity.GetLogger(ctx).Info("dense re-scan", "video", in.VideoID, "windows", len(windows))
	s := a.Policy.Sampling
	fs, err = a.storeFrames(ctx, in.VideoRef, true, s, func(emit func(media.Frame) error, path string) error {
		if len(windows) == 0 {
			return nil
		}
		return media.SampleWindows(ctx, path, in.Info, windows, s, emit)
	})
	if err != nil {
		return fs, fmt.Errorf("dense sample of %s: %w", in.VideoID, err)
	}
	return fs, nil
}

// storeFrames samples the pipeline's frames and returns their manifest's
// reference.
func (a *Activities) storeFrames(ctx context.Context, ref VideoRef, dense bool, s media.SamplerSettings,
	sample func(emit func(media.Frame) error, path string) error) (FrameSet, error) {
	m, key, info, err := a.sampleToBlobs(ctx, ref, framesPrefix(ref.VideoID), dense, s, sample,
		framesSampled.WithLabelValues(pass(dense)).Inc)
	if err != nil {
		return FrameSet{}, err
	}
	return FrameSet{Key: key, SHA256: info.SHA256, Count: len(m.Frames), Dense: dense, Sampler: s}, nil
}

// sampleToBlobs runs a sampler over the video's local copy, stores each
// frame as a JPEG blob under prefix+pass/ (calling counted, if set, per
// frame), then the manifest at prefix+pass.json, and returns the manifest
// with its key and blob info.
func (a *Activities) sampleToBlobs(ctx context.Context, ref VideoRef, prefix string, dense bool, s media.SamplerSettings,
	sample func(emit func(media.Frame) error, path string) error, counted func()) (frameManifest, string, blob.Info, error) {
	dir := prefix + pass(dense) + "/"
	// A previous attempt may have stored more frames than this one will.
	if err := a.Blobs.DeletePrefix(ctx, dir); err != nil {
		return frameManifest{}, "", blob.Info{}, err
	}
	src, cleanup, err := a.localPath(ctx, ref.BlobKey)
	if err != nil {
		return frameManifest{}, "", blob.Info{}, err
	}
	defer cleanup()
	m := frameManifest{VideoID: ref.VideoID, Dense: dense, Sampler: s}
	emit := func(f media.Frame) error {
		key := fmt.Sprintf("%s%06d.jpg", dir, f.Index)
		info, err := blob.PutBytes(ctx, a.Blobs, key, f.JPEG)
		if err != nil {
			return err
		}
		m.Frames = append(m.Frames, storedFrame{Index: f.Index, PTSMS: f.PTSMS, Scene: f.Scene,
			Key: key, SHA256: info.SHA256, Width: f.Width, Height: f.Height})
		if counted != nil {
			counted()
		}
		activity.RecordHeartbeat(ctx, len(m.Frames))
		return nil
	}
	if err := sample(emit, src); err != nil {
		return frameManifest{}, "", blob.Info{}, err
	}
	key := prefix + pass(dense) + ".json"
	info, err := putJSON(ctx, a.Blobs, key, m)
	if err != nil {
		return frameManifest{}, "", blob.Info{}, err
	}
	return m, key, info, nil
}

// putJSON stores v as a JSON blob.
func putJSON(ctx context.Context, s blob.Store, key string, v any) (blob.Info, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return blob.Info{}, err
	}
	return blob.PutBytes(ctx, s, key, b)
}

// getJSON reads a JSON blob, checking it is the one a reference was made for.
func getJSON(ctx context.Context, s blob.Store, key, wantSHA256 string, v any) error {
	b, err := blob.GetBytes(ctx, s, key, maxManifestBytes)
	if err != nil {
		return err
	}
	if wantSHA256 != "" {
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != wantSHA256 {
			return fmt.Errorf("blob %s changed: sha256 %s, the reference says %s", key, got, wantSHA256)
		}
	}
	return json.Unmarshal(b, v)
}

// loadScores reads a ScoreSet's frames.
func (a *Activities) loadScores(ctx context.Context, ss ScoreSet) (scoreFile, error) {
	var f scoreFile
	if ss.Key == "" {
		return f, nil
	}
	err := getJSON(ctx, a.Blobs, ss.Key, ss.SHA256, &f)
	return f, err
}

// scoreFile is the stored per-frame scores of one FrameSet.
type scoreFile struct {
	ModelID     string                  `json:"model_id"`
	ModelSHA256 string                  `json:"model_sha256"`
	Labels      []string                `json:"labels"`
	Frames      []moderation.FrameScore `json:"frames"`
}

package activities

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

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

// DefaultSampleCheckpoint: a retried coarse sampling redoes at most about
// this much decoding (plus the SDK's heartbeat throttling).
const DefaultSampleCheckpoint = 10 * time.Second

// sampleCheckpoint is the coarse sampling's heartbeat: the manifest of the
// frames stored so far (by key and hash) and where the sampler resumes
// after them.
type sampleCheckpoint struct {
	Resume  media.SampleResume    `json:"resume"`
	Sampler media.SamplerSettings `json:"sampler"`
	Key     string                `json:"key"`
	SHA256  string                `json:"sha256"`
}

func resumePrefix(videoID string) string { return framesPrefix(videoID) + "coarse.resume/" }

// SampleFrames decodes the video once and stores the frames picked at scene
// changes and at the policy's minimum rate. Every SampleCheckpoint it stores
// the manifest so far and heartbeats where it stands; a retry reads that
// checkpoint back and resumes the decode after its last frame
// (media.SampleFramesFrom), which picks exactly what an uninterrupted run
// would. Frames past the checkpoint are stored again under the same keys,
// so nothing is duplicated.
func (a *Activities) SampleFrames(ctx context.Context, in SampleInput) (fs FrameSet, err error) {
	defer a.stage(ctx, in.VideoID, StageSample)(&err)
	s := a.Policy.Sampling
	from, resume := a.sampleCheckpoint(ctx, in.VideoID, s)
	every := a.SampleCheckpoint
	if every <= 0 {
		every = DefaultSampleCheckpoint
	}
	var cp sampleCheckpoint
	saved := time.Now()
	beat := func(m *frameManifest, f media.Frame) error {
		if time.Since(saved) >= every {
			key := fmt.Sprintf("%s%06d.json", resumePrefix(in.VideoID), len(m.Frames))
			info, err := putJSON(ctx, a.Blobs, key, m)
			if err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
			cp, saved = sampleCheckpoint{Resume: f.Resume, Sampler: s, Key: key, SHA256: info.SHA256}, time.Now()
		}
		activity.RecordHeartbeat(ctx, cp)
		return nil
	}
	fs, err = a.storeFramesFrom(ctx, in.VideoRef, s, from, beat, func(emit func(media.Frame) error, path string) error {
		return media.SampleFramesFrom(ctx, path, in.Info, s, resume, emit)
	})
	if err != nil {
		return fs, fmt.Errorf("sample frames of %s: %w", in.VideoID, err)
	}
	if err := a.Blobs.DeletePrefix(ctx, resumePrefix(in.VideoID)); err != nil {
		activity.GetLogger(ctx).Warn("sample checkpoints not removed", "video", in.VideoID, "error", err)
	}
	return fs, nil
}

// sampleCheckpoint reads the checkpoint a previous attempt heartbeated: the
// frames it stored and where to resume. Anything unusable (no details,
// details of another form, other sampler settings, a manifest that changed)
// means starting over.
func (a *Activities) sampleCheckpoint(ctx context.Context, videoID string, s media.SamplerSettings) (*frameManifest, media.SampleResume) {
	var cp sampleCheckpoint
	if !activity.IsActivity(ctx) || !activity.HasHeartbeatDetails(ctx) || activity.GetHeartbeatDetails(ctx, &cp) != nil ||
		cp.Key == "" || cp.Sampler != s || !strings.HasPrefix(cp.Key, resumePrefix(videoID)) {
		return nil, media.SampleResume{}
	}
	var m frameManifest
	if err := getJSON(ctx, a.Blobs, cp.Key, cp.SHA256, &m); err != nil || len(m.Frames) != cp.Resume.Next || m.Dense {
		activity.GetLogger(ctx).Warn("sample checkpoint unusable; starting over", "video", videoID, "key", cp.Key, "error", err)
		return nil, media.SampleResume{}
	}
	activity.GetLogger(ctx).Info("sampling resumes", "video", videoID, "frames", cp.Resume.Next, "after_ms", cp.Resume.LastPTSMS)
	return &m, cp.Resume
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
		framesSampled.WithLabelValues(pass(dense)).Inc, nil, nil)
	if err != nil {
		return FrameSet{}, err
	}
	return FrameSet{Key: key, SHA256: info.SHA256, Count: len(m.Frames), Dense: dense, Sampler: s}, nil
}

// storeFramesFrom is the coarse pass's storeFrames, continuing the frames of
// from (nil: from the start) and calling beat after each frame.
func (a *Activities) storeFramesFrom(ctx context.Context, ref VideoRef, s media.SamplerSettings, from *frameManifest,
	beat func(*frameManifest, media.Frame) error, sample func(emit func(media.Frame) error, path string) error) (FrameSet, error) {
	m, key, info, err := a.sampleToBlobs(ctx, ref, framesPrefix(ref.VideoID), false, s, sample,
		framesSampled.WithLabelValues(pass(false)).Inc, from, beat)
	if err != nil {
		return FrameSet{}, err
	}
	return FrameSet{Key: key, SHA256: info.SHA256, Count: len(m.Frames), Dense: false, Sampler: s}, nil
}

// sampleToBlobs runs a sampler over the video's local copy, stores each
// frame as a JPEG blob under prefix+pass/ (calling counted, if set, per
// frame), then the manifest at prefix+pass.json, and returns the manifest
// with its key and blob info. With from, the sampler continues a previous
// attempt whose frames from lists; beat, if set, replaces the per-frame
// heartbeat of the frame count.
func (a *Activities) sampleToBlobs(ctx context.Context, ref VideoRef, prefix string, dense bool, s media.SamplerSettings,
	sample func(emit func(media.Frame) error, path string) error, counted func(),
	from *frameManifest, beat func(*frameManifest, media.Frame) error) (frameManifest, string, blob.Info, error) {
	dir := prefix + pass(dense) + "/"
	m := frameManifest{VideoID: ref.VideoID, Dense: dense, Sampler: s}
	if from != nil {
		m.Frames = from.Frames
	} else if err := a.Blobs.DeletePrefix(ctx, dir); err != nil {
		// A previous attempt may have stored more frames than this one will.
		return frameManifest{}, "", blob.Info{}, err
	}
	src, cleanup, err := a.localPath(ctx, ref.BlobKey)
	if err != nil {
		return frameManifest{}, "", blob.Info{}, err
	}
	defer cleanup()
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
		if beat != nil {
			return beat(&m, f)
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

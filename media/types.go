package media

import (
	"errors"
	"time"
)

// Info is what ffprobe tells about a valid upload.
type Info struct {
	Format     string  `json:"format"`
	DurationMS int64   `json:"duration_ms"`
	Width      int     `json:"width"`
	Height     int     `json:"height"`
	FPS        float64 `json:"fps"`
	Codec      string  `json:"codec"`
	PixFmt     string  `json:"pix_fmt"`
	BitRate    int64   `json:"bit_rate"`
	HasAudio   bool    `json:"has_audio"`
	AudioCodec string  `json:"audio_codec,omitempty"`
}

// Limits bound what an upload may be; anything past them is rejected as invalid.
type Limits struct {
	MaxDuration time.Duration
	MaxWidth    int
	MaxHeight   int
}

// DefaultLimits: 4 hours, 4096x2160 (either orientation).
var DefaultLimits = Limits{MaxDuration: 4 * time.Hour, MaxWidth: 4096, MaxHeight: 2160}

// InvalidError marks input that no retry can fix: not a video, truncated,
// audio only, over the limits. Its Reason is shown to the uploader.
type InvalidError struct {
	Reason string
}

func (e *InvalidError) Error() string { return "invalid media: " + e.Reason }

// IsInvalid reports whether err (or anything it wraps) is an *InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// SamplerSettings say which frames are taken for classification. They are
// stored with every decision, since they shape what the model saw.
type SamplerSettings struct {
	// MinIntervalMS: at least one frame this often (default 2000).
	MinIntervalMS int64 `json:"min_interval_ms" yaml:"min_interval_ms"`
	// SceneThreshold: ffmpeg scene score (0..1) above which a frame is a scene change (default 0.3).
	SceneThreshold float64 `json:"scene_threshold" yaml:"scene_threshold"`
	// MinSceneGapMS: scene-change frames closer than this to the previous pick are skipped (default 500).
	MinSceneGapMS int64 `json:"min_scene_gap_ms" yaml:"min_scene_gap_ms"`
	// MaxFrames caps the coarse pass (default 600); the rates stretch so a long video still spans its whole length.
	MaxFrames int `json:"max_frames" yaml:"max_frames"`
	// Width of stored frames in pixels (aspect kept, default 480).
	Width int `json:"width" yaml:"width"`
	// DenseFPS and DenseWindowMS: re-sampling around suspicious frames (default 4 fps over ±3000 ms).
	DenseFPS      float64 `json:"dense_fps" yaml:"dense_fps"`
	DenseWindowMS int64   `json:"dense_window_ms" yaml:"dense_window_ms"`
	// MaxDenseWindows caps how many windows are re-sampled (default 20).
	MaxDenseWindows int `json:"max_dense_windows" yaml:"max_dense_windows"`
}

// DefaultSampler is the sampling the issue asks for by default.
var DefaultSampler = SamplerSettings{
	MinIntervalMS:   2000,
	SceneThreshold:  0.3,
	MinSceneGapMS:   500,
	MaxFrames:       600,
	Width:           480,
	DenseFPS:        4,
	DenseWindowMS:   3000,
	MaxDenseWindows: 20,
}

// Frame is one sampled picture: a JPEG and where in the video it sits.
type Frame struct {
	Index  int    // order of emission, from 0
	PTSMS  int64  // presentation timestamp in milliseconds from the start of the video
	Scene  bool   // picked because of a scene change (else by the minimum rate or a dense window)
	Width  int    // pixels
	Height int    // pixels
	JPEG   []byte // the encoded frame
	// Resume continues SampleFrames after this frame (SampleFramesFrom);
	// zero from the other samplers.
	Resume SampleResume
}

// Window is a time range [StartMS, EndMS] of a video.
type Window struct {
	StartMS int64 `json:"start_ms"`
	EndMS   int64 `json:"end_ms"`
}

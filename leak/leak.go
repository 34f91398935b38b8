// Package leak traces a leaked copy back to its video: it decodes a file (a
// video or an image) with bounded effort, runs the watermark detector over
// the frames, and looks the detected id up in the registry. The API's
// POST /v1/watermark/detect and `lessonflow watermark detect` share it.
package leak

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/watermark"
)

// Options bound the work of one detection.
type Options struct {
	MaxSide    int     // frames are scaled down to fit MaxSide x MaxSide (0: DefaultOptions')
	MaxSeconds float64 // only the first MaxSeconds of a video
	MaxFPS     int     // frames per second looked at, at most
}

// DefaultOptions: the mark survives a 50% downscale, so 1280 pixels keep
// enough of a 1080p frame; 30 s at 12 fps is 360 frames, several times what
// a strongly re-encoded copy needs, at about a second per 100 frames.
var DefaultOptions = Options{MaxSide: 1280, MaxSeconds: 30, MaxFPS: 12}

func (o Options) withDefaults() Options {
	d := DefaultOptions
	if o.MaxSide <= 0 {
		o.MaxSide = d.MaxSide
	}
	if o.MaxSeconds <= 0 {
		o.MaxSeconds = d.MaxSeconds
	}
	if o.MaxFPS <= 0 {
		o.MaxFPS = d.MaxFPS
	}
	return o
}

// Report is the answer to "whose copy is this?".
type Report struct {
	Found      bool    `json:"found"`
	Payload    string  `json:"payload,omitempty"` // 16 hex digits when found
	Confidence float64 `json:"confidence"`
	KeyID      string  `json:"key_id,omitempty"`
	Frames     int     `json:"frames"`              // frames looked at
	Transform  string  `json:"transform,omitempty"` // the geometry the mark was found under
	Media      string  `json:"media"`               // "video" or "image"
	Width      int     `json:"width"`
	Height     int     `json:"height"`
	Seconds    float64 `json:"elapsed_seconds"`
	// Video is the registry's answer for a found id; nil when it does not
	// know the id (a mark made by another deployment with the same key).
	Video *Video `json:"video"`
}

// Video is the video a registry id maps to.
type Video struct {
	ID           string        `json:"id"`
	Title        string        `json:"title"`
	TeacherID    string        `json:"teacher_id"`
	State        catalog.State `json:"state"`
	KeyID        string        `json:"key_id"`
	RegisteredAt time.Time     `json:"registered_at"`
	CreatedAt    time.Time     `json:"created_at"`
}

// Detect looks for a watermark in the file at path. Input that is not an
// image or a video yields a *media.InvalidError. Cancelling ctx (e.g. a
// deadline) stops ffmpeg.
func Detect(ctx context.Context, kr watermark.Keyring, path string, o Options) (Report, error) {
	o = o.withDefaults()
	start := time.Now()
	det := watermark.NewDetector(kr)
	det.SearchAspect() // one decision per upload: affordable (about 0.35 s more when nothing is found)
	var rep Report
	var addErr error
	vs, err := media.Decode(ctx, path, media.DecodeOptions{MaxWidth: o.MaxSide, MaxHeight: o.MaxSide,
		MaxSeconds: o.MaxSeconds, MaxFPS: o.MaxFPS}, func(f media.RawFrame) error {
		if rep.Frames == 0 {
			rep.Width, rep.Height = f.Width, f.Height
		}
		rep.Frames++
		if err := det.Add(watermark.Frame{Y: f.Y, Width: f.Width, Height: f.Height, Stride: f.Width}); err != nil {
			addErr = err
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		// A frame the detector cannot use (too small, extreme aspect): input
		// no retry fixes.
		return rep, &media.InvalidError{Reason: addErr.Error()}
	}
	if err != nil {
		return rep, err
	}
	rep.Media = "video"
	if vs.Still {
		rep.Media = "image"
	}
	res := det.Result()
	rep.Found, rep.Confidence, rep.Frames = res.Found, res.Confidence, res.Frames
	if res.Found {
		rep.Payload, rep.KeyID, rep.Transform = res.Payload.String(), res.KeyID, res.Transform
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

var errStop = errors.New("stop")

// Lookup fills rep.Video from the registry when rep found an id it knows.
func Lookup(ctx context.Context, cat catalog.Store, rep *Report) error {
	if !rep.Found {
		return nil
	}
	reg, ok := cat.(catalog.Registry)
	if !ok {
		return fmt.Errorf("catalog %T has no watermark registry", cat)
	}
	id, err := catalog.ParseWatermarkID(rep.Payload)
	if err != nil {
		return nil // the zero id is never registered
	}
	rec, err := reg.LookupWatermark(ctx, id)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := cat.GetVideo(ctx, rec.VideoID)
	if err != nil {
		return err
	}
	rep.Video = &Video{ID: v.ID, Title: v.Title, TeacherID: rec.TeacherID, State: v.State, KeyID: rec.KeyID,
		RegisteredAt: rec.CreatedAt, CreatedAt: v.CreatedAt}
	return nil
}

package catalog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/lessonflow/lessonflow/media"
)

// ErrNoRendition is returned (wrapped) by Rendition for a video that has no
// marked rendition yet.
var ErrNoRendition = errors.New("catalog: no rendition")

// WatermarkID is a registry id: the 64 information bits a watermark carries.
// It is never 0. It prints and parses as 16 hex digits.
type WatermarkID uint64

func (id WatermarkID) String() string { return fmt.Sprintf("%016x", uint64(id)) }

// ParseWatermarkID parses 16 hex digits.
func ParseWatermarkID(s string) (WatermarkID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: watermark id %q: want 16 hex digits", ErrInvalid, s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: watermark id %q: want 16 hex digits, not all zero", ErrInvalid, s)
	}
	return WatermarkID(v), nil
}

// MarshalText makes ids JSON strings of 16 hex digits (a JSON number would
// lose precision past 2^53 in most clients).
func (id WatermarkID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *WatermarkID) UnmarshalText(b []byte) error {
	v, err := ParseWatermarkID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// WatermarkRecord maps a watermark id to the video it marks.
type WatermarkRecord struct {
	ID        WatermarkID `json:"payload"`
	VideoID   string      `json:"video_id"`
	TeacherID string      `json:"teacher_id"`
	KeyID     string      `json:"key_id"`
	CreatedAt time.Time   `json:"created_at"`
}

// Rendition is the marked copy of a video that the app serves.
type Rendition struct {
	VideoID   string              `json:"video_id"`
	BlobKey   string              `json:"-"`
	SHA256    string              `json:"sha256"`
	SizeBytes int64               `json:"size_bytes"`
	Payload   WatermarkID         `json:"payload"`
	Frames    int                 `json:"frames"`
	Encode    media.EncodeOptions `json:"encode"`
	CreatedAt time.Time           `json:"created_at"`
}

// Registry is the watermark registry and the renditions. It is a separate
// interface so catalog.Store stays small; every Store backend implements it
// too (catalogtest.Run checks it).
type Registry interface {
	// RegisterWatermark gives the video a random, unique, non-zero id and
	// records it with teacherID and keyID. It is idempotent per video: if the
	// video has a record, that one is returned whatever the arguments. The
	// video must exist (ErrNotFound otherwise).
	RegisterWatermark(ctx context.Context, videoID, teacherID, keyID string) (WatermarkRecord, error)
	// LookupWatermark returns the record of id, or ErrNotFound.
	LookupWatermark(ctx context.Context, id WatermarkID) (WatermarkRecord, error)
	// WatermarkOf returns the video's record, or ErrNotFound.
	WatermarkOf(ctx context.Context, videoID string) (WatermarkRecord, error)
	// SetRendition records (or replaces) the video's rendition. Its Payload
	// must be the video's registry id (ErrInvalid otherwise).
	SetRendition(ctx context.Context, r Rendition) error
	// Rendition returns the video's rendition, ErrNoRendition if it has none,
	// or ErrNotFound if there is no such video.
	Rendition(ctx context.Context, videoID string) (Rendition, error)
}

package activities

import (
	"context"
	"fmt"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

// BackfillPageInput asks for one page of approved videos.
type BackfillPageInput struct {
	Cursor string `json:"cursor"` // "" for the first page
	Limit  int    `json:"limit"`
	// UpdatedBefore: a video touched later (a reviewer's approval, a stage
	// write) may have its own post-approval run starting; it is left alone.
	UpdatedBefore time.Time `json:"updated_before"`
}

// BackfillVideo is what the post-approval stages need of one video.
type BackfillVideo struct {
	VideoID string     `json:"video_id"`
	BlobKey string     `json:"blob_key"`
	SHA256  string     `json:"sha256"`
	Media   media.Info `json:"media"`
}

// RunningVideo is an approved video with a stage marked running: another
// run may be publishing it, unless the mark outlived any attempt (the
// workflow knows the timeouts and decides).
type RunningVideo struct {
	BackfillVideo
	Stage     string    `json:"stage"`
	StartedAt time.Time `json:"started_at"` // the latest start of a running stage
}

// BackfillPage is one page of approved videos, sorted into those the
// back-fill may publish and those it must leave alone or look at again.
type BackfillPage struct {
	Videos  []BackfillVideo `json:"videos"`
	Running []RunningVideo  `json:"running,omitempty"`
	// Recent: updated after UpdatedBefore; Unprobed: no media info to size
	// the watermark pass by. Ids only, to report them.
	Recent   []string `json:"recent,omitempty"`
	Unprobed []string `json:"unprobed,omitempty"`
	Next     string   `json:"next"` // "" after the last page
}

// ApprovedPage lists a page of videos in state approved: videos approved
// before the post-approval stages (watermark, embed, index, publish)
// existed, which nothing else will ever publish.
func (a *Activities) ApprovedPage(ctx context.Context, in BackfillPageInput) (BackfillPage, error) {
	vs, next, err := a.Catalog.ListVideos(ctx, catalog.ListQuery{State: catalog.StateApproved, Limit: in.Limit, Cursor: in.Cursor})
	if err != nil {
		return BackfillPage{}, fmt.Errorf("approved videos after %q: %w", in.Cursor, err)
	}
	page := BackfillPage{Next: next}
	for _, v := range vs {
		stage, started := running(v.Stages)
		switch {
		case v.UpdatedAt.After(in.UpdatedBefore):
			page.Recent = append(page.Recent, v.ID)
		case v.Media == nil:
			page.Unprobed = append(page.Unprobed, v.ID)
		case stage != "":
			page.Running = append(page.Running, RunningVideo{BackfillVideo: backfillVideo(v), Stage: stage, StartedAt: started})
		default:
			page.Videos = append(page.Videos, backfillVideo(v))
		}
	}
	return page, nil
}

func backfillVideo(v catalog.Video) BackfillVideo {
	return BackfillVideo{VideoID: v.ID, BlobKey: v.BlobKey, SHA256: v.SHA256, Media: *v.Media}
}

// running is the running stage that started last, if any.
func running(stages []catalog.Stage) (name string, started time.Time) {
	for _, s := range stages {
		if s.State == catalog.StageRunning && s.StartedAt != nil && !s.StartedAt.Before(started) {
			name, started = s.Name, *s.StartedAt
		}
	}
	return name, started
}

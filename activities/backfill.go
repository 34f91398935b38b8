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

// BackfillPage is one page of approved videos, sorted into those the
// back-fill may publish and those it must leave alone.
type BackfillPage struct {
	Videos []BackfillVideo `json:"videos"`
	// Busy: a stage is running (another run is publishing it); Recent:
	// updated after UpdatedBefore; Unprobed: no media info to size the
	// watermark pass by. Ids only, to report them.
	Busy     []string `json:"busy,omitempty"`
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
		switch {
		case running(v.Stages):
			page.Busy = append(page.Busy, v.ID)
		case v.UpdatedAt.After(in.UpdatedBefore):
			page.Recent = append(page.Recent, v.ID)
		case v.Media == nil:
			page.Unprobed = append(page.Unprobed, v.ID)
		default:
			page.Videos = append(page.Videos, BackfillVideo{VideoID: v.ID, BlobKey: v.BlobKey, SHA256: v.SHA256, Media: *v.Media})
		}
	}
	return page, nil
}

func running(stages []catalog.Stage) bool {
	for _, s := range stages {
		if s.State == catalog.StageRunning {
			return true
		}
	}
	return false
}

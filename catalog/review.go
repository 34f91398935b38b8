package catalog

import (
	"context"

	"github.com/lessonflow/lessonflow/review"
)

// ReviewQuery selects a page of review items, highest priority first.
type ReviewQuery struct {
	State   review.State // "" for every state
	VideoID string       // "" for every video
	Limit   int          // clamped like ListQuery.Limit
	Cursor  string
}

// ReviewStore is the review queue's projection. The review workflow is the
// source of truth and writes every new item version here; the API reads.
// It is a separate interface so catalog.Store stays small. Check it with
// catalogtest.RunReview.
type ReviewStore interface {
	// SaveReviewItem stores it unless the stored row has a higher version
	// (a retried or late write of an older version is a no-op). The video
	// must exist (ErrNotFound otherwise).
	SaveReviewItem(ctx context.Context, it review.Item) error
	// GetReviewItem returns the item, or ErrNotFound.
	GetReviewItem(ctx context.Context, id string) (review.Item, error)
	// ListReviewItems returns a page, highest priority first (by
	// review.Rank, so waiting time counts), and the next page's cursor ("" after the last).
	// Priority is filled in as of now.
	ListReviewItems(ctx context.Context, q ReviewQuery) ([]review.Item, string, error)
	// UploaderHistory counts a teacher's videos and how many are blocked.
	UploaderHistory(ctx context.Context, teacherID string) (blocked, total int, err error)
	// Audience is how many distinct users viewed the lesson (from the
	// events the app sent; 0 for a lesson nobody has seen).
	Audience(ctx context.Context, videoID string) (int, error)
}

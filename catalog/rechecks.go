package catalog

import (
	"context"
	"encoding/json"
	"time"
)

// Re-check batch states.
const (
	RecheckRunning   = "running"
	RecheckCompleted = "completed"
	RecheckFailed    = "failed"
)

// Where a re-check took a video's frames from.
const (
	FramesStored    = "stored"    // the pipeline's stored frames (and scores, when the model is the same)
	FramesResampled = "resampled" // sampled again from the upload, in shadow
	FramesPartial   = "partial"   // stored frames that do not cover every window the new policy asks for, and no upload to fill the gap
)

// RecheckBatch is one run of the re-check: every video in some states,
// re-classified in shadow under one policy.
type RecheckBatch struct {
	ID            string     `json:"id"`
	PolicyVersion string     `json:"policy_version"`
	PolicySHA256  string     `json:"policy_sha256"`
	PolicyKey     string     `json:"-"`
	ModelID       string     `json:"model_id"`
	States        []State    `json:"states"`
	RequestedBy   string     `json:"requested_by"`
	State         string     `json:"state"` // RecheckRunning, RecheckCompleted or RecheckFailed
	Error         string     `json:"error"`
	CreatedAt     time.Time  `json:"created_at"`
	FinishedAt    *time.Time `json:"finished_at"`
}

// RecheckResult is the diff for one video: what it is and what the new policy
// would decide. Seq orders a batch's results.
type RecheckResult struct {
	BatchID          string          `json:"batch_id"`
	VideoID          string          `json:"video_id"`
	Seq              int64           `json:"seq"`
	VideoState       State           `json:"video_state"`
	OldOutcome       string          `json:"old_outcome"`
	OldPolicyVersion string          `json:"old_policy_version"`
	OldModelSHA256   string          `json:"old_model_sha256"`
	NewOutcome       string          `json:"new_outcome"`
	NewReason        string          `json:"new_reason"`
	ModelID          string          `json:"model_id"`
	ModelSHA256      string          `json:"model_sha256"`
	PolicyVersion    string          `json:"policy_version"`
	Changed          bool            `json:"changed"`
	Frames           string          `json:"frames"` // FramesStored, FramesResampled or FramesPartial
	Segments         json.RawMessage `json:"segments"`
	Scores           json.RawMessage `json:"scores"`
	Error            string          `json:"error"`
	ReviewItemID     string          `json:"review_item_id"`
	CreatedAt        time.Time       `json:"created_at"`
}

// RecheckCounts sums up a batch's results.
type RecheckCounts struct {
	Processed    int `json:"processed"`
	Changed      int `json:"changed"`
	Errors       int `json:"errors"`
	SentToReview int `json:"sent_to_review"`
}

// RecheckResultQuery selects a page of a batch's results, in the order they
// were recorded.
type RecheckResultQuery struct {
	BatchID     string
	ChangedOnly bool
	Limit       int    // clamped like ListQuery.Limit
	Cursor      string // "" for the first page
}

// RecheckStore keeps re-check batches and their per-video diffs. It sits
// beside Store (the SQLite catalog implements both) so the pipeline's
// interface stays small. Check it with catalogtest.RunRechecks.
type RecheckStore interface {
	// CreateRecheckBatch inserts b in RecheckRunning (zero CreatedAt means
	// now) and returns it as stored, true; an existing batch with b.ID is
	// returned as is, with false.
	CreateRecheckBatch(ctx context.Context, b RecheckBatch) (RecheckBatch, bool, error)
	// GetRecheckBatch returns a batch or ErrNotFound.
	GetRecheckBatch(ctx context.Context, id string) (RecheckBatch, error)
	// RecheckBatchByPolicy returns the newest batch that ran a policy
	// version, or ErrNotFound.
	RecheckBatchByPolicy(ctx context.Context, policyVersion string) (RecheckBatch, error)
	// FinishRecheckBatch sets a batch's final state (RecheckCompleted or
	// RecheckFailed) with errMsg; finishing again overwrites.
	FinishRecheckBatch(ctx context.Context, id, state, errMsg string) error
	// RecordRecheckResult stores r (Seq is assigned; zero CreatedAt means
	// now) and returns it, true. If the batch already has a result for the
	// video, it returns that one and false, whatever r holds: a retried
	// re-check keeps the first verdict. The batch and video must exist.
	RecordRecheckResult(ctx context.Context, r RecheckResult) (RecheckResult, bool, error)
	// GetRecheckResult returns a batch's result for a video, or ErrNotFound.
	GetRecheckResult(ctx context.Context, batchID, videoID string) (RecheckResult, error)
	// SetRecheckReviewItem records the review item a changed decision went to.
	SetRecheckReviewItem(ctx context.Context, batchID, videoID, itemID string) error
	// RecheckResults returns a page of a batch's results and the next cursor
	// ("" after the last page); ErrNotFound for an unknown batch, ErrBadCursor
	// for a cursor it did not issue.
	RecheckResults(ctx context.Context, q RecheckResultQuery) ([]RecheckResult, string, error)
	// RecheckCounts sums up a batch's results; ErrNotFound for an unknown batch.
	RecheckCounts(ctx context.Context, batchID string) (RecheckCounts, error)
}

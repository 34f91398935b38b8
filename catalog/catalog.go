// Package catalog owns the system of record for videos: metadata, state,
// per-stage status and the append-only decision log. It does not depend on
// Temporal's history retention.
//
// Every write is idempotent or keyed so that a Temporal activity may be
// retried after a crash at any point without producing a duplicate record:
// CreateVideo is keyed by video ID, AppendDecision by (video ID, key), and
// the remaining writes set absolute values.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/lessonflow/lessonflow/media"
)

var (
	// ErrNotFound is returned (wrapped) when the video does not exist.
	ErrNotFound = errors.New("catalog: not found")
	// ErrBadCursor is returned (wrapped) by ListVideos for a cursor it did not issue.
	ErrBadCursor = errors.New("catalog: bad cursor")
	// ErrInvalid is returned (wrapped) for arguments no retry can fix: empty
	// IDs or keys, unknown states, malformed JSON.
	ErrInvalid = errors.New("catalog: invalid argument")
	// ErrHasDecisions is returned (wrapped) by DeleteVideo for a video with
	// decisions: the decision log is append-only.
	ErrHasDecisions = errors.New("catalog: video has decisions")
)

// State is where a video is in its life.
type State string

const (
	StateProcessing      State = "processing"       // in the pipeline
	StateRejectedInvalid State = "rejected_invalid" // not a usable video; Error says why
	StateNeedsReview     State = "needs_review"     // a human must decide
	StateApproved        State = "approved"
	StateBlocked         State = "blocked"
	StateFailed          State = "failed" // the pipeline gave up; Error says why
	StatePublished       State = "published"
)

// States lists every State.
var States = []State{StateProcessing, StateRejectedInvalid, StateNeedsReview, StateApproved, StateBlocked, StateFailed, StatePublished}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Stage states.
const (
	StageRunning   = "running"
	StageSucceeded = "succeeded"
	StageFailed    = "failed"
	StageSkipped   = "skipped"
)

// StagePublish is the pipeline's last stage, which EventStore.Publish
// finishes together with the state change.
const StagePublish = "publish"

// Video is one upload and everything known about it. Times are UTC with
// microsecond precision (what every backend can store).
type Video struct {
	ID          string      `json:"id"`
	SHA256      string      `json:"sha256"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Level       int         `json:"level"`
	Language    string      `json:"language"`
	Tags        []string    `json:"tags"`
	TeacherID   string      `json:"teacher_id"`
	State       State       `json:"state"`
	Error       string      `json:"error"`
	BlobKey     string      `json:"-"`
	SizeBytes   int64       `json:"size_bytes"`
	Media       *media.Info `json:"media"` // nil until probed
	Stages      []Stage     `json:"stages"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
}

// Stage is the status of one pipeline step of a video.
type Stage struct {
	Name       string     `json:"name"`
	State      string     `json:"state"` // StageRunning, StageSucceeded, StageFailed or StageSkipped
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Error      string     `json:"error"`
	Attempts   int        `json:"attempts"` // how many times the stage started
}

// Decision is one entry of a video's append-only decision log: who or what
// decided, and everything needed to reproduce or audit it.
type Decision struct {
	Seq     int64  `json:"seq"`
	VideoID string `json:"video_id"`
	// Key makes appends idempotent per video, e.g. the workflow run and
	// activity that decided, so a retried activity records one decision.
	Key           string                 `json:"-"`
	Actor         string                 `json:"actor"`
	Outcome       string                 `json:"outcome"`
	Reason        string                 `json:"reason"`
	ModelID       string                 `json:"model_id"`
	ModelSHA256   string                 `json:"model_sha256"`
	PolicyVersion string                 `json:"policy_version"`
	Sampler       *media.SamplerSettings `json:"sampler"`
	Segments      json.RawMessage        `json:"segments"` // opaque, owned by package moderation
	Scores        json.RawMessage        `json:"scores"`   // opaque, owned by package moderation
	CreatedAt     time.Time              `json:"created_at"`
}

// ListQuery selects a page of videos, newest first.
type ListQuery struct {
	State  State  // only videos in this state; "" for all
	Limit  int    // page size, clamped to [1, MaxLimit]; <= 0 means DefaultLimit
	Cursor string // "" for the first page, else the cursor of the previous page
}

// Page sizes of ListVideos.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// Store is the catalog. Implementations are safe for concurrent use, also by
// several processes sharing one database. Check it with catalogtest.Run.
type Store interface {
	// CreateVideo inserts v in StateProcessing (v.State, v.Error and v.Stages
	// are ignored; zero CreatedAt means now) and returns it as stored, true.
	// If a video with v.ID exists it returns that one and false.
	CreateVideo(ctx context.Context, v Video) (Video, bool, error)
	// GetVideo returns the video with its stages, or ErrNotFound.
	GetVideo(ctx context.Context, id string) (Video, error)
	// ListVideos returns a page of videos (with stages), newest first, and the
	// cursor of the next page ("" after the last one). A cursor not issued by
	// ListVideos gives ErrBadCursor.
	ListVideos(ctx context.Context, q ListQuery) ([]Video, string, error)
	// SetMedia records what probing found.
	SetMedia(ctx context.Context, id string, info media.Info) error
	// SetState moves the video to state, with reason as its Error ("" clears
	// it). Transitions are not policed here: the workflow owns them.
	SetState(ctx context.Context, id string, state State, reason string) error
	// ConcludeStage moves the video to state and, in the same write,
	// finishes its stage as succeeded if it is running, so no reader sees
	// the outcome of a stage that still says running. Unknown states give
	// ErrInvalid, a missing video ErrNotFound.
	ConcludeStage(ctx context.Context, id, stage string, state State) error
	// StageStarted marks stage running at at (zero means now), creating it on
	// first start, counting the attempt and clearing a previous finish.
	StageStarted(ctx context.Context, id, stage string, at time.Time) error
	// StageFinished marks stage finished at at (zero means now) in state
	// StageSucceeded, StageFailed or StageSkipped with errMsg. A stage that
	// never started (e.g. skipped) is created with no attempts.
	StageFinished(ctx context.Context, id, stage string, at time.Time, state, errMsg string) error
	// AppendDecision appends d (Seq is assigned; zero CreatedAt means now)
	// and returns it as stored, true. If the video already has a decision
	// with d.Key, it returns that one and false, whatever d holds.
	AppendDecision(ctx context.Context, d Decision) (Decision, bool, error)
	// Decisions returns the video's decisions, oldest first, or ErrNotFound.
	Decisions(ctx context.Context, videoID string) ([]Decision, error)
	// DeleteVideo removes a video and its stages, to roll back a half-done
	// upload. A missing video is not an error; one with decisions gives
	// ErrHasDecisions.
	DeleteVideo(ctx context.Context, id string) error
	// BlobKeyInUse reports whether any video's upload is stored under key,
	// so a sweeper can remove uploads that a crash left without a video.
	BlobKeyInUse(ctx context.Context, key string) (bool, error)
	// Close releases the store; calling it again is a no-op.
	Close() error
}

// Backend is every catalog interface at once, what the API and worker
// processes open; SQLite and Postgres implement it all.
type Backend interface {
	Store
	EventStore
	ReviewStore
	RecheckStore
	Registry
	DecisionPager
}

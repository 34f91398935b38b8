package catalog

import (
	"context"
	"errors"
	"math"
	"time"
)

// ErrNotPublishable is returned (wrapped) by Publish for a video that is
// neither approved nor already published (e.g. blocked by a review meanwhile).
var ErrNotPublishable = errors.New("catalog: video is not approved")

// EventType is what a user did with a lesson.
type EventType string

// Event types the app reports.
const (
	EventView     EventType = "view"
	EventComplete EventType = "complete"
	EventLike     EventType = "like"
	EventDislike  EventType = "dislike"
	EventSkip     EventType = "skip"
)

// EventTypes lists every EventType.
var EventTypes = []EventType{EventView, EventComplete, EventLike, EventDislike, EventSkip}

// Valid reports whether t is one of EventTypes.
func (t EventType) Valid() bool {
	for _, v := range EventTypes {
		if t == v {
			return true
		}
	}
	return false
}

// Event is one thing a user did with a lesson, as the app reported it.
// Times are kept to the microsecond, in UTC.
type Event struct {
	UserID       string
	ID           string // the client's event id: unique per user
	LessonID     string
	Type         EventType
	At           time.Time
	WatchSeconds float64 // kept to the millisecond
	RecID        string  // the recommendation the lesson was opened from, if any
}

// EventOutcome is what RecordEvents did with one event.
type EventOutcome int

const (
	// EventCreated: the event is new and was stored.
	EventCreated EventOutcome = iota
	// EventDuplicate: the user already sent an event with this id; nothing changed.
	EventDuplicate
	// EventUnknownLesson: no published lesson has the id; nothing stored.
	EventUnknownLesson
)

// LessonStats counts distinct users per event type on one lesson.
type LessonStats struct {
	Views, Completes, Likes, Dislikes, Skips int
}

// Popularity folds the counts into one non-negative number: completions and
// likes count more than views, dislikes and skips count against.
func (s LessonStats) Popularity() float64 {
	p := float64(s.Views) + 3*float64(s.Completes) + 3*float64(s.Likes) - 2*float64(s.Dislikes) - float64(s.Skips)
	return math.Max(0, p)
}

// Lesson is what recommendations need of a video.
type Lesson struct {
	ID          string
	Title       string
	Language    string
	Level       int
	State       State
	DurationMS  int64     // 0 until probed
	PublishedAt time.Time // zero if never published
	Stats       LessonStats
}

// LessonOrder orders PublishedLessons.
type LessonOrder int

const (
	// NewestFirst: by publication time, newest first.
	NewestFirst LessonOrder = iota
	// MostPopularFirst: by LessonStats.Popularity, then newest first.
	MostPopularFirst
	// ByID: by id ascending, for walking every published lesson (After).
	ByID
)

// PublishedQuery selects published lessons.
type PublishedQuery struct {
	Language           string // "" for every language
	LevelMin, LevelMax int    // 0 leaves a side unbounded
	Order              LessonOrder
	Limit              int    // clamped to [1, MaxLimit]; <= 0 means DefaultLimit
	After              string // with ByID: only ids greater than this
}

// Limits of the event store.
const (
	// MaxEventBatch bounds one RecordEvents call (one transaction).
	MaxEventBatch = 500
	// MaxLessonLookup bounds the ids of one Lessons call.
	MaxLessonLookup = 1000
	// MaxUserEvents bounds one UserEvents call.
	MaxUserEvents = 1000
)

// EventStore holds what users did and what is published: the inputs of
// recommendations. The SQLite catalog implements it; check a backend with
// catalogtest.RunEvents.
type EventStore interface {
	// RecordEvents stores a batch (at most MaxEventBatch) in one
	// transaction and returns one outcome per event. Events are keyed by
	// (UserID, ID): a repeated id is EventDuplicate and changes nothing,
	// whatever the repeat holds. An event on a lesson that is not published
	// is EventUnknownLesson and is not stored. Popularity counts are updated
	// in the same transaction, counting each user once per lesson and type.
	// Malformed events (empty ids, unknown type, zero time) fail the whole
	// batch with ErrInvalid before anything is written.
	RecordEvents(ctx context.Context, events []Event) ([]EventOutcome, error)
	// UserEvents returns up to limit (1..MaxUserEvents) of the user's
	// events, newest first (by At, then by arrival).
	UserEvents(ctx context.Context, userID string, limit int) ([]Event, error)
	// Lessons looks up to MaxLessonLookup videos by id, in any state; ids
	// that do not exist are absent from the map.
	Lessons(ctx context.Context, ids []string) (map[string]Lesson, error)
	// Publish moves an approved video to StatePublished and records at as
	// its publication time. In the same write it finishes the video's
	// running StagePublish as succeeded, so no reader sees a published
	// video whose stages are still running. Publishing a published video
	// again changes nothing and returns the first publication time; any
	// other state gives ErrNotPublishable, a missing video ErrNotFound.
	Publish(ctx context.Context, id string, at time.Time) (time.Time, error)
	// PublishedLessons lists published lessons matching q.
	PublishedLessons(ctx context.Context, q PublishedQuery) ([]Lesson, error)
}

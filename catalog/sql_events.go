package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

var _ EventStore = (*SQLite)(nil)

// statColumn is the lesson_stats column an event type counts in.
var statColumn = map[EventType]string{
	EventView: "views", EventComplete: "completes", EventLike: "likes", EventDislike: "dislikes", EventSkip: "skips",
}

func validateEvent(e Event) error {
	switch {
	case e.UserID == "" || e.ID == "" || e.LessonID == "":
		return fmt.Errorf("%w: event needs a user id, an event id and a lesson id", ErrInvalid)
	case !e.Type.Valid():
		return fmt.Errorf("%w: event %q: unknown type %q", ErrInvalid, e.ID, e.Type)
	case e.At.IsZero():
		return fmt.Errorf("%w: event %q: no time", ErrInvalid, e.ID)
	case math.IsNaN(e.WatchSeconds) || math.IsInf(e.WatchSeconds, 0) || e.WatchSeconds < 0:
		return fmt.Errorf("%w: event %q: watch seconds %v", ErrInvalid, e.ID, e.WatchSeconds)
	}
	return nil
}

// RecordEvents implements EventStore.
func (s *sqlStore) RecordEvents(ctx context.Context, events []Event) ([]EventOutcome, error) {
	if len(events) > MaxEventBatch {
		return nil, fmt.Errorf("record events: %w: batch of %d, max %d", ErrInvalid, len(events), MaxEventBatch)
	}
	for _, e := range events {
		if err := validateEvent(e); err != nil {
			return nil, fmt.Errorf("record events: %w", err)
		}
	}
	out := make([]EventOutcome, len(events))
	now := time.Now().UnixMicro()
	err := s.write(ctx, func(tx querier) error {
		published := map[string]bool{}
		for i, e := range events {
			ok, seen := published[e.LessonID]
			if !seen {
				var state string
				err := tx.QueryRowContext(ctx, `SELECT state FROM videos WHERE id = ?`, e.LessonID).Scan(&state)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				ok = state == string(StatePublished)
				published[e.LessonID] = ok
			}
			if !ok {
				out[i] = EventUnknownLesson
				continue
			}
			// Counted once per user, lesson and type: look before inserting.
			var repeat int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_events
				WHERE user_id = ? AND lesson_id = ? AND type = ?`, e.UserID, e.LessonID, e.Type).Scan(&repeat); err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO user_events
				(user_id, event_id, lesson_id, type, at, watch_ms, rec_id, received_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, event_id) DO NOTHING`,
				e.UserID, e.ID, e.LessonID, e.Type, e.At.UnixMicro(), int64(math.Round(e.WatchSeconds*1000)), e.RecID, now)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				out[i] = EventDuplicate
				continue
			}
			out[i] = EventCreated
			if repeat > 0 {
				continue
			}
			col := statColumn[e.Type] // a fixed column name, not input
			if _, err := tx.ExecContext(ctx, `INSERT INTO lesson_stats (lesson_id, `+col+`) VALUES (?, 1)
				ON CONFLICT (lesson_id) DO UPDATE SET `+col+` = lesson_stats.`+col+` + 1`, e.LessonID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record %d events: %w", len(events), err)
	}
	return out, nil
}

// UserEvents implements EventStore.
func (s *sqlStore) UserEvents(ctx context.Context, userID string, limit int) ([]Event, error) {
	if limit < 1 || limit > MaxUserEvents {
		return nil, fmt.Errorf("events of %s: %w: limit %d, want 1 to %d", userID, ErrInvalid, limit, MaxUserEvents)
	}
	out, err := queryAll(ctx, s.reader(), func(sc rowScanner) (Event, error) {
		e := Event{UserID: userID}
		var at, watch int64
		if err := sc.Scan(&e.ID, &e.LessonID, &e.Type, &at, &watch, &e.RecID); err != nil {
			return Event{}, err
		}
		e.At = time.UnixMicro(at).UTC()
		e.WatchSeconds = float64(watch) / 1000
		return e, nil
	}, `SELECT event_id, lesson_id, type, at, watch_ms, rec_id FROM user_events
		WHERE user_id = ? ORDER BY at DESC, received_at DESC, event_id LIMIT ?`, userID, limit)
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", userID, err)
	}
	return out, nil
}

// lessonCols reads a Lesson from videos v, publications p and lesson_stats
// s (lessonFrom); durationMS is the dialect's read of media.duration_ms.
func lessonCols(durationMS string) string {
	return `v.id, v.title, v.language, v.level, v.state, COALESCE(` + durationMS + `, 0),
	p.published_at, COALESCE(s.views, 0), COALESCE(s.completes, 0), COALESCE(s.likes, 0), COALESCE(s.dislikes, 0), COALESCE(s.skips, 0)`
}

// durationMS reads media.duration_ms of videos v.
func (s *sqlStore) durationMS() string {
	if s.pg {
		return `CAST(CAST(v.media AS jsonb) ->> 'duration_ms' AS BIGINT)`
	}
	return `json_extract(v.media, '$.duration_ms')`
}

const lessonFrom = ` FROM videos v LEFT JOIN publications p ON p.video_id = v.id LEFT JOIN lesson_stats s ON s.lesson_id = v.id`

func scanLesson(sc rowScanner) (Lesson, error) {
	var (
		l         Lesson
		published sql.NullInt64
	)
	err := sc.Scan(&l.ID, &l.Title, &l.Language, &l.Level, &l.State, &l.DurationMS, &published,
		&l.Stats.Views, &l.Stats.Completes, &l.Stats.Likes, &l.Stats.Dislikes, &l.Stats.Skips)
	if err != nil {
		return Lesson{}, err
	}
	if published.Valid {
		l.PublishedAt = time.UnixMicro(published.Int64).UTC()
	}
	return l, nil
}

// Lessons implements EventStore.
func (s *sqlStore) Lessons(ctx context.Context, ids []string) (map[string]Lesson, error) {
	if len(ids) > MaxLessonLookup {
		return nil, fmt.Errorf("look up lessons: %w: %d ids, max %d", ErrInvalid, len(ids), MaxLessonLookup)
	}
	out := make(map[string]Lesson, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// One statement text whatever the count (the ids travel as one JSON
	// array), and one primary-key descent per id in lesson_meta (migration
	// 0006) plus one in the covering index of the state: the state, which
	// gates what is recommended, is read from videos itself.
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d lessons: %w", len(ids), err)
	}
	query := `SELECT m.id, m.title, m.language, m.level, v.state, m.duration_ms,
		m.published_at, m.views, m.completes, m.likes, m.dislikes, m.skips
		FROM lesson_meta m JOIN videos v INDEXED BY videos_id_state ON v.id = m.id
		WHERE m.id IN (SELECT value FROM json_each(?))`
	if s.pg { // lesson_meta is a view there (migrations/postgres/0006)
		query = `SELECT m.id, m.title, m.language, m.level, m.state, m.duration_ms,
		m.published_at, m.views, m.completes, m.likes, m.dislikes, m.skips
		FROM lesson_meta m WHERE m.id IN (SELECT jsonb_array_elements_text(CAST(? AS jsonb)))`
	}
	ls, err := queryAll(ctx, s.reader(), scanLesson, query, string(idsJSON))
	if err != nil {
		return nil, fmt.Errorf("look up %d lessons: %w", len(ids), err)
	}
	for _, l := range ls {
		out[l.ID] = l
	}
	return out, nil
}

// Publish implements EventStore.
func (s *sqlStore) Publish(ctx context.Context, id string, at time.Time) (time.Time, error) {
	if id == "" {
		return time.Time{}, fmt.Errorf("publish: %w: empty id", ErrInvalid)
	}
	var first time.Time
	err := s.write(ctx, func(tx querier) error {
		var state State
		err := tx.QueryRowContext(ctx, `SELECT state FROM videos WHERE id = ?`, id).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if state != StateApproved && state != StatePublished {
			return fmt.Errorf("%w (state %s)", ErrNotPublishable, state)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO publications (video_id, published_at) VALUES (?, ?)
			ON CONFLICT (video_id) DO NOTHING`, id, nowOr(at).UnixMicro()); err != nil {
			return err
		}
		var us int64
		if err := tx.QueryRowContext(ctx, `SELECT published_at FROM publications WHERE video_id = ?`, id).Scan(&us); err != nil {
			return err
		}
		first = time.UnixMicro(us).UTC()
		if state == StatePublished {
			return nil
		}
		now := nowOr(time.Time{}).UnixMicro()
		if _, err := tx.ExecContext(ctx, `UPDATE stages SET state = ?, finished_at = ?, error = '' WHERE video_id = ? AND name = ? AND state = ?`,
			StageSucceeded, now, id, StagePublish, StageRunning); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE videos SET state = ?, error = '', updated_at = ? WHERE id = ?`,
			StatePublished, now, id)
		return err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("publish %s: %w", id, err)
	}
	return first, nil
}

// PublishedLessons implements EventStore.
func (s *sqlStore) PublishedLessons(ctx context.Context, q PublishedQuery) ([]Lesson, error) {
	var where conditions
	where.add("v.state = ?", StatePublished)
	if q.Language != "" {
		where.add("v.language = ?", q.Language)
	}
	if q.LevelMin > 0 {
		where.add("v.level >= ?", q.LevelMin)
	}
	if q.LevelMax > 0 {
		where.add("v.level <= ?", q.LevelMax)
	}
	var order string
	switch q.Order {
	case NewestFirst:
		order = "p.published_at DESC, v.id"
	case MostPopularFirst:
		// Popularity as LessonStats.Popularity computes it.
		order = `MAX(0, COALESCE(s.views, 0) + 3*COALESCE(s.completes, 0) + 3*COALESCE(s.likes, 0)
			- 2*COALESCE(s.dislikes, 0) - COALESCE(s.skips, 0)) DESC, p.published_at DESC, v.id`
		if s.pg { // MAX of two values is GREATEST there
			order = "GREATEST" + strings.TrimPrefix(order, "MAX")
		}
	case ByID:
		order = "v.id"
		if q.After != "" {
			where.add("v.id > ?", q.After)
		}
	default:
		return nil, fmt.Errorf("published lessons: %w: order %d", ErrInvalid, q.Order)
	}
	out, err := queryAll(ctx, s.reader(), scanLesson, `SELECT `+lessonCols(s.durationMS())+lessonFrom+where.clause()+
		` ORDER BY `+order+` LIMIT ?`, append(where.args, clampLimit(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("published lessons: %w", err)
	}
	return out, nil
}

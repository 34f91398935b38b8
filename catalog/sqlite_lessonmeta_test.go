package catalog_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

// joinedLessons is what Lessons answered before migration 0006: the joins
// over the source tables. lesson_meta (kept by triggers) must always agree.
func joinedLessons(t *testing.T, db *sql.DB) map[string]catalog.Lesson {
	t.Helper()
	rows, err := db.Query(`SELECT v.id, v.title, v.language, v.level, v.state, COALESCE(json_extract(v.media, '$.duration_ms'), 0),
		p.published_at, COALESCE(s.views, 0), COALESCE(s.completes, 0), COALESCE(s.likes, 0), COALESCE(s.dislikes, 0), COALESCE(s.skips, 0)
		FROM videos v LEFT JOIN publications p ON p.video_id = v.id LEFT JOIN lesson_stats s ON s.lesson_id = v.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]catalog.Lesson{}
	for rows.Next() {
		var l catalog.Lesson
		var pub sql.NullInt64
		if err := rows.Scan(&l.ID, &l.Title, &l.Language, &l.Level, &l.State, &l.DurationMS, &pub,
			&l.Stats.Views, &l.Stats.Completes, &l.Stats.Likes, &l.Stats.Dislikes, &l.Stats.Skips); err != nil {
			t.Fatal(err)
		}
		if pub.Valid {
			l.PublishedAt = time.UnixMicro(pub.Int64).UTC()
		}
		out[l.ID] = l
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSQLiteLessonsFollowEveryWrite drives every write that feeds Lessons
// (create, probe, publish, events, block, a raw title change and delete) and
// checks after each that Lessons equals the joins over the source tables.
func TestSQLiteLessonsFollowEveryWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s := openAt(t, path)
	raw := rawDB(t, path)
	ids := []string{"a", "b", "c", "missing"}
	check := func(step string) {
		t.Helper()
		got, err := s.Lessons(ctx, ids)
		if err != nil {
			t.Fatalf("%s: Lessons: %v", step, err)
		}
		want := joinedLessons(t, raw)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Lessons =\n%+v\nwant (joins)\n%+v", step, got, want)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, id := range ids[:3] {
		_, _, err := s.CreateVideo(ctx, catalog.Video{ID: id, SHA256: fmt.Sprintf("%064d", i), Title: "Lesson " + id,
			Level: i + 1, Language: "en", TeacherID: "t", BlobKey: "uploads/" + id, SizeBytes: 1, CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
	}
	check("created")
	if err := s.SetMedia(ctx, "a", media.Info{Format: "mp4", DurationMS: 61_000}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMedia(ctx, "b", media.Info{Format: "mp4", DurationMS: 5_000}); err != nil {
		t.Fatal(err)
	}
	check("probed")
	for _, id := range []string{"a", "b"} {
		if err := s.SetState(ctx, id, catalog.StateApproved, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Publish(ctx, id, now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	check("published")
	var events []catalog.Event
	for i, typ := range catalog.EventTypes {
		events = append(events, catalog.Event{UserID: "u1", ID: fmt.Sprint("e", i), LessonID: "a", Type: typ, At: now},
			catalog.Event{UserID: "u2", ID: fmt.Sprint("e", i), LessonID: "a", Type: typ, At: now},
			catalog.Event{UserID: "u1", ID: fmt.Sprint("f", i), LessonID: "b", Type: typ, At: now})
	}
	if _, err := s.RecordEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	check("events")
	if got, _ := s.Lessons(ctx, []string{"a"}); got["a"].Stats.Views != 2 || got["a"].DurationMS != 61_000 || got["a"].PublishedAt.IsZero() {
		t.Fatalf("lesson a = %+v; want 2 views, 61 s, a publication time", got["a"])
	}
	// The gate: a block is seen at once, whatever lesson_meta holds.
	if err := s.SetState(ctx, "b", catalog.StateBlocked, "review"); err != nil {
		t.Fatal(err)
	}
	check("blocked")
	if got, _ := s.Lessons(ctx, []string{"b"}); got["b"].State != catalog.StateBlocked {
		t.Fatalf("lesson b state %s after block", got["b"].State)
	}
	// Writes behind the store's back are followed too (triggers, not Go code).
	for _, q := range []string{
		`UPDATE videos SET title = 'Renamed', level = 6, media = '{"duration_ms": 7}' WHERE id = 'c'`,
		`UPDATE lesson_stats SET likes = likes + 5 WHERE lesson_id = 'a'`,
		`DELETE FROM lesson_stats WHERE lesson_id = 'b'`,
		`UPDATE publications SET published_at = 42 WHERE video_id = 'a'`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		check(q)
	}
	if _, err := raw.Exec(`DELETE FROM videos WHERE id = 'c'`); err != nil {
		t.Fatal(err)
	}
	check("deleted")
	if got, _ := s.Lessons(ctx, []string{"c"}); len(got) != 0 {
		t.Fatalf("deleted lesson still looked up: %+v", got)
	}
}

package catalogtest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
)

// eventTests are the EventStore contract, run by Run: every catalog.Store
// backend must also be an EventStore (recommendations read it).
var eventTests = []storeTest[catalog.Store]{
	{"EventsPublish", as(testPublish)},
	{"EventsRecordIdempotent", as(testRecordIdempotent)},
	{"EventsRecordInvalid", as(testRecordInvalid)},
	{"EventsRecordConcurrent", as(testRecordConcurrent)},
	{"EventsPublishedLessons", as(testPublishedLessons)},
}

// published creates a video with the given language and level and
// publishes it at at.
func published(t *testing.T, s catalog.Store, es catalog.EventStore, id, lang string, level int, at time.Time) {
	t.Helper()
	v := sampleVideo(id)
	v.Language, v.Level = lang, level
	create(t, s, v)
	if err := s.SetState(ctx, id, catalog.StateApproved, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Publish(ctx, id, at); err != nil {
		t.Fatalf("Publish(%s): %v", id, err)
	}
}

func testPublish(t *testing.T, s catalog.Store, es catalog.EventStore) {
	create(t, s, sampleVideo("p1"))
	if _, err := es.Publish(ctx, "p1", base); !errors.Is(err, catalog.ErrNotPublishable) {
		t.Fatalf("Publish(processing) = %v, want ErrNotPublishable", err)
	}
	if _, err := es.Publish(ctx, "missing", base); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("Publish(missing) = %v, want ErrNotFound", err)
	}
	if err := s.SetState(ctx, "p1", catalog.StateApproved, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.StageStarted(ctx, "p1", catalog.StagePublish, base); err != nil {
		t.Fatal(err)
	}
	first, err := es.Publish(ctx, "p1", base)
	if err != nil || !first.Equal(us(base)) {
		t.Fatalf("Publish = %v, %v; want %v", first, err, us(base))
	}
	// The running publish stage finished in the same write.
	if st := get(t, s, "p1").Stages; len(st) != 1 || st[0].Name != catalog.StagePublish || st[0].State != catalog.StageSucceeded || st[0].FinishedAt == nil {
		t.Fatalf("stages after Publish: %+v", st)
	}
	// A retry keeps the first time.
	again, err := es.Publish(ctx, "p1", base.Add(time.Hour))
	if err != nil || !again.Equal(us(base)) {
		t.Fatalf("Publish again = %v, %v; want the first time %v", again, err, us(base))
	}
	if v := get(t, s, "p1"); v.State != catalog.StatePublished {
		t.Fatalf("state %s, want published", v.State)
	}
	ls, err := es.Lessons(ctx, []string{"p1", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls["p1"].State != catalog.StatePublished || !ls["p1"].PublishedAt.Equal(us(base)) || ls["p1"].Title != sampleVideo("p1").Title {
		t.Fatalf("Lessons = %+v", ls)
	}
	// A blocked video cannot be published, and a published one that gets
	// blocked is no longer published.
	if err := s.SetState(ctx, "p1", catalog.StateBlocked, "review"); err != nil {
		t.Fatal(err)
	}
	if _, err := es.Publish(ctx, "p1", base); !errors.Is(err, catalog.ErrNotPublishable) {
		t.Fatalf("Publish(blocked) = %v, want ErrNotPublishable", err)
	}
	if got, err := es.PublishedLessons(ctx, catalog.PublishedQuery{}); err != nil || len(got) != 0 {
		t.Fatalf("PublishedLessons after block = %v, %v; want none", got, err)
	}
}

func testRecordIdempotent(t *testing.T, s catalog.Store, es catalog.EventStore) {
	published(t, s, es, "l1", "en", 2, base)
	create(t, s, sampleVideo("l2")) // processing: not recommendable
	at := base.Add(time.Minute)
	batch := []catalog.Event{
		{UserID: "u1", ID: "e1", LessonID: "l1", Type: catalog.EventView, At: at, WatchSeconds: 12.3456, RecID: "r1"},
		{UserID: "u1", ID: "e2", LessonID: "l1", Type: catalog.EventComplete, At: at.Add(time.Second)},
		{UserID: "u1", ID: "e3", LessonID: "l2", Type: catalog.EventView, At: at},
		{UserID: "u1", ID: "e4", LessonID: "nope", Type: catalog.EventLike, At: at},
		{UserID: "u1", ID: "e1", LessonID: "l1", Type: catalog.EventDislike, At: at}, // duplicate within the batch
		{UserID: "u2", ID: "e1", LessonID: "l1", Type: catalog.EventView, At: at},    // another user's e1
	}
	got, err := es.RecordEvents(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.EventOutcome{catalog.EventCreated, catalog.EventCreated, catalog.EventUnknownLesson,
		catalog.EventUnknownLesson, catalog.EventDuplicate, catalog.EventCreated}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("outcomes %v, want %v", got, want)
	}
	// The whole batch again: all duplicates (or still unknown), counts unchanged.
	again, err := es.RecordEvents(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want = []catalog.EventOutcome{catalog.EventDuplicate, catalog.EventDuplicate, catalog.EventUnknownLesson,
		catalog.EventUnknownLesson, catalog.EventDuplicate, catalog.EventDuplicate}
	if !reflect.DeepEqual(again, want) {
		t.Fatalf("outcomes of the retry %v, want %v", again, want)
	}
	// A second view by u1 is stored but counts no new user.
	if _, err := es.RecordEvents(ctx, []catalog.Event{{UserID: "u1", ID: "e9", LessonID: "l1", Type: catalog.EventView, At: at.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	ls, err := es.Lessons(ctx, []string{"l1"})
	if err != nil {
		t.Fatal(err)
	}
	if st := ls["l1"].Stats; st != (catalog.LessonStats{Views: 2, Completes: 1}) {
		t.Fatalf("stats %+v, want 2 views (u1, u2) and 1 completion", st)
	}
	evs, err := es.UserEvents(ctx, "u1", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].ID != "e9" || evs[1].ID != "e2" || evs[2].ID != "e1" {
		t.Fatalf("u1 events %+v, want e9, e2, e1", evs)
	}
	e1 := evs[2]
	if e1.WatchSeconds != 12.346 || e1.RecID != "r1" || !e1.At.Equal(us(at)) || e1.Type != catalog.EventView || e1.LessonID != "l1" {
		t.Fatalf("e1 read back as %+v", e1)
	}
	if evs, err := es.UserEvents(ctx, "nobody", 10); err != nil || len(evs) != 0 {
		t.Fatalf("UserEvents(nobody) = %v, %v", evs, err)
	}
	if _, err := es.UserEvents(ctx, "u1", 0); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("UserEvents(limit 0) = %v, want ErrInvalid", err)
	}
}

func testRecordInvalid(t *testing.T, s catalog.Store, es catalog.EventStore) {
	published(t, s, es, "l1", "en", 2, base)
	good := catalog.Event{UserID: "u1", ID: "ok", LessonID: "l1", Type: catalog.EventView, At: base}
	for name, bad := range map[string]catalog.Event{
		"no user":   {ID: "x", LessonID: "l1", Type: catalog.EventView, At: base},
		"no id":     {UserID: "u1", LessonID: "l1", Type: catalog.EventView, At: base},
		"no lesson": {UserID: "u1", ID: "x", Type: catalog.EventView, At: base},
		"bad type":  {UserID: "u1", ID: "x", LessonID: "l1", Type: "share", At: base},
		"no time":   {UserID: "u1", ID: "x", LessonID: "l1", Type: catalog.EventView},
		"negative":  {UserID: "u1", ID: "x", LessonID: "l1", Type: catalog.EventView, At: base, WatchSeconds: -1},
	} {
		// The good event first: a bad one later must still write nothing.
		if _, err := es.RecordEvents(ctx, []catalog.Event{good, bad}); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := es.RecordEvents(ctx, make([]catalog.Event, catalog.MaxEventBatch+1)); !errors.Is(err, catalog.ErrInvalid) {
		t.Errorf("oversized batch: %v, want ErrInvalid", err)
	}
	if evs, err := es.UserEvents(ctx, "u1", 10); err != nil || len(evs) != 0 {
		t.Fatalf("after rejected batches: %v, %v; want nothing written", evs, err)
	}
}

func testRecordConcurrent(t *testing.T, s catalog.Store, es catalog.EventStore) {
	published(t, s, es, "l1", "en", 2, base)
	var wg sync.WaitGroup
	created := make([]int, 8)
	for g := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := es.RecordEvents(ctx, []catalog.Event{{UserID: "u1", ID: "same", LessonID: "l1", Type: catalog.EventLike, At: base}})
			if err != nil {
				t.Error(err)
				return
			}
			if out[0] == catalog.EventCreated {
				created[g] = 1
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, c := range created {
		n += c
	}
	ls, err := es.Lessons(ctx, []string{"l1"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || ls["l1"].Stats.Likes != 1 {
		t.Fatalf("%d of 8 concurrent identical events created, %d likes; want 1 and 1", n, ls["l1"].Stats.Likes)
	}
}

func testPublishedLessons(t *testing.T, s catalog.Store, es catalog.EventStore) {
	published(t, s, es, "a", "en", 1, base)
	published(t, s, es, "b", "en", 3, base.Add(time.Hour))
	published(t, s, es, "c", "fr", 3, base.Add(2*time.Hour))
	published(t, s, es, "d", "en", 5, base.Add(3*time.Hour))
	create(t, s, sampleVideo("e")) // not published
	// "a" is the most popular: two users completed it.
	for i, u := range []string{"u1", "u2"} {
		if _, err := es.RecordEvents(ctx, []catalog.Event{{UserID: u, ID: "c" + string(rune('0'+i)), LessonID: "a", Type: catalog.EventComplete, At: base}}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(q catalog.PublishedQuery) []string {
		t.Helper()
		ls, err := es.PublishedLessons(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, l := range ls {
			out = append(out, l.ID)
		}
		return out
	}
	for name, c := range map[string]struct {
		q    catalog.PublishedQuery
		want []string
	}{
		"newest":       {catalog.PublishedQuery{}, []string{"d", "c", "b", "a"}},
		"popular":      {catalog.PublishedQuery{Order: catalog.MostPopularFirst}, []string{"a", "d", "c", "b"}},
		"language":     {catalog.PublishedQuery{Language: "en"}, []string{"d", "b", "a"}},
		"levels":       {catalog.PublishedQuery{LevelMin: 2, LevelMax: 4}, []string{"c", "b"}},
		"limit":        {catalog.PublishedQuery{Limit: 2}, []string{"d", "c"}},
		"by id":        {catalog.PublishedQuery{Order: catalog.ByID}, []string{"a", "b", "c", "d"}},
		"by id after":  {catalog.PublishedQuery{Order: catalog.ByID, After: "b"}, []string{"c", "d"}},
		"no such lang": {catalog.PublishedQuery{Language: "de"}, []string{}},
	} {
		if got := ids(c.q); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

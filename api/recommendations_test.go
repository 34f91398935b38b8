package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
)

const testAppKey = "app-key-0123456789abcdef"

// recsServer is an API over a real catalog and vector store with n
// published lessons: lesson i points along axis i%4 of a 16-d space.
func recsServer(t *testing.T, n int) (*httptest.Server, *catalog.SQLite, []string) {
	t.Helper()
	cat := testCatalog(t)
	vs, err := vectorstore.OpenSQLiteVec(t.TempDir(), "lessons_api_test_16", 16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vs.Close() })
	ctx := context.Background()
	var ids []string
	var batch []vectorstore.Lesson
	for i := range n {
		id := fmt.Sprintf("v%024x", i+1)
		ids = append(ids, id)
		if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: id, Title: fmt.Sprintf("Lesson %d", i), Language: "en", Level: 1 + i%6}); err != nil {
			t.Fatal(err)
		}
		if err := cat.SetState(ctx, id, catalog.StateApproved, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := cat.Publish(ctx, id, time.Now().Add(-time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
		v := make([]float32, 16)
		v[i%4] = 0.8
		v[4+i%12] = 0.6
		batch = append(batch, vectorstore.Lesson{ID: id, Vector: v, Language: "en", Level: 1 + i%6, PublishedAt: time.Now()})
	}
	if err := vs.Upsert(ctx, batch); err != nil {
		t.Fatal(err)
	}
	s := &Server{Catalog: cat, Keys: map[string]string{testAppKey: RoleApp, "reviewer-key-0123456789": RoleReviewer},
		Events: cat, Recs: &recommend.Engine{Vectors: vs, Catalog: cat}}
	return startServer(t, s), cat, ids
}

func eventJSONFor(id, lesson, typ string, at time.Time) string {
	return fmt.Sprintf(`{"event_id":%q,"lesson_id":%q,"type":%q,"at":%q,"watch_seconds":42.5,"rec_id":"r1-1"}`, id, lesson, typ, at.Format(time.RFC3339))
}

func TestEventsEndpoint(t *testing.T) {
	srv, cat, ids := recsServer(t, 8)
	now := time.Now().Add(-time.Minute)
	batch := `{"events":[` + eventJSONFor("e1", ids[0], "complete", now) + `,` + eventJSONFor("e2", "v000000000000000000000999", "like", now) + `]}`
	code, body := call(t, srv, testAppKey, "POST", "/v1/users/u1/events", batch)
	if code != http.StatusMultiStatus {
		t.Fatalf("status %d %v, want 207", code, body)
	}
	items := body["items"].([]any)
	if r := items[0].(map[string]any); r["status"].(float64) != 201 || r["result"] != "created" {
		t.Fatalf("item 0 %v", r)
	}
	if r := items[1].(map[string]any); r["status"].(float64) != 404 || !strings.Contains(r["message"].(string), "no published lesson") {
		t.Fatalf("item 1 %v", r)
	}
	// The same batch again: the stored one is a duplicate.
	_, body = call(t, srv, testAppKey, "POST", "/v1/users/u1/events", batch)
	if r := body["items"].([]any)[0].(map[string]any); r["result"] != "duplicate" || r["status"].(float64) != 200 {
		t.Fatalf("retry item 0 %v", r)
	}

	bad := map[string]struct {
		body string
		code int
	}{
		"malformed":     {`{"events":[` + eventJSONFor("x1", ids[1], "view", now) + `,{"event_id":`, 400},
		"unknown field": {`{"events":[{"event_id":"x2","lesson_id":"` + ids[1] + `","type":"view","at":"` + now.Format(time.RFC3339) + `","extra":1}]}`, 400},
		"future":        {`{"events":[` + eventJSONFor("x3", ids[1], "view", now) + `,` + eventJSONFor("x4", ids[1], "view", time.Now().Add(time.Hour)) + `]}`, 400},
		"bad type":      {`{"events":[` + eventJSONFor("x5", ids[1], "share", now) + `]}`, 400},
		"empty":         {`{"events":[]}`, 400},
		"no at":         {`{"events":[{"event_id":"x6","lesson_id":"` + ids[1] + `","type":"view"}]}`, 400},
		"trailing":      {`{"events":[` + eventJSONFor("x7", ids[1], "view", now) + `]} {}`, 400},
		"oversized":     {`{"events":[` + strings.TrimSuffix(strings.Repeat(eventJSONFor("x8", ids[1], "view", now)+",", MaxEventBatch+1), ",") + `]}`, 400},
		"huge body":     {`{"events":[` + strings.Repeat(" ", 2<<20) + `]}`, 413},
	}
	for name, c := range bad {
		code, body := call(t, srv, testAppKey, "POST", "/v1/users/u2/events", c.body)
		if code != c.code || body["error"] == nil {
			t.Errorf("%s: %d %v, want %d with an error body", name, code, body, c.code)
		}
	}
	if evs, err := cat.UserEvents(context.Background(), "u2", 10); err != nil || len(evs) != 0 {
		t.Fatalf("rejected batches wrote %v (%v)", evs, err)
	}
	if code, _ := call(t, srv, testAppKey, "POST", "/v1/users/bad%20user/events", batch); code != 400 {
		t.Errorf("bad user id: %d", code)
	}
	if code, _ := call(t, srv, "reviewer-key-0123456789", "POST", "/v1/users/u1/events", batch); code != 403 {
		t.Errorf("reviewer: %d, want 403", code)
	}
}

func TestRecommendationsEndpoint(t *testing.T) {
	srv, _, ids := recsServer(t, 24)
	now := time.Now().Add(-time.Minute)
	code, _ := call(t, srv, testAppKey, "POST", "/v1/users/u1/events", `{"events":[`+eventJSONFor("e1", ids[1], "complete", now)+`]}`)
	if code != 200 {
		t.Fatalf("events: %d", code)
	}
	code, body := call(t, srv, testAppKey, "GET", "/v1/users/u1/recommendations?limit=5&language=en", "")
	if code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	items := body["items"].([]any)
	if len(items) != 5 {
		t.Fatalf("%d items", len(items))
	}
	for _, it := range items {
		m := it.(map[string]any)
		for _, k := range []string{"lesson_id", "title", "score", "rec_id", "reason"} {
			if _, ok := m[k]; !ok {
				t.Errorf("item without %s: %v", k, m)
			}
		}
		if m["lesson_id"] == ids[1] {
			t.Errorf("seen lesson recommended")
		}
		if !strings.Contains(m["reason"].(string), `"Lesson 1"`) {
			t.Errorf("reason %q does not name the completed lesson", m["reason"])
		}
	}
	code, body = call(t, srv, testAppKey, "GET", "/v1/lessons/"+ids[0]+"/similar?limit=3", "")
	if code != 200 || len(body["items"].([]any)) != 3 {
		t.Fatalf("similar: %d %v", code, body)
	}
	for path, want := range map[string]int{
		"/v1/users/u1/recommendations?limit=0":                    400,
		"/v1/users/u1/recommendations?limit=10000":                400,
		"/v1/users/u1/recommendations?limit=x":                    400,
		"/v1/users/u1/recommendations?level_min=4&level_max=2":    400,
		"/v1/users/u1/recommendations?level_min=9":                400,
		"/v1/users/u1/recommendations?language=EN":                400,
		"/v1/users/u1/recommendations?sort=new":                   400,
		"/v1/lessons/" + ids[0] + "/similar?limit=0":              400,
		"/v1/lessons/v000000000000000000000999/similar":           404,
		"/v1/lessons/nope/similar":                                404,
		"/v1/users/new-user/recommendations?level_min=2&limit=50": 200,
	} {
		if code, body := call(t, srv, testAppKey, "GET", path, ""); code != want {
			t.Errorf("%s: %d %v, want %d", path, code, body, want)
		}
	}
}

func TestDecodeEventsValidation(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := `{"events":[{"event_id":"a:1","lesson_id":"v1","type":"like","at":"2025-12-31T23:00:00+01:00"}]}`
	evs, err := DecodeEvents(strings.NewReader(ok), "u", now)
	if err != nil || len(evs) != 1 || evs[0].At != time.Date(2025, 12, 31, 22, 0, 0, 0, time.UTC) || evs[0].UserID != "u" {
		t.Fatalf("%+v %v", evs, err)
	}
	for _, b := range []string{
		``, `null`, `[]`, `{"events":null}`, `{"events":{}}`,
		`{"events":[{"event_id":"","lesson_id":"v1","type":"like","at":"2025-12-31T23:00:00Z"}]}`,
		`{"events":[{"event_id":"a","lesson_id":"v1","type":"like","at":"2025-12-31"}]}`,
		`{"events":[{"event_id":"a","lesson_id":"v1","type":"like","at":"2019-12-31T00:00:00Z"}]}`,
		`{"events":[{"event_id":"a","lesson_id":"v1","type":"like","at":"2025-12-31T23:00:00Z","watch_seconds":-1}]}`,
		`{"events":[{"event_id":"a","lesson_id":"v1","type":"like","at":"2025-12-31T23:00:00Z","watch_seconds":1e400}]}`,
		`{"events":[{"event_id":"a","lesson_id":"v1","type":"like","at":"2025-12-31T23:00:00Z","rec_id":"a b"}]}`,
	} {
		var ve *ValidationError
		if _, err := DecodeEvents(strings.NewReader(b), "u", now); !errors.As(err, &ve) {
			t.Errorf("%.80s: %v, want a ValidationError", b, err)
		}
	}
}

func FuzzDecodeEvents(f *testing.F) {
	f.Add(`{"events":[{"event_id":"a","lesson_id":"v1","type":"view","at":"2025-06-01T00:00:00Z","watch_seconds":3}]}`)
	f.Add(`{"events":[{"event_id":"a","lesson_id":"v1","type":"skip","at":"2099-06-01T00:00:00Z"}]}`)
	f.Add(`{"events":[{}],"x":1}`)
	f.Add(`{"events":[{"event_id":"\u0000","lesson_id":"","type":"like","at":"x","rec_id":"é"}]}`)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body string) {
		evs, err := DecodeEvents(strings.NewReader(body), "u", now)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("non-validation error %v", err)
			}
			return
		}
		if len(evs) == 0 || len(evs) > MaxEventBatch {
			t.Fatalf("accepted %d events", len(evs))
		}
		for _, e := range evs {
			if !eventIDRe.MatchString(e.ID) || e.LessonID == "" || !e.Type.Valid() || e.At.After(now.Add(clockSkew)) ||
				e.At.Before(oldestEvent) || e.WatchSeconds < 0 || math.IsNaN(e.WatchSeconds) || !recIDRe.MatchString(e.RecID) {
				t.Fatalf("accepted invalid event %+v", e)
			}
		}
	})
}

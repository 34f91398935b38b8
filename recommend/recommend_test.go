package recommend_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
)

var ctx = context.Background()

const dim = 32

var now = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)

// topic returns a unit vector near axis t (topics are orthogonal).
func topic(r *rand.Rand, t int, noise float64) []float32 {
	v := make([]float32, dim)
	var n float64
	for i := range v {
		x := noise * r.NormFloat64()
		if i == t {
			x += 1
		}
		v[i] = float32(x)
		n += x * x
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / math.Sqrt(n))
	}
	return v
}

type fixture struct {
	cat  *catalog.SQLite
	vecs *vectorstore.SQLiteVec
	eng  *recommend.Engine
}

// newFixture publishes perTopic lessons for each of topics 0..3, "t<topic>-<n>",
// language en for topics 0-2 and fr for topic 3, level n%6+1.
func newFixture(t *testing.T, perTopic int) *fixture {
	t.Helper()
	dir := t.TempDir()
	cat, err := catalog.OpenSQLite(filepath.Join(dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	vecs, err := vectorstore.OpenSQLiteVec(dir, "lessons_test_32", dim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vecs.Close() })
	r := rand.New(rand.NewPCG(1, 2))
	var batch []vectorstore.Lesson
	for tp := range 4 {
		for n := range perTopic {
			id := fmt.Sprintf("t%d-%d", tp, n)
			lang := "en"
			if tp == 3 {
				lang = "fr"
			}
			if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: id, Title: "Topic " + id, Language: lang, Level: n%6 + 1}); err != nil {
				t.Fatal(err)
			}
			if err := cat.SetState(ctx, id, catalog.StateApproved, ""); err != nil {
				t.Fatal(err)
			}
			at := now.Add(-time.Duration(n+1) * 24 * time.Hour)
			if _, err := cat.Publish(ctx, id, at); err != nil {
				t.Fatal(err)
			}
			batch = append(batch, vectorstore.Lesson{ID: id, Vector: topic(r, tp, 0.15), Language: lang, Level: n%6 + 1, PublishedAt: at})
		}
	}
	if err := vecs.Upsert(ctx, batch); err != nil {
		t.Fatal(err)
	}
	return &fixture{cat: cat, vecs: vecs, eng: &recommend.Engine{Vectors: vecs, Catalog: cat, Now: func() time.Time { return now }}}
}

func (f *fixture) events(t *testing.T, user string, evs ...catalog.Event) {
	t.Helper()
	for i := range evs {
		evs[i].UserID = user
		if evs[i].ID == "" {
			evs[i].ID = fmt.Sprintf("%s-%d-%s", user, i, evs[i].LessonID)
		}
		if evs[i].At.IsZero() {
			evs[i].At = now.Add(-time.Hour)
		}
	}
	out, err := f.cat.RecordEvents(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o != catalog.EventCreated {
			t.Fatalf("event %d: outcome %v", i, o)
		}
	}
}

func topicOf(id string) string { return id[:2] }

func TestRecommendFollowsPositivesAndExcludesSeen(t *testing.T) {
	f := newFixture(t, 12)
	f.events(t, "u1",
		catalog.Event{LessonID: "t1-0", Type: catalog.EventComplete},
		catalog.Event{LessonID: "t1-1", Type: catalog.EventLike},
		catalog.Event{LessonID: "t2-0", Type: catalog.EventDislike},
		catalog.Event{LessonID: "t0-0", Type: catalog.EventView, WatchSeconds: 5}, // 5 s of ~300: says nothing
	)
	items, err := f.eng.Recommend(ctx, recommend.Query{UserID: "u1", Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 5 {
		t.Fatalf("%d items, want 5", len(items))
	}
	ids := map[string]bool{}
	for _, it := range items {
		if topicOf(it.LessonID) != "t1" {
			t.Errorf("item %s (%s) is not on the liked topic t1", it.LessonID, it.Reason)
		}
		if it.LessonID == "t1-0" || it.LessonID == "t1-1" || it.LessonID == "t0-0" || it.LessonID == "t2-0" {
			t.Errorf("seen lesson %s recommended", it.LessonID)
		}
		if !strings.HasPrefix(it.Reason, `similar to "Topic t1-`) || it.Title == "" || it.RecID == "" {
			t.Errorf("item %+v: want a reason naming a t1 lesson, a title and a rec id", it)
		}
		if ids[it.RecID] {
			t.Errorf("rec id %s repeated", it.RecID)
		}
		ids[it.RecID] = true
	}
}

func TestRecommendFiltersAndGate(t *testing.T) {
	f := newFixture(t, 12)
	f.events(t, "u1", catalog.Event{LessonID: "t3-0", Type: catalog.EventComplete})
	// The nearest neighbour gets blocked after indexing: the catalog gates it.
	first, err := f.eng.Recommend(ctx, recommend.Query{UserID: "u1", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	blocked := first[0].LessonID
	if err := f.cat.SetState(ctx, blocked, catalog.StateBlocked, "review"); err != nil {
		t.Fatal(err)
	}
	items, err := f.eng.Recommend(ctx, recommend.Query{UserID: "u1", Limit: 10, Language: "fr", LevelMin: 2, LevelMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) == 0 {
		t.Fatal("no items")
	}
	ls, _ := f.cat.Lessons(ctx, ids(items))
	for _, it := range items {
		l := ls[it.LessonID]
		if it.LessonID == blocked {
			t.Errorf("blocked lesson %s recommended", blocked)
		}
		if l.Language != "fr" || l.Level < 2 || l.Level > 3 {
			t.Errorf("item %s: language %s level %d, want fr 2-3", it.LessonID, l.Language, l.Level)
		}
	}
	sim, err := f.eng.Similar(ctx, "t3-0", 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range sim {
		if it.LessonID == blocked || it.LessonID == "t3-0" {
			t.Errorf("similar returned %s", it.LessonID)
		}
	}
	if _, err := f.eng.Similar(ctx, blocked, 5); !errors.Is(err, recommend.ErrNotFound) {
		t.Errorf("Similar(blocked) = %v, want ErrNotFound", err)
	}
	if _, err := f.eng.Similar(ctx, "nope", 5); !errors.Is(err, recommend.ErrNotFound) {
		t.Errorf("Similar(unknown) = %v, want ErrNotFound", err)
	}
}

func ids(items []recommend.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.LessonID)
	}
	return out
}

func TestColdStartPopularAtLevel(t *testing.T) {
	f := newFixture(t, 12)
	// t0-5 (level 6) and t2-2 (level 3) are popular: several users completed them.
	for u := range 4 {
		f.events(t, fmt.Sprintf("fan%d", u),
			catalog.Event{LessonID: "t0-5", Type: catalog.EventComplete},
			catalog.Event{LessonID: "t2-2", Type: catalog.EventComplete})
	}
	items, err := f.eng.Recommend(ctx, recommend.Query{UserID: "newbie", Limit: 3, LevelMin: 3, LevelMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 3 || items[0].LessonID != "t2-2" || items[0].Reason != "popular at your level" {
		t.Fatalf("cold start %+v, want t2-2 first, popular at your level", items)
	}
	for _, it := range items[1:] {
		if !strings.HasSuffix(it.Reason, "at your level") {
			t.Errorf("reason %q", it.Reason)
		}
	}
	// Only negatives: still cold start, without what was disliked.
	f.events(t, "grump", catalog.Event{LessonID: "t2-2", Type: catalog.EventDislike})
	items, err = f.eng.Recommend(ctx, recommend.Query{UserID: "grump", Limit: 3, LevelMin: 3, LevelMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.LessonID == "t2-2" {
			t.Errorf("disliked lesson recommended")
		}
	}
}

func TestQueryValidation(t *testing.T) {
	f := newFixture(t, 2)
	for _, q := range []recommend.Query{{UserID: "u", Limit: 0}, {UserID: "u", Limit: 10000}, {UserID: "u", Limit: 5, LevelMin: 4, LevelMax: 2}} {
		if _, err := f.eng.Recommend(ctx, q); !errors.Is(err, recommend.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", q, err)
		}
	}
	if _, err := f.eng.Similar(ctx, "t0-0", 0); !errors.Is(err, recommend.ErrInvalid) {
		t.Errorf("Similar limit 0: %v", err)
	}
}

func TestSignalsDecayAndCancel(t *testing.T) {
	evs := []catalog.Event{
		{LessonID: "a", Type: catalog.EventComplete, At: now},
		{LessonID: "b", Type: catalog.EventComplete, At: now.Add(-30 * 24 * time.Hour)}, // one half-life
		{LessonID: "c", Type: catalog.EventLike, At: now},
		{LessonID: "c", Type: catalog.EventDislike, At: now}, // cancels
		{LessonID: "d", Type: catalog.EventView, At: now, WatchSeconds: 30},
		{LessonID: "e", Type: catalog.EventSkip, At: now},
	}
	got := recommend.Signals(evs, map[string]int64{"d": 60_000}, now, 30*24*time.Hour)
	want := map[string]float64{"a": 1, "b": 0.5, "d": 0.25, "e": -0.5}
	if len(got) != len(want) {
		t.Fatalf("signals %+v, want %v", got, want)
	}
	for _, s := range got {
		if math.Abs(s.Weight-want[s.LessonID]) > 1e-9 {
			t.Errorf("%s: weight %v, want %v", s.LessonID, s.Weight, want[s.LessonID])
		}
	}
	if got[0].LessonID != "a" {
		t.Errorf("strongest first: got %s", got[0].LessonID)
	}
}

func TestProfileVectorPushesAwayFromNegatives(t *testing.T) {
	pos := []float32{1, 0, 0}
	neg := []float32{0.6, 0.8, 0}
	v := recommend.ProfileVector([]recommend.Signal{{LessonID: "p", Weight: 1}, {LessonID: "n", Weight: -1}},
		map[string][]float32{"p": pos, "n": neg})
	// 2*pos - neg = (1.4, -0.8, 0), normalised.
	n := math.Hypot(1.4, 0.8)
	if math.Abs(float64(v[0])-1.4/n) > 1e-6 || math.Abs(float64(v[1])+0.8/n) > 1e-6 {
		t.Fatalf("profile %v, want (1.4, -0.8, 0)/%.3f", v, n)
	}
	if recommend.ProfileVector([]recommend.Signal{{LessonID: "n", Weight: -1}}, map[string][]float32{"n": neg}) != nil {
		t.Fatal("negatives only: want nil")
	}
}

func TestMMRDiversifies(t *testing.T) {
	vecs := [][]float32{{1, 0}, {0.999, 0.045}, {0, 1}}
	rel := []float64{0.9, 0.89, 0.7}
	if got := recommend.MMR(rel, vecs, 2, 1); got[0] != 0 || got[1] != 1 {
		t.Fatalf("lambda 1: %v, want relevance order", got)
	}
	if got := recommend.MMR(rel, vecs, 2, 0.5); got[0] != 0 || got[1] != 2 {
		t.Fatalf("lambda 0.5: %v, want the near-duplicate skipped", got)
	}
}

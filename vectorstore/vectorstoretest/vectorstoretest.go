// Package vectorstoretest is the contract every vectorstore.Store must pass,
// like the conformance suites of database/sql drivers. A backend's test calls
// Run with a constructor of fresh, empty stores.
//
// Search results are checked against a brute-force cosine computation on
// the same data: scores to 1e-4, filters and exclusions always, and recall@k
// against MinRecall (1 by default, for exact backends). The Recall test
// holds every backend, exact or not, to RecallTarget on clustered vectors
// shaped like real embeddings.
package vectorstoretest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/vectorstore"
)

// Option adapts the suite to a backend.
type Option func(*config)

type config struct {
	minRecall float64
	reopen    func(t *testing.T, s vectorstore.Store) vectorstore.Store
}

// MinRecall is the mean recall@k an approximate backend must reach on each
// search test (default 1: every query exact, up to float32 ties).
func MinRecall(r float64) Option { return func(c *config) { c.minRecall = r } }

// Reopen enables the persistence test. reopen must close s and return a
// store opened anew on the same data (for a file: the same file).
func Reopen(reopen func(t *testing.T, s vectorstore.Store) vectorstore.Store) Option {
	return func(c *config) { c.reopen = reopen }
}

// Run runs the contract suite. newStore must return a new, empty store of
// the given dimension each time it is called and arrange the removal of its
// data; Run closes the stores it gets when the test ends.
func Run(t *testing.T, newStore func(t *testing.T, dim int) vectorstore.Store, opts ...Option) {
	cfg := config{minRecall: 1}
	for _, o := range opts {
		o(&cfg)
	}
	h := &harness{cfg: cfg, newStore: newStore}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"RoundTrip", h.testRoundTrip},
		{"RoundTrip1024", h.testRoundTrip1024},
		{"OddIDs", h.testOddIDs},
		{"Overwrite", h.testOverwrite},
		{"Delete", h.testDelete},
		{"SearchNearest", h.testSearchNearest},
		{"SearchFilters", h.testSearchFilters},
		{"SearchExclude", h.testSearchExclude},
		{"SearchK", h.testSearchK},
		{"InvalidUpsert", h.testInvalidUpsert},
		{"InvalidSearch", h.testInvalidSearch},
		{"InvalidDeleteGet", h.testInvalidDeleteGet},
		{"Cancelled", h.testCancelled},
		{"Concurrent", h.testConcurrent},
		{"Reopen", h.testReopen},
		{"Recall", h.testRecall},
		{"Close", h.testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

const (
	dim      = 64
	scoreTol = 1e-4
	// tieTol: a hit whose true score is this close to the k-th best counts
	// as correct; float32 distances cannot order closer neighbours exactly.
	tieTol = 1e-5
)

var ctx = context.Background()

// base is a non-UTC instant with sub-millisecond digits, which every store
// must drop.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("X", 3600))

var languages = []string{"en", "fr", "pt-BR"}

type harness struct {
	cfg      config
	newStore func(t *testing.T, dim int) vectorstore.Store
}

func (h *harness) open(t *testing.T, d int) vectorstore.Store {
	t.Helper()
	s := h.newStore(t, d)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func unit(r *rand.Rand, d int) []float32 {
	v := make([]float32, d)
	var sum float64
	for i := range v {
		x := r.NormFloat64()
		v[i] = float32(x)
		sum += x * x
	}
	n := math.Sqrt(sum)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

// lessons makes n random lessons named prefix0..prefixN-1; levels run 0-6
// (0: unknown), languages cycle through languages.
func lessons(r *rand.Rand, prefix string, n, d int) []vectorstore.Lesson {
	out := make([]vectorstore.Lesson, n)
	for i := range out {
		out[i] = vectorstore.Lesson{
			ID:          fmt.Sprintf("%s%d", prefix, i),
			Vector:      unit(r, d),
			Language:    languages[r.IntN(len(languages))],
			Level:       r.IntN(7),
			PublishedAt: base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))),
			Popularity:  r.Float64() * 100,
		}
	}
	return out
}

func upsert(t *testing.T, s vectorstore.Store, ls []vectorstore.Lesson) {
	t.Helper()
	for len(ls) > 0 {
		n := min(len(ls), vectorstore.MaxBatch)
		if err := s.Upsert(ctx, ls[:n]); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		ls = ls[n:]
	}
}

func count(t *testing.T, s vectorstore.Store) int {
	t.Helper()
	n, err := s.Count(ctx)
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return n
}

func wantCount(t *testing.T, s vectorstore.Store, want int) {
	t.Helper()
	if n := count(t, s); n != want {
		t.Fatalf("Count = %d, want %d", n, want)
	}
}

// stored is what Get must return for l.
func stored(l vectorstore.Lesson) vectorstore.Lesson {
	l.PublishedAt = time.UnixMilli(l.PublishedAt.UnixMilli()).UTC()
	return l
}

func sameLesson(got, want vectorstore.Lesson) error {
	want = stored(want)
	switch {
	case got.ID != want.ID:
		return fmt.Errorf("id %q, want %q", got.ID, want.ID)
	case got.Language != want.Language || got.Level != want.Level || got.Popularity != want.Popularity:
		return fmt.Errorf("%s: language %q level %d popularity %v, want %q %d %v", want.ID,
			got.Language, got.Level, got.Popularity, want.Language, want.Level, want.Popularity)
	case !got.PublishedAt.Equal(want.PublishedAt) || got.PublishedAt.Location() != time.UTC:
		return fmt.Errorf("%s: published %v, want %v in UTC", want.ID, got.PublishedAt, want.PublishedAt)
	case !slices.Equal(got.Vector, want.Vector):
		return fmt.Errorf("%s: vector differs (%d values, want %d)", want.ID, len(got.Vector), len(want.Vector))
	}
	return nil
}

func get(t *testing.T, s vectorstore.Store, id string) vectorstore.Lesson {
	t.Helper()
	l, err := s.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return l
}

func wantLesson(t *testing.T, s vectorstore.Store, want vectorstore.Lesson) {
	t.Helper()
	if err := sameLesson(get(t, s, want.ID), want); err != nil {
		t.Fatalf("Get: %v", err)
	}
}

func wantMissing(t *testing.T, s vectorstore.Store, id string) {
	t.Helper()
	if l, err := s.Get(ctx, id); !errors.Is(err, vectorstore.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", id, l.ID, err)
	}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func matches(l vectorstore.Lesson, f vectorstore.Filter) bool {
	if f.Language != "" && l.Language != f.Language {
		return false
	}
	if f.LevelMin > 0 && l.Level < f.LevelMin || f.LevelMax > 0 && l.Level > f.LevelMax {
		return false
	}
	return !slices.Contains(f.ExcludeIDs, l.ID)
}

// check compares one Search result with brute force over data (every lesson
// in the store) and returns its recall.
func check(t *testing.T, data map[string]vectorstore.Lesson, q []float32, k int, f vectorstore.Filter, hits []vectorstore.Hit) float64 {
	t.Helper()
	return checkTB(t, data, q, k, f, hits)
}

func checkTB(t testing.TB, data map[string]vectorstore.Lesson, q []float32, k int, f vectorstore.Filter, hits []vectorstore.Hit) float64 {
	t.Helper()
	var scores []float64
	for _, l := range data {
		if matches(l, f) {
			scores = append(scores, cosine(q, l.Vector))
		}
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(scores)))
	want := min(k, len(scores))
	if hits == nil {
		t.Fatalf("Search returned nil, want a non-nil slice")
	}
	if len(hits) > want {
		t.Fatalf("Search returned %d hits, want at most %d", len(hits), want)
	}
	if want == 0 {
		return 1
	}
	seen := map[string]bool{}
	correct := 0
	for i, h := range hits {
		l, ok := data[h.ID]
		if !ok {
			t.Fatalf("hit %d: unknown id %q", i, h.ID)
		}
		if seen[h.ID] {
			t.Fatalf("hit %d: %q returned twice", i, h.ID)
		}
		seen[h.ID] = true
		if !matches(l, f) {
			t.Fatalf("hit %d: %q (language %s, level %d) does not match filter %+v", i, h.ID, l.Language, l.Level, f)
		}
		exact := cosine(q, l.Vector)
		if math.Abs(h.Score-exact) > scoreTol || h.Score < -1 || h.Score > 1 {
			t.Fatalf("hit %d: %q score %v, brute force %v", i, h.ID, h.Score, exact)
		}
		if i > 0 && h.Score > hits[i-1].Score+1e-6 {
			t.Fatalf("hit %d: score %v after %v: not nearest first", i, h.Score, hits[i-1].Score)
		}
		sl := stored(l)
		if h.Language != sl.Language || h.Level != sl.Level || h.Popularity != sl.Popularity ||
			!h.PublishedAt.Equal(sl.PublishedAt) || h.PublishedAt.Location() != time.UTC {
			t.Fatalf("hit %d: %+v, stored lesson has language %q level %d published %v popularity %v",
				i, h, sl.Language, sl.Level, sl.PublishedAt, sl.Popularity)
		}
		if exact >= scores[want-1]-tieTol {
			correct++
		}
	}
	return float64(correct) / float64(want)
}

// search runs Search and check, and fails if an exact backend missed.
func (h *harness) search(t *testing.T, s vectorstore.Store, data map[string]vectorstore.Lesson, q []float32, k int, f vectorstore.Filter) ([]vectorstore.Hit, float64) {
	t.Helper()
	hits, err := s.Search(ctx, q, k, f)
	if err != nil {
		t.Fatalf("Search(k=%d, %+v): %v", k, f, err)
	}
	recall := check(t, data, q, k, f, hits)
	if h.cfg.minRecall >= 1 && recall < 1 {
		t.Fatalf("Search(k=%d, %+v): recall %.2f, want 1", k, f, recall)
	}
	return hits, recall
}

func (h *harness) wantRecall(t *testing.T, recalls []float64) {
	t.Helper()
	var sum float64
	for _, r := range recalls {
		sum += r
	}
	if mean := sum / float64(len(recalls)); mean < h.cfg.minRecall {
		t.Fatalf("mean recall %.3f over %d searches, want >= %.2f", mean, len(recalls), h.cfg.minRecall)
	}
}

func byID(ls ...[]vectorstore.Lesson) map[string]vectorstore.Lesson {
	m := map[string]vectorstore.Lesson{}
	for _, l := range ls {
		for _, x := range l {
			m[x.ID] = x
		}
	}
	return m
}

func ids(hits []vectorstore.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

func (h *harness) testRoundTrip(t *testing.T) {
	s := h.open(t, dim)
	wantCount(t, s, 0)
	wantMissing(t, s, "l0")
	ls := lessons(newRand(1), "l", 3, dim)
	ls[0].PublishedAt = time.Time{}
	ls[1].Level = 0
	ls[2].Popularity = -1.5e-300
	if err := s.Upsert(ctx, ls); err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		wantLesson(t, s, l)
	}
	if got := get(t, s, "l0"); !got.PublishedAt.IsZero() {
		t.Fatalf("zero PublishedAt came back as %v", got.PublishedAt)
	}
	wantCount(t, s, 3)
	wantMissing(t, s, "l3")
	if err := s.Upsert(ctx, nil); err != nil {
		t.Fatalf("Upsert(nil): %v", err)
	}
	wantCount(t, s, 3)
}

// The product's dimension, with a batch of the maximum size.
func (h *harness) testRoundTrip1024(t *testing.T) {
	s := h.open(t, 1024)
	ls := lessons(newRand(2), "m", vectorstore.MaxBatch, 1024)
	if err := s.Upsert(ctx, ls); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, vectorstore.MaxBatch)
	for _, i := range []int{0, 1, 500, vectorstore.MaxBatch - 1} {
		wantLesson(t, s, ls[i])
	}
	h.search(t, s, byID(ls), ls[7].Vector, 10, vectorstore.Filter{Language: ls[7].Language})
}

// Ids that need quoting, at the length limit, or not ASCII.
func (h *harness) testOddIDs(t *testing.T) {
	s := h.open(t, dim)
	odd := []string{
		`a"b`, `a'b`, `back\slash`, `x" || id != "`, `x") or ("1"="1`, `]`, `%`, `_`, `*`,
		"日本語のレッスン", "emoji 🎓", " spaced ", strings.Repeat("z", vectorstore.MaxIDLen),
		strings.Repeat("é", vectorstore.MaxIDLen/2),
	}
	ls := lessons(newRand(3), "", len(odd), dim)
	for i := range ls {
		ls[i].ID = odd[i]
	}
	upsert(t, s, ls)
	wantCount(t, s, len(odd))
	data := byID(ls)
	for _, l := range ls {
		wantLesson(t, s, l)
		hits, _ := h.search(t, s, data, l.Vector, 3, vectorstore.Filter{})
		if len(hits) == 0 || hits[0].ID != l.ID {
			t.Fatalf("Search(vector of %q) = %v, want it first", l.ID, ids(hits))
		}
	}
	// Excluding each odd id removes exactly that one.
	for _, l := range ls {
		hits, _ := h.search(t, s, data, l.Vector, len(odd), vectorstore.Filter{ExcludeIDs: []string{l.ID}})
		if len(hits) != len(odd)-1 || slices.Contains(ids(hits), l.ID) {
			t.Fatalf("Search excluding %q = %q", l.ID, ids(hits))
		}
	}
	if err := s.Delete(ctx, odd[:5]); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, len(odd)-5)
	for _, id := range odd[:5] {
		wantMissing(t, s, id)
	}
	wantLesson(t, s, ls[5])
}

func (h *harness) testOverwrite(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(4)
	old := lessons(r, "o", 50, dim)
	upsert(t, s, old)
	// Replace 20 with new vectors and, for most, another language and level.
	repl := lessons(r, "o", 20, dim)
	for i := range repl {
		if i%4 != 0 {
			repl[i].Language = languages[(slices.Index(languages, old[i].Language)+1)%len(languages)]
			repl[i].Level = (old[i].Level + 1) % 7
		}
	}
	upsert(t, s, repl)
	wantCount(t, s, 50)
	upsert(t, s, repl) // the same batch again: still no duplicates
	wantCount(t, s, 50)
	data := byID(old, repl)
	for _, l := range repl {
		wantLesson(t, s, l)
	}
	wantLesson(t, s, old[30])
	for i, l := range repl {
		// The new vector is found under the new language and level...
		f := vectorstore.Filter{Language: l.Language, LevelMin: l.Level, LevelMax: l.Level}
		hits, _ := h.search(t, s, data, l.Vector, 5, f)
		if len(hits) == 0 || hits[0].ID != l.ID || hits[0].Score < 1-scoreTol {
			t.Fatalf("Search(new vector of %s) = %+v, want it first with score 1", l.ID, hits)
		}
		// ...and the old vector is gone from wherever it was.
		hits, _ = h.search(t, s, data, old[i].Vector, 50, vectorstore.Filter{})
		for _, hit := range hits {
			if hit.ID == l.ID && hit.Score > 1-scoreTol {
				t.Fatalf("old vector of %s still found: %+v", l.ID, hit)
			}
		}
	}
}

func (h *harness) testDelete(t *testing.T) {
	s := h.open(t, dim)
	ls := lessons(newRand(5), "d", 30, dim)
	upsert(t, s, ls)
	if err := s.Delete(ctx, []string{"d0", "d1", "missing"}); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, 28)
	wantMissing(t, s, "d0")
	wantMissing(t, s, "d1")
	wantLesson(t, s, ls[2])
	data := byID(ls[2:])
	hits, _ := h.search(t, s, data, ls[0].Vector, 30, vectorstore.Filter{})
	if slices.Contains(ids(hits), "d0") || slices.Contains(ids(hits), "d1") {
		t.Fatalf("deleted lessons found: %v", ids(hits))
	}
	// Idempotent, and empty deletes are fine.
	if err := s.Delete(ctx, []string{"d0", "d0"}); err != nil {
		t.Fatalf("Delete again: %v", err)
	}
	if err := s.Delete(ctx, nil); err != nil {
		t.Fatalf("Delete(nil): %v", err)
	}
	wantCount(t, s, 28)
	// Delete then re-insert an id.
	upsert(t, s, ls[:1])
	wantLesson(t, s, ls[0])
	wantCount(t, s, 29)
	var all []string
	for _, l := range ls {
		all = append(all, l.ID)
	}
	if err := s.Delete(ctx, all); err != nil {
		t.Fatal(err)
	}
	wantCount(t, s, 0)
	hits, err := s.Search(ctx, ls[0].Vector, 10, vectorstore.Filter{})
	if err != nil || hits == nil || len(hits) != 0 {
		t.Fatalf("Search of an empty store = %v, %v; want an empty slice", hits, err)
	}
}

func (h *harness) testSearchNearest(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(6)
	ls := lessons(r, "n", 400, dim)
	upsert(t, s, ls)
	data := byID(ls)
	var recalls []float64
	for i := range 20 {
		q := unit(r, dim)
		_, rec := h.search(t, s, data, q, 10, vectorstore.Filter{})
		recalls = append(recalls, rec)
		// A stored vector finds itself first, with cosine 1.
		self := ls[i*7]
		hits, rec := h.search(t, s, data, self.Vector, 10, vectorstore.Filter{})
		recalls = append(recalls, rec)
		if len(hits) == 0 || hits[0].ID != self.ID || math.Abs(hits[0].Score-1) > scoreTol {
			t.Fatalf("Search(vector of %s) = %+v, want it first with score 1", self.ID, hits)
		}
	}
	// Queries need not be normalised: scaling changes nothing.
	q := unit(r, dim)
	a, _ := h.search(t, s, data, q, 10, vectorstore.Filter{})
	scaled := make([]float32, dim)
	for i, x := range q {
		scaled[i] = 3.5 * x
	}
	b, _ := h.search(t, s, data, scaled, 10, vectorstore.Filter{})
	if h.cfg.minRecall >= 1 && !slices.Equal(ids(a), ids(b)) {
		t.Fatalf("scaled query: %v, want %v", ids(b), ids(a))
	}
	// The opposite of a stored vector scores about -1 against it.
	neg := make([]float32, dim)
	for i, x := range ls[0].Vector {
		neg[i] = -x
	}
	hits, err := s.Search(ctx, neg, vectorstore.MaxK, vectorstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, data, neg, vectorstore.MaxK, vectorstore.Filter{}, hits)
	if last := hits[len(hits)-1]; h.cfg.minRecall >= 1 && (last.ID != ls[0].ID || last.Score > -1+scoreTol) {
		t.Fatalf("last of all hits for -v = %+v, want %s at -1", last, ls[0].ID)
	}
	h.wantRecall(t, recalls)
}

func (h *harness) testSearchFilters(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(7)
	ls := lessons(r, "f", 400, dim)
	upsert(t, s, ls)
	data := byID(ls)
	filters := []vectorstore.Filter{
		{Language: "en"},
		{Language: "pt-BR"},
		{LevelMin: 2, LevelMax: 4},
		{LevelMin: 5},
		{LevelMax: 1},
		{LevelMin: 3, LevelMax: 3},
		{Language: "fr", LevelMin: 2, LevelMax: 4},
		{Language: "en", LevelMin: 6},
		{Language: "de"},              // no lesson
		{LevelMin: 7},                 // no lesson
		{Language: "fr", LevelMax: 0}, // 0 = unbounded
	}
	var recalls []float64
	for _, f := range filters {
		for range 5 {
			q := unit(r, dim)
			hits, rec := h.search(t, s, data, q, 10, f)
			recalls = append(recalls, rec)
			if f.Language == "de" || f.LevelMin == 7 {
				if len(hits) != 0 {
					t.Fatalf("filter %+v matched %v", f, ids(hits))
				}
			}
		}
	}
	h.wantRecall(t, recalls)
	// A filter matching fewer than k lessons returns all of them.
	few := lessons(r, "few", 3, dim)
	for i := range few {
		few[i].Language = "de"
	}
	upsert(t, s, few)
	data = byID(ls, few)
	hits, _ := h.search(t, s, data, unit(r, dim), 10, vectorstore.Filter{Language: "de"})
	if len(hits) != 3 {
		t.Fatalf("filter matching 3 lessons returned %v", ids(hits))
	}
}

func (h *harness) testSearchExclude(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(8)
	ls := lessons(r, "e", 300, dim)
	upsert(t, s, ls)
	data := byID(ls)
	q := unit(r, dim)
	top, _ := h.search(t, s, data, q, 40, vectorstore.Filter{})
	if len(top) != 40 {
		t.Fatalf("got %d hits, want 40", len(top))
	}
	var recalls []float64
	// Exclude the 5 nearest and an unknown id: the next ones come up.
	f := vectorstore.Filter{ExcludeIDs: append(ids(top[:5]), "unknown")}
	hits, rec := h.search(t, s, data, q, 10, f)
	recalls = append(recalls, rec)
	if h.cfg.minRecall >= 1 && !slices.Equal(ids(hits), ids(top[5:15])) {
		t.Fatalf("excluding the top 5: %v, want %v", ids(hits), ids(top[5:15]))
	}
	// More excluded ids than k, some twice.
	f = vectorstore.Filter{ExcludeIDs: append(ids(top[:25]), ids(top[:3])...)}
	hits, rec = h.search(t, s, data, q, 5, f)
	recalls = append(recalls, rec)
	if len(hits) != 5 {
		t.Fatalf("k=5 excluding 25 returned %d hits", len(hits))
	}
	// With filters too.
	f = vectorstore.Filter{Language: "en", LevelMin: 1, ExcludeIDs: ids(top[:30])}
	_, rec = h.search(t, s, data, q, 10, f)
	recalls = append(recalls, rec)
	// As many exclusions as allowed.
	many := ids(top[:30])
	for i := len(many); i < vectorstore.MaxExclude; i++ {
		many = append(many, fmt.Sprint("gone", i))
	}
	_, rec = h.search(t, s, data, q, vectorstore.MaxK, vectorstore.Filter{ExcludeIDs: many})
	recalls = append(recalls, rec)
	// Excluding all but 3 lessons leaves those 3.
	var rest []string
	for _, l := range ls[3:] {
		rest = append(rest, l.ID)
	}
	hits, _ = h.search(t, s, data, q, 10, vectorstore.Filter{ExcludeIDs: rest})
	if got := ids(hits); len(got) != 3 || !slices.Contains(got, "e0") || !slices.Contains(got, "e1") || !slices.Contains(got, "e2") {
		t.Fatalf("excluding all but e0-e2 returned %v", got)
	}
	h.wantRecall(t, recalls)
}

func (h *harness) testSearchK(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(9)
	ls := lessons(r, "k", 30, dim)
	upsert(t, s, ls)
	data := byID(ls)
	q := unit(r, dim)
	for _, k := range []int{1, 2, 29, 30, 31, vectorstore.MaxK} {
		hits, _ := h.search(t, s, data, q, k, vectorstore.Filter{})
		if want := min(k, 30); len(hits) != want {
			t.Fatalf("k=%d: %d hits, want %d", k, len(hits), want)
		}
	}
	for _, k := range []int{0, -1, vectorstore.MaxK + 1, 10000} {
		if hits, err := s.Search(ctx, q, k, vectorstore.Filter{}); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Fatalf("k=%d: %d hits, %v; want ErrInvalid", k, len(hits), err)
		}
	}
}

// snapshot records a store's content to check that a failed call changed
// nothing.
type snapshot struct {
	n  int
	ls []vectorstore.Lesson
}

func snap(t *testing.T, s vectorstore.Store, ls []vectorstore.Lesson) snapshot {
	return snapshot{n: count(t, s), ls: ls}
}

func (sn snapshot) unchanged(t *testing.T, s vectorstore.Store, absent ...string) {
	t.Helper()
	wantCount(t, s, sn.n)
	for _, l := range sn.ls {
		wantLesson(t, s, l)
	}
	for _, id := range absent {
		wantMissing(t, s, id)
	}
}

func (h *harness) testInvalidUpsert(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(10)
	existing := lessons(r, "x", 10, dim)
	upsert(t, s, existing)
	sn := snap(t, s, existing)

	type tc struct {
		name string
		bad  func(l *vectorstore.Lesson)
	}
	scale := func(f float32) func(l *vectorstore.Lesson) {
		return func(l *vectorstore.Lesson) {
			for i := range l.Vector {
				l.Vector[i] *= f
			}
		}
	}
	set := func(i int, x float64) func(l *vectorstore.Lesson) {
		return func(l *vectorstore.Lesson) { l.Vector[i] = float32(x) }
	}
	cases := []tc{
		{"short vector", func(l *vectorstore.Lesson) { l.Vector = l.Vector[:dim-1] }},
		{"long vector", func(l *vectorstore.Lesson) { l.Vector = append(l.Vector, 0) }},
		{"no vector", func(l *vectorstore.Lesson) { l.Vector = nil }},
		{"NaN", set(3, math.NaN())},
		{"+Inf", set(0, math.Inf(1))},
		{"-Inf", set(dim-1, math.Inf(-1))},
		{"not normalised", scale(2)},
		{"zero vector", scale(0)},
		{"empty id", func(l *vectorstore.Lesson) { l.ID = "" }},
		{"long id", func(l *vectorstore.Lesson) { l.ID = strings.Repeat("a", vectorstore.MaxIDLen+1) }},
		{"invalid UTF-8 id", func(l *vectorstore.Lesson) { l.ID = "a\xffb" }},
		{"newline in id", func(l *vectorstore.Lesson) { l.ID = "a\nb" }},
		{"empty language", func(l *vectorstore.Lesson) { l.Language = "" }},
		{"uppercase language", func(l *vectorstore.Lesson) { l.Language = "EN" }},
		{"language injection", func(l *vectorstore.Lesson) { l.Language = `en" || language != "` }},
		{"long language", func(l *vectorstore.Lesson) { l.Language = "en" + strings.Repeat("-abcdefgh", 4) }},
		{"negative level", func(l *vectorstore.Lesson) { l.Level = -1 }},
		{"NaN popularity", func(l *vectorstore.Lesson) { l.Popularity = math.NaN() }},
		{"Inf popularity", func(l *vectorstore.Lesson) { l.Popularity = math.Inf(1) }},
		{"duplicate id", func(l *vectorstore.Lesson) { l.ID = "new0" }},
	}
	for _, c := range cases {
		// Valid new lessons and an overwrite of an existing one come first:
		// none of them may be written.
		batch := lessons(r, "new", 3, dim)
		over := existing[4]
		over.Vector = unit(r, dim)
		over.Popularity++
		bad := lessons(r, "bad", 1, dim)[0]
		c.bad(&bad)
		batch = append(batch, over, bad)
		err := s.Upsert(ctx, batch)
		if !errors.Is(err, vectorstore.ErrInvalid) {
			t.Fatalf("%s: Upsert = %v, want ErrInvalid", c.name, err)
		}
		t.Logf("%s: %v", c.name, err)
		sn.unchanged(t, s, "new0", "new1", "new2", "bad0")
	}
	big := lessons(r, "big", vectorstore.MaxBatch+1, dim)
	if err := s.Upsert(ctx, big); !errors.Is(err, vectorstore.ErrInvalid) {
		t.Fatalf("batch of %d: %v, want ErrInvalid", len(big), err)
	}
	sn.unchanged(t, s, "big0", "big1000")
}

func (h *harness) testInvalidSearch(t *testing.T) {
	s := h.open(t, dim)
	r := newRand(11)
	upsert(t, s, lessons(r, "s", 20, dim))
	q := unit(r, dim)
	mod := func(f func(q []float32) []float32) []float32 { return f(slices.Clone(q)) }
	tooMany := make([]string, vectorstore.MaxExclude+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("x", i)
	}
	cases := []struct {
		name string
		q    []float32
		k    int
		f    vectorstore.Filter
	}{
		{"short query", q[:dim-1], 10, vectorstore.Filter{}},
		{"long query", append(slices.Clone(q), 0), 10, vectorstore.Filter{}},
		{"NaN query", mod(func(q []float32) []float32 { q[1] = float32(math.NaN()); return q }), 10, vectorstore.Filter{}},
		{"Inf query", mod(func(q []float32) []float32 { q[1] = float32(math.Inf(-1)); return q }), 10, vectorstore.Filter{}},
		{"zero query", make([]float32, dim), 10, vectorstore.Filter{}},
		{"k=0", q, 0, vectorstore.Filter{}},
		{"k=10000", q, 10000, vectorstore.Filter{}},
		{"bad language", q, 10, vectorstore.Filter{Language: `en" || id != "`}},
		{"negative level", q, 10, vectorstore.Filter{LevelMin: -1}},
		{"min > max", q, 10, vectorstore.Filter{LevelMin: 4, LevelMax: 2}},
		{"too many excludes", q, 10, vectorstore.Filter{ExcludeIDs: tooMany}},
		{"empty exclude", q, 10, vectorstore.Filter{ExcludeIDs: []string{"s1", ""}}},
		{"long exclude", q, 10, vectorstore.Filter{ExcludeIDs: []string{strings.Repeat("a", vectorstore.MaxIDLen+1)}}},
	}
	for _, c := range cases {
		if hits, err := s.Search(ctx, c.q, c.k, c.f); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Fatalf("%s: %d hits, %v; want ErrInvalid", c.name, len(hits), err)
		}
	}
}

func (h *harness) testInvalidDeleteGet(t *testing.T) {
	s := h.open(t, dim)
	ls := lessons(newRand(12), "g", 10, dim)
	upsert(t, s, ls)
	sn := snap(t, s, ls)
	big := make([]string, vectorstore.MaxBatch+1)
	for i := range big {
		big[i] = ls[i%len(ls)].ID
	}
	for name, batch := range map[string][]string{
		"empty id":     {"g0", "g1", ""},
		"long id":      {"g0", strings.Repeat("a", vectorstore.MaxIDLen+1)},
		"control char": {"g0", "g\x001"},
		"batch":        big,
	} {
		if err := s.Delete(ctx, batch); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Fatalf("Delete(%s) = %v, want ErrInvalid", name, err)
		}
		sn.unchanged(t, s)
	}
	for _, id := range []string{"", strings.Repeat("a", vectorstore.MaxIDLen+1)} {
		if _, err := s.Get(ctx, id); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Fatalf("Get(%.10q) = %v, want ErrInvalid", id, err)
		}
	}
}

func (h *harness) testCancelled(t *testing.T) {
	s := h.open(t, dim)
	ls := lessons(newRand(13), "c", 10, dim)
	upsert(t, s, ls[:5])
	sn := snap(t, s, ls[:5])
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Upsert(cctx, ls[5:]); err == nil {
		t.Fatal("Upsert with a cancelled context succeeded")
	}
	if err := s.Delete(cctx, []string{"c0"}); err == nil {
		t.Fatal("Delete with a cancelled context succeeded")
	}
	if _, err := s.Search(cctx, ls[0].Vector, 5, vectorstore.Filter{}); err == nil {
		t.Fatal("Search with a cancelled context succeeded")
	}
	sn.unchanged(t, s, "c5", "c9")
}

// Writers upsert distinct lessons, two of them fight over the same ids, and
// readers search all along.
func (h *harness) testConcurrent(t *testing.T) {
	s := h.open(t, dim)
	const writers, batches, per = 6, 8, 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		done    = make(chan struct{})
		fights  [2][]vectorstore.Lesson
		written [writers][]vectorstore.Lesson
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for w := range writers {
		written[w] = lessons(newRand(uint64(100+w)), fmt.Sprintf("w%d-", w), batches*per, dim)
	}
	for i := range fights {
		fights[i] = lessons(newRand(uint64(200+i)), "shared", per, dim)
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				if err := s.Upsert(ctx, written[w][b*per:(b+1)*per]); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	for i := range fights {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range batches {
				if err := s.Upsert(ctx, fights[i]); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for i := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := newRand(uint64(300 + i))
			for {
				select {
				case <-done:
					return
				default:
				}
				f := vectorstore.Filter{Language: languages[r.IntN(3)]}
				hits, err := s.Search(ctx, unit(r, dim), 10, f)
				if err != nil {
					fail(err)
					return
				}
				for _, hit := range hits {
					if hit.Language != f.Language {
						fail(fmt.Errorf("hit %+v under filter %+v", hit, f))
						return
					}
				}
				if _, err := s.Count(ctx); err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	readers.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	wantCount(t, s, writers*batches*per+per)
	for w := range writers {
		for _, l := range written[w] {
			wantLesson(t, s, l)
		}
	}
	for i := range per {
		got := get(t, s, fights[0][i].ID)
		if sameLesson(got, fights[0][i]) != nil && sameLesson(got, fights[1][i]) != nil {
			t.Fatalf("%s is neither writer's version", got.ID)
		}
	}
}

func (h *harness) testReopen(t *testing.T) {
	if h.cfg.reopen == nil {
		t.Skip("backend does not offer reopening (vectorstoretest.Reopen)")
	}
	s := h.open(t, dim)
	r := newRand(14)
	ls := lessons(r, "p", 50, dim)
	upsert(t, s, ls)
	if err := s.Delete(ctx, []string{"p0", "p1"}); err != nil {
		t.Fatal(err)
	}
	q := unit(r, dim)
	before, err := s.Search(ctx, q, 10, vectorstore.Filter{Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	s2 := h.cfg.reopen(t, s)
	t.Cleanup(func() { s2.Close() })
	wantCount(t, s2, 48)
	wantMissing(t, s2, "p0")
	for _, l := range ls[2:] {
		wantLesson(t, s2, l)
	}
	after, err := s2.Search(ctx, q, 10, vectorstore.Filter{Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(before), ids(after)) {
		t.Fatalf("after reopen: %v, before: %v", ids(after), ids(before))
	}
	// Still writable.
	upsert(t, s2, ls[:1])
	wantCount(t, s2, 49)
}

func (h *harness) testClose(t *testing.T) {
	s := h.newStore(t, dim)
	upsert(t, s, lessons(newRand(15), "z", 3, dim))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Count(ctx); err == nil {
		t.Fatal("Count after Close succeeded")
	}
}

// RecallTarget is the mean recall@10 against exact float search that the
// Recall test demands of every backend (the target).
const RecallTarget = 0.98

// Clustered returns n lessons shaped like the embeddings of a ReLU network:
// non-negative, each the centre of one of topics random sparse directions
// plus noise, clipped at 0 and normalised (as bench-recs' generator). On
// such data a quantised index must keep the neighbours within a topic apart,
// which uniformly random vectors (whose neighbours are all about as far)
// would not test. Languages cycle through en, fr, pt-BR; levels 1-6.
func Clustered(r *rand.Rand, prefix string, n, d, topics int) []vectorstore.Lesson {
	centres := make([][]float64, topics)
	for t := range centres {
		c := make([]float64, d)
		for i := range c {
			if r.Float64() < 0.33 {
				c[i] = r.ExpFloat64()
			}
		}
		centres[t] = c
	}
	out := make([]vectorstore.Lesson, n)
	for i := range out {
		c := centres[r.IntN(topics)]
		v := make([]float32, d)
		var sum float64
		for j := range v {
			x := math.Max(0, c[j]+0.9*r.NormFloat64())
			v[j], sum = float32(x), sum+x*x
		}
		if sum == 0 {
			v[0], sum = 1, 1
		}
		for j := range v {
			v[j] = float32(float64(v[j]) / math.Sqrt(sum))
		}
		out[i] = vectorstore.Lesson{
			ID: fmt.Sprintf("%s%d", prefix, i), Vector: v, Language: languages[i%len(languages)],
			Level: 1 + r.IntN(6), PublishedAt: base, Popularity: float64(i),
		}
	}
	return out
}

// Profile returns a query like a user profile: the normalised mean of m
// random lessons of ls sharing the topic of the first (found by nearness).
func Profile(r *rand.Rand, ls []vectorstore.Lesson, m int) []float32 {
	first := ls[r.IntN(len(ls))].Vector
	q := append([]float32(nil), first...)
	for added := 1; added < m; {
		l := ls[r.IntN(len(ls))]
		if cosine(first, l.Vector) < 0.6 {
			continue // another topic
		}
		for i, x := range l.Vector {
			q[i] += x
		}
		added++
	}
	return q
}

// MeanRecall searches each query with f and returns the mean recall@k of
// the answers against brute force over data (ties within tieTol count).
func MeanRecall(t testing.TB, s vectorstore.Store, data []vectorstore.Lesson, queries [][]float32, k int, f vectorstore.Filter) float64 {
	t.Helper()
	m := byID(data)
	var sum float64
	for _, q := range queries {
		hits, err := s.Search(ctx, q, k, f)
		if err != nil {
			t.Fatalf("Search(k=%d, %+v): %v", k, f, err)
		}
		sum += checkTB(t, m, q, k, f, hits)
	}
	return sum / float64(len(queries))
}

// testRecall: 2000 clustered 256-d lessons, recall@10 of profile queries
// with and without filters and exclusions, against RecallTarget.
func (h *harness) testRecall(t *testing.T) {
	const d = 256
	s := h.open(t, d)
	r := newRand(16)
	ls := Clustered(r, "c", 2000, d, 20)
	for start := 0; start < len(ls); start += 500 {
		upsert(t, s, ls[start:start+500])
	}
	queries := make([][]float32, 40)
	for i := range queries {
		queries[i] = Profile(r, ls, 4)
	}
	var exclude []string
	for i := 0; i < len(ls); i += 13 {
		exclude = append(exclude, ls[i].ID)
	}
	for _, f := range []vectorstore.Filter{
		{},
		{Language: "en"},
		{Language: "fr", LevelMin: 2, LevelMax: 5},
		{ExcludeIDs: exclude},
	} {
		if rec := MeanRecall(t, s, ls, queries, 10, f); rec < RecallTarget {
			t.Errorf("filter language=%q levels %d-%d, %d excluded: mean recall@10 %.3f, want >= %.2f",
				f.Language, f.LevelMin, f.LevelMax, len(f.ExcludeIDs), rec, RecallTarget)
		} else {
			t.Logf("filter language=%q levels %d-%d, %d excluded: recall@10 %.3f", f.Language, f.LevelMin, f.LevelMax, len(f.ExcludeIDs), rec)
		}
	}
}

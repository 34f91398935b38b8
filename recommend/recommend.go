// Package recommend owns personalised lesson recommendations: a user's
// profile from their events, candidates from the vector store, diversity
// (MMR), freshness and popularity, cold start, and readable reasons.
//
// It reads two stores and writes none: the vector store (lesson vectors of
// the current embedding model) and the catalog (events, titles, states,
// popularity). The catalog is the gate: a lesson is recommended only while
// its state is published there, whatever the vector store still holds, so a
// video blocked between two index updates is never served.
package recommend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/vectorstore"
)

var (
	// ErrInvalid is returned (wrapped) for a bad query: limits, levels.
	ErrInvalid = errors.New("recommend: invalid query")
	// ErrNotFound is returned (wrapped) by Similar for a lesson that is not
	// published or not indexed.
	ErrNotFound = errors.New("recommend: no such lesson")
)

// MaxLimit bounds the items of one answer.
const MaxLimit = 100

// Options tune the ranking. Zero fields take the defaults (see Defaults).
type Options struct {
	// HalfLife is how fast old events fade from the profile.
	HalfLife time.Duration
	// History is how many of the user's latest events make the profile.
	History int
	// Anchors bounds the positive and the negative lessons whose vectors are
	// read (the strongest signals).
	Anchors int
	// PoolFactor: limit*PoolFactor candidates (at least MinPool) are fetched
	// and re-ranked.
	PoolFactor, MinPool int
	// Lambda trades relevance (1) against diversity (0) in MMR.
	Lambda float64
	// Similarity, Freshness and Popularity weigh the blended relevance.
	Similarity, Freshness, Popularity float64
	// FreshnessScale: a lesson this old has freshness 1/e.
	FreshnessScale time.Duration
}

// Defaults are the options used for zero fields.
var Defaults = Options{
	HalfLife: 30 * 24 * time.Hour, History: 200, Anchors: 50, PoolFactor: 4, MinPool: 40, Lambda: 0.9,
	Similarity: 0.85, Freshness: 0.07, Popularity: 0.08, FreshnessScale: 60 * 24 * time.Hour,
}

func (o Options) withDefaults() Options {
	d := Defaults
	if o.HalfLife > 0 {
		d.HalfLife = o.HalfLife
	}
	if o.History > 0 {
		d.History = min(o.History, catalog.MaxUserEvents)
	}
	if o.Anchors > 0 {
		d.Anchors = o.Anchors
	}
	if o.PoolFactor > 0 {
		d.PoolFactor = o.PoolFactor
	}
	if o.MinPool > 0 {
		d.MinPool = o.MinPool
	}
	if o.Lambda > 0 {
		d.Lambda = min(o.Lambda, 1)
	}
	if o.Similarity > 0 || o.Freshness > 0 || o.Popularity > 0 {
		d.Similarity, d.Freshness, d.Popularity = o.Similarity, o.Freshness, o.Popularity
	}
	if o.FreshnessScale > 0 {
		d.FreshnessScale = o.FreshnessScale
	}
	return d
}

// Engine answers recommendation queries. It is safe for concurrent use.
type Engine struct {
	Vectors vectorstore.Store
	Catalog catalog.EventStore
	Options Options
	// Now is the clock (time.Now when nil); tests and the offline
	// evaluation set it.
	Now func() time.Time
}

// Query asks for a user's recommendations.
type Query struct {
	UserID             string
	Limit              int    // 1..MaxLimit
	Language           string // "" for any
	LevelMin, LevelMax int    // 0 leaves a side unbounded
}

// Item is one recommended lesson.
type Item struct {
	LessonID string  `json:"lesson_id"`
	Title    string  `json:"title"`
	Score    float64 `json:"score"`
	RecID    string  `json:"rec_id"`
	Reason   string  `json:"reason"`
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (q Query) validate() error {
	if q.Limit < 1 || q.Limit > MaxLimit {
		return fmt.Errorf("%w: limit %d, want 1 to %d", ErrInvalid, q.Limit, MaxLimit)
	}
	if q.LevelMin < 0 || q.LevelMax < 0 || (q.LevelMin > 0 && q.LevelMax > 0 && q.LevelMin > q.LevelMax) {
		return fmt.Errorf("%w: level range %d..%d", ErrInvalid, q.LevelMin, q.LevelMax)
	}
	return nil
}

// Recommend ranks published lessons for q.UserID. With no positive signal
// in the user's history it falls back to ColdStart.
func (e *Engine) Recommend(ctx context.Context, q Query) ([]Item, error) {
	if err := q.validate(); err != nil {
		return nil, err
	}
	o := e.Options.withDefaults()
	now := e.now()
	events, err := e.Catalog.UserEvents(ctx, q.UserID, o.History)
	if err != nil {
		return nil, fmt.Errorf("recommend for %s: %w", q.UserID, err)
	}
	seen := make([]string, 0, len(events))
	seenSet := map[string]bool{}
	for _, ev := range events {
		if !seenSet[ev.LessonID] {
			seenSet[ev.LessonID] = true
			seen = append(seen, ev.LessonID)
		}
	}
	if len(events) == 0 {
		return e.coldStart(ctx, q, o, now, seenSet)
	}
	// Titles and lengths of what the user saw (views count by fraction watched).
	seenLessons, err := e.lessons(ctx, seen)
	if err != nil {
		return nil, fmt.Errorf("recommend for %s: %w", q.UserID, err)
	}
	durations := make(map[string]int64, len(seenLessons))
	for id, l := range seenLessons {
		durations[id] = l.DurationMS
	}
	signals := Signals(events, durations, now, o.HalfLife)
	anchors := pickAnchors(signals, o.Anchors)
	anchorIDs := make([]string, len(anchors))
	for i, s := range anchors {
		anchorIDs[i] = s.LessonID
	}
	// A lesson no longer indexed (blocked, or not yet in this model's
	// collection) has no vector and does not count.
	vectors, err := e.vectors(ctx, anchorIDs)
	if err != nil {
		return nil, fmt.Errorf("recommend for %s: %w", q.UserID, err)
	}
	profile := ProfileVector(anchors, vectors)
	if profile == nil {
		return e.coldStart(ctx, q, o, now, seenSet)
	}
	if len(seen) > vectorstore.MaxExclude {
		seen = seen[:vectorstore.MaxExclude]
	}
	pool := max(o.MinPool, q.Limit*o.PoolFactor)
	hits, err := e.Vectors.Search(ctx, profile, min(pool, vectorstore.MaxK), vectorstore.Filter{
		Language: q.Language, LevelMin: q.LevelMin, LevelMax: q.LevelMax, ExcludeIDs: seen,
	})
	if err != nil {
		return nil, fmt.Errorf("recommend for %s: %w", q.UserID, err)
	}
	var positives []anchor
	for _, s := range anchors {
		if v, ok := vectors[s.LessonID]; ok && s.Weight > 0 {
			positives = append(positives, anchor{Signal: s, vec: v, title: seenLessons[s.LessonID].Title})
		}
	}
	items, err := e.rank(ctx, hits, q.Limit, o, now, seenSet, func(vec []float32) string {
		return becauseOf(positives, vec)
	})
	if err != nil {
		return nil, fmt.Errorf("recommend for %s: %w", q.UserID, err)
	}
	if len(items) < q.Limit {
		// Too few matches (a narrow filter, a small catalogue): fill with cold start.
		for _, id := range items {
			seenSet[id.LessonID] = true
		}
		more, err := e.coldStart(ctx, Query{UserID: q.UserID, Limit: q.Limit - len(items), Language: q.Language,
			LevelMin: q.LevelMin, LevelMax: q.LevelMax}, o, now, seenSet)
		if err != nil {
			return nil, err
		}
		items = append(items, more...)
	}
	stampRecIDs(items)
	return items, nil
}

// anchor is a lesson of the user's history used to explain a recommendation.
type anchor struct {
	Signal
	vec   []float32
	title string
}

// pickAnchors keeps the n strongest positive and n strongest negative
// signals (signals are sorted strongest first).
func pickAnchors(signals []Signal, n int) []Signal {
	var out []Signal
	pos, neg := 0, 0
	for _, s := range signals {
		if s.Weight > 0 && pos < n {
			pos++
			out = append(out, s)
		} else if s.Weight < 0 && neg < n {
			neg++
			out = append(out, s)
		}
	}
	return out
}

// becauseOf names the positive lesson closest to vec.
func becauseOf(positives []anchor, vec []float32) string {
	best, bestSim := -1, math.Inf(-1)
	for i, a := range positives {
		if s := cosine(a.vec, vec); s > bestSim {
			best, bestSim = i, s
		}
	}
	if best < 0 {
		return "matches what you watched"
	}
	a := positives[best]
	verb := "watched"
	switch a.Kind {
	case catalog.EventComplete:
		verb = "completed"
	case catalog.EventLike:
		verb = "liked"
	}
	return "similar to " + strconv.Quote(a.title) + ", which you " + verb
}

// batchGetter is a vector store that reads many lessons in one call
// (vectorstore.SQLiteVec): one query instead of one per id.
type batchGetter interface {
	GetMany(ctx context.Context, ids []string) (map[string]vectorstore.Lesson, error)
}

// vectors reads the vectors of the indexed lessons among ids (distinct);
// the others are absent from the map.
func (e *Engine) vectors(ctx context.Context, ids []string) (map[string][]float32, error) {
	out := make(map[string][]float32, len(ids))
	if bg, ok := e.Vectors.(batchGetter); ok {
		for start := 0; start < len(ids); start += vectorstore.MaxBatch {
			m, err := bg.GetMany(ctx, ids[start:min(start+vectorstore.MaxBatch, len(ids))])
			if err != nil {
				return nil, err
			}
			for id, l := range m {
				out[id] = l.Vector
			}
		}
		return out, nil
	}
	for _, id := range ids {
		l, err := e.Vectors.Get(ctx, id)
		if errors.Is(err, vectorstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = l.Vector
	}
	return out, nil
}

// lessons looks ids up in the catalog in chunks.
func (e *Engine) lessons(ctx context.Context, ids []string) (map[string]catalog.Lesson, error) {
	out := make(map[string]catalog.Lesson, len(ids))
	for start := 0; start < len(ids); start += catalog.MaxLessonLookup {
		m, err := e.Catalog.Lessons(ctx, ids[start:min(start+catalog.MaxLessonLookup, len(ids))])
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}

// rank keeps the published hits, blends similarity with freshness and
// popularity, and picks limit of them with MMR.
func (e *Engine) rank(ctx context.Context, hits []vectorstore.Hit, limit int, o Options, now time.Time,
	exclude map[string]bool, reason func([]float32) string) ([]Item, error) {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	ls, err := e.lessons(ctx, ids)
	if err != nil {
		return nil, err
	}
	type cand struct {
		hit    vectorstore.Hit
		lesson catalog.Lesson
		vec    []float32
	}
	var cands []cand
	maxPop := 0.0
	for _, h := range hits {
		l, ok := ls[h.ID]
		if !ok || l.State != catalog.StatePublished || exclude[h.ID] {
			continue
		}
		cands = append(cands, cand{hit: h, lesson: l})
		maxPop = math.Max(maxPop, l.Stats.Popularity())
	}
	// MMR and reasons need the candidates' vectors; only the best few
	// (3x the answer) take part, which bounds the reads.
	cands = cands[:min(len(cands), 3*limit)]
	candIDs := make([]string, len(cands))
	for i, c := range cands {
		candIDs[i] = c.hit.ID
	}
	byID, err := e.vectors(ctx, candIDs)
	if err != nil {
		return nil, err
	}
	rel := make([]float64, len(cands))
	vecs := make([][]float32, len(cands))
	for i := range cands {
		cands[i].vec, vecs[i] = byID[cands[i].hit.ID], byID[cands[i].hit.ID]
		rel[i] = o.Similarity*cands[i].hit.Score + o.Freshness*freshness(cands[i].lesson.PublishedAt, now, o.FreshnessScale) +
			o.Popularity*popularity(cands[i].lesson.Stats.Popularity(), maxPop)
	}
	picked := MMR(rel, vecs, limit, o.Lambda)
	items := make([]Item, 0, len(picked))
	for _, i := range picked {
		c := cands[i]
		items = append(items, Item{LessonID: c.hit.ID, Title: c.lesson.Title, Score: round4(rel[i]), Reason: reason(c.vec)})
	}
	return items, nil
}

// freshness is 1 for a lesson published now, 1/e at scale, 0 if unknown.
func freshness(published, now time.Time, scale time.Duration) float64 {
	if published.IsZero() {
		return 0
	}
	age := max(0, now.Sub(published))
	return math.Exp(-float64(age) / float64(scale))
}

// popularity maps p to [0, 1] on a log scale relative to maxPop.
func popularity(p, maxPop float64) float64 {
	if maxPop <= 0 {
		return 0
	}
	return math.Log1p(p) / math.Log1p(maxPop)
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// coldStart ranks new and popular published lessons for the language and
// level, skipping exclude.
func (e *Engine) coldStart(ctx context.Context, q Query, o Options, now time.Time, exclude map[string]bool) ([]Item, error) {
	pool := max(o.MinPool, q.Limit*o.PoolFactor) + len(exclude)
	base := catalog.PublishedQuery{Language: q.Language, LevelMin: q.LevelMin, LevelMax: q.LevelMax, Limit: min(pool, catalog.MaxLimit)}
	newest, err := e.Catalog.PublishedLessons(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("cold start for %s: %w", q.UserID, err)
	}
	base.Order = catalog.MostPopularFirst
	popular, err := e.Catalog.PublishedLessons(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("cold start for %s: %w", q.UserID, err)
	}
	type cand struct {
		l            catalog.Lesson
		fresh, pop   float64
		score        float64
		byPopularity bool
	}
	seen := map[string]bool{}
	var cands []cand
	maxPop := 0.0
	for _, l := range append(popular, newest...) {
		if seen[l.ID] || exclude[l.ID] {
			continue
		}
		seen[l.ID] = true
		cands = append(cands, cand{l: l})
		maxPop = math.Max(maxPop, l.Stats.Popularity())
	}
	// Freshness over a week here: cold start is where new lessons get seen.
	for i := range cands {
		c := &cands[i]
		c.fresh = freshness(c.l.PublishedAt, now, 7*24*time.Hour)
		c.pop = popularity(c.l.Stats.Popularity(), maxPop)
		c.score = 0.6*c.pop + 0.4*c.fresh
		c.byPopularity = 0.6*c.pop >= 0.4*c.fresh
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].score > cands[j].score })
	where := "on LessonFlow"
	switch {
	case q.LevelMin > 0 || q.LevelMax > 0:
		where = "at your level"
	case q.Language != "":
		where = "in " + q.Language
	}
	items := make([]Item, 0, q.Limit)
	for _, c := range cands[:min(len(cands), q.Limit)] {
		reason := "popular " + where
		if !c.byPopularity {
			reason = "new " + where
		}
		items = append(items, Item{LessonID: c.l.ID, Title: c.l.Title, Score: round4(c.score), Reason: reason})
	}
	stampRecIDs(items)
	return items, nil
}

// Similar returns published lessons nearest to a published, indexed one.
func (e *Engine) Similar(ctx context.Context, lessonID string, limit int) ([]Item, error) {
	if limit < 1 || limit > MaxLimit {
		return nil, fmt.Errorf("%w: limit %d, want 1 to %d", ErrInvalid, limit, MaxLimit)
	}
	ls, err := e.Catalog.Lessons(ctx, []string{lessonID})
	if err != nil {
		return nil, fmt.Errorf("similar to %s: %w", lessonID, err)
	}
	src, ok := ls[lessonID]
	if !ok || src.State != catalog.StatePublished {
		return nil, fmt.Errorf("similar to %s: %w", lessonID, ErrNotFound)
	}
	l, err := e.Vectors.Get(ctx, lessonID)
	if errors.Is(err, vectorstore.ErrNotFound) {
		return nil, fmt.Errorf("similar to %s: %w (not indexed)", lessonID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("similar to %s: %w", lessonID, err)
	}
	// Over-fetch: some hits may be unpublished since they were indexed.
	hits, err := e.Vectors.Search(ctx, l.Vector, min(vectorstore.MaxK, 2*limit+10), vectorstore.Filter{ExcludeIDs: []string{lessonID}})
	if err != nil {
		return nil, fmt.Errorf("similar to %s: %w", lessonID, err)
	}
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	found, err := e.lessons(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("similar to %s: %w", lessonID, err)
	}
	items := make([]Item, 0, limit)
	for _, h := range hits {
		c, ok := found[h.ID]
		if !ok || c.State != catalog.StatePublished {
			continue
		}
		items = append(items, Item{LessonID: h.ID, Title: c.Title, Score: round4(h.Score), Reason: "similar to " + strconv.Quote(src.Title)})
		if len(items) == limit {
			break
		}
	}
	stampRecIDs(items)
	return items, nil
}

// stampRecIDs gives every item of one answer an id, "<answer>-<position>",
// that the app sends back with the events the item leads to.
func stampRecIDs(items []Item) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	answer := "r" + hex.EncodeToString(b[:])
	for i := range items {
		items[i].RecID = answer + "-" + strconv.Itoa(i+1)
	}
}

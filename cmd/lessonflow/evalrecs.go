package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
)

// runEvalRecs is `lessonflow eval-recs`: an offline evaluation of the
// recommender on a generated catalogue and users with hidden preferences
// (see recsgen.go). Each user's events are split in time: the older 80% are
// replayed through the catalog's event store, and the positive events
// (complete, like) of the newer 20% are what a good recommender should
// find. Three rankers answer for every user, in the user's language:
//
//   - lessonflow: recommend.Engine as the API runs it (profile, sqlite-vec
//     search, freshness/popularity blend, MMR);
//   - exact: the same profile vector, ranked by exact float cosine over all
//     lessons in Go, nothing else (what retrieval alone gives);
//   - popularity: the most popular lessons in the language, from the
//     replayed events.
//
// It prints recall@10, NDCG@10 and catalogue coverage (distinct lessons
// recommended over all users / lessons).
func runEvalRecs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eval-recs", flag.ContinueOnError)
	lessons := fs.Int("lessons", 5000, "lessons to generate")
	users := fs.Int("users", 500, "users to generate")
	events := fs.Int("events", 30, "events per user (before held-back split)")
	topics := fs.Int("topics", 40, "topics of the catalogue")
	dim := fs.Int("dim", 1024, "vector dimension")
	seed := fs.Uint64("seed", 1, "generator seed")
	lambda := fs.Float64("lambda", recommend.Defaults.Lambda, "MMR trade-off (1: relevance only)")
	pop := fs.Float64("popularity", recommend.Defaults.Popularity, "weight of popularity in the blend")
	fresh := fs.Float64("freshness", recommend.Defaults.Freshness, "weight of freshness in the blend")
	if err := fs.Parse(args); err != nil {
		return err
	}
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	fmt.Printf("generating %d lessons (%d-d, %d topics) and %d users x %d events (seed %d)\n", *lessons, *dim, *topics, *users, *events, *seed)
	g := generate(*seed, *lessons, *dim, *topics, *users, *events, now)

	dir, err := scratchDir("lessonflow-eval-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cat, err := openBenchCatalog(ctx, dir, "", g.lessons)
	if err != nil {
		return err
	}
	defer cat.Close()
	vs, err := vectorstore.OpenSQLiteVec(dir, vectorstore.CollectionName("eval", *dim), *dim)
	if err != nil {
		return err
	}
	defer vs.Close()
	if _, err := indexLessons(ctx, vs, g.lessons); err != nil {
		return fmt.Errorf("index: %w", err)
	}

	// Split each user's events in time.
	held := map[string]map[string]bool{}
	var train []catalog.Event
	for _, u := range g.users {
		cut := len(u.events) * 8 / 10
		train = append(train, u.events[:cut]...)
		for _, e := range u.events[cut:] {
			if e.Type == catalog.EventComplete || e.Type == catalog.EventLike {
				if held[u.id] == nil {
					held[u.id] = map[string]bool{}
				}
				held[u.id][e.LessonID] = true
			}
		}
	}
	if err := recordEvents(ctx, cat, train); err != nil {
		return fmt.Errorf("replay events: %w", err)
	}
	byID := map[string]*genLesson{}
	for i := range g.lessons {
		byID[g.lessons[i].id] = &g.lessons[i]
	}
	eng := &recommend.Engine{Vectors: vs, Catalog: cat, Now: func() time.Time { return now },
		Options: recommend.Options{Lambda: *lambda, Similarity: 1 - *pop - *fresh, Popularity: *pop, Freshness: *fresh}}

	type method struct {
		name           string
		recall, ndcg   float64
		recommended    map[string]bool
		users          int
		recommendFor   func(u genUser, seen map[string]bool) ([]string, error)
		totalLatencyMS float64
	}
	methods := []*method{
		{name: "lessonflow (profile + sqlite-vec + blend + MMR)", recommendFor: func(u genUser, _ map[string]bool) ([]string, error) {
			items, err := eng.Recommend(ctx, recommend.Query{UserID: u.id, Limit: 10, Language: u.language})
			return itemIDs(items), err
		}},
		{name: "exact float search of the same profile", recommendFor: func(u genUser, seen map[string]bool) ([]string, error) {
			evs, err := cat.UserEvents(ctx, u.id, 200)
			if err != nil {
				return nil, err
			}
			sig := recommend.Signals(evs, nil, now, recommend.Defaults.HalfLife)
			vecs := map[string][]float32{}
			for _, s := range sig {
				vecs[s.LessonID] = byID[s.LessonID].vector
			}
			p := recommend.ProfileVector(sig, vecs)
			if p == nil {
				return nil, nil
			}
			return exactTop(g.lessons, p, u.language, seen, 10), nil
		}},
		{name: "popularity baseline", recommendFor: func(u genUser, seen map[string]bool) ([]string, error) {
			ls, err := cat.PublishedLessons(ctx, catalog.PublishedQuery{Language: u.language, Order: catalog.MostPopularFirst, Limit: 10 + len(seen)})
			if err != nil {
				return nil, err
			}
			var out []string
			for _, l := range ls {
				if !seen[l.ID] && len(out) < 10 {
					out = append(out, l.ID)
				}
			}
			return out, nil
		}},
	}
	for _, m := range methods {
		m.recommended = map[string]bool{}
	}
	for _, u := range g.users {
		truth := held[u.id]
		if len(truth) == 0 {
			continue
		}
		seen := map[string]bool{}
		for _, e := range u.events[:len(u.events)*8/10] {
			seen[e.LessonID] = true
		}
		for _, m := range methods {
			start := time.Now()
			ids, err := m.recommendFor(u, seen)
			if err != nil {
				return fmt.Errorf("%s for %s: %w", m.name, u.id, err)
			}
			m.totalLatencyMS += float64(time.Since(start).Microseconds()) / 1000
			r, n := recallNDCG(ids, truth, 10)
			m.recall += r
			m.ndcg += n
			m.users++
			for _, id := range ids {
				m.recommended[id] = true
			}
		}
	}
	fmt.Printf("\n%d users with held-back positives; %d lessons\n\n", methods[0].users, len(g.lessons))
	fmt.Println("| ranker | recall@10 | NDCG@10 | catalogue coverage | ms/user |")
	fmt.Println("|---|---|---|---|---|")
	for _, m := range methods {
		n := float64(max(1, m.users))
		fmt.Printf("| %s | %.3f | %.3f | %.1f%% | %.2f |\n", m.name, m.recall/n, m.ndcg/n,
			100*float64(len(m.recommended))/float64(len(g.lessons)), m.totalLatencyMS/n)
	}
	return nil
}

func itemIDs(items []recommend.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.LessonID
	}
	return out
}

// exactTop ranks lessons of the language by exact cosine to p.
func exactTop(lessons []genLesson, p []float32, language string, exclude map[string]bool, k int) []string {
	type scored struct {
		id string
		s  float64
	}
	var all []scored
	for _, l := range lessons {
		if (language != "" && l.language != language) || exclude[l.id] {
			continue
		}
		var dot float64
		for i, x := range l.vector {
			dot += float64(x) * float64(p[i])
		}
		all = append(all, scored{l.id, dot})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].s > all[j].s })
	out := make([]string, 0, k)
	for _, s := range all[:min(k, len(all))] {
		out = append(out, s.id)
	}
	return out
}

// recallNDCG scores a ranked list against a set of relevant ids (binary
// relevance): recall@k divides the hits by min(k, relevant).
func recallNDCG(ranked []string, relevant map[string]bool, k int) (recall, ndcg float64) {
	var hits int
	var dcg float64
	for i, id := range ranked[:min(k, len(ranked))] {
		if relevant[id] {
			hits++
			dcg += 1 / math.Log2(float64(i+2))
		}
	}
	var idcg float64
	for i := range min(k, len(relevant)) {
		idcg += 1 / math.Log2(float64(i+2))
	}
	return float64(hits) / float64(min(k, len(relevant))), dcg / idcg
}

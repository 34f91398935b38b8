package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/vectorstore"
)

// The synthetic catalogue and users shared by `eval-recs` and `bench-recs`.
//
// Lessons. Each lesson belongs to one of T topics. A topic is a random
// non-negative direction in the embedding space (MobileNet embeddings are
// averages of ReLU outputs, hence non-negative), and a lesson's vector is
// its topic's direction plus Gaussian noise, clipped at 0 and normalised:
// lessons of one topic are close, different topics are far apart, much as
// frames of similar lessons are. Languages are skewed (en 40%, es 20%,
// pt-BR 15%, fr 10%, de 10%, ja 5%), levels uniform 1-6, publication times
// uniform over the last 180 days, and every lesson has a hidden appeal
// (Zipf-like) that makes some lessons more often chosen than others.
//
// Users. A user has a language, a level, and hidden preferences: 1-3
// favourite topics with random weights. A user's lessons are drawn 85% of
// the time from a favourite topic (weighted), 15% from any topic; within
// the topic, lessons in their language within one level of theirs, picked
// by appeal. On a favourite topic they complete (70%), like (15%) or watch
// part (15%); off their favourites they skip (50%), dislike (20%) or watch
// part. Events are a day apart, oldest first.

type genLesson struct {
	id       string
	topic    int
	language string
	level    int
	appeal   float64
	vector   []float32
	at       time.Time
}

type genUser struct {
	id       string
	language string
	level    int
	topics   []int
	weights  []float64
	events   []catalog.Event
}

var genLanguages = []struct {
	lang  string
	share float64
}{{"en", 0.40}, {"es", 0.20}, {"pt-BR", 0.15}, {"fr", 0.10}, {"de", 0.10}, {"ja", 0.05}}

func pickLanguage(r *rand.Rand) string {
	x := r.Float64()
	for _, l := range genLanguages {
		if x -= l.share; x < 0 {
			return l.lang
		}
	}
	return "en"
}

type generated struct {
	lessons []genLesson
	byKey   map[string][]int // "topic/language/level" → lesson indexes
	users   []genUser
}

func lessonID(i int) string { return fmt.Sprintf("v%024x", i+1) }

// generate makes n lessons of dim dimensions over topics topics, and users.
func generate(seed uint64, n, dim, topics, users, eventsPerUser int, now time.Time) *generated {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	centroids := make([][]float64, topics)
	for t := range centroids {
		c := make([]float64, dim)
		for i := range c {
			// Sparse-ish non-negative: about a third of the dimensions fire.
			if r.Float64() < 0.33 {
				c[i] = r.ExpFloat64()
			}
		}
		centroids[t] = c
	}
	g := &generated{byKey: map[string][]int{}}
	for i := range n {
		t := r.IntN(topics)
		v := make([]float32, dim)
		var norm float64
		for d := range v {
			x := math.Max(0, centroids[t][d]+0.9*r.NormFloat64())
			v[d] = float32(x)
			norm += x * x
		}
		norm = math.Sqrt(norm)
		for d := range v {
			v[d] = float32(float64(v[d]) / norm)
		}
		l := genLesson{id: lessonID(i), topic: t, language: pickLanguage(r), level: 1 + r.IntN(6),
			appeal: 1 / math.Pow(float64(1+r.IntN(1000)), 0.8), vector: v,
			at: now.Add(-time.Duration(r.Int64N(int64(180 * 24 * time.Hour))))}
		g.lessons = append(g.lessons, l)
		key := fmt.Sprintf("%d/%s/%d", t, l.language, l.level)
		g.byKey[key] = append(g.byKey[key], i)
	}
	for u := range users {
		user := genUser{id: fmt.Sprintf("user-%05d", u), language: pickLanguage(r), level: 1 + r.IntN(6)}
		for range 1 + r.IntN(3) {
			user.topics = append(user.topics, r.IntN(topics))
			user.weights = append(user.weights, 0.2+r.Float64())
		}
		seen := map[int]bool{}
		start := now.Add(-time.Duration(eventsPerUser+1) * 24 * time.Hour)
		for e := 0; e < eventsPerUser; e++ {
			fav := r.Float64() < 0.85
			t := r.IntN(topics)
			if fav {
				t = user.topics[pickWeighted(r, user.weights)]
			}
			lvl := min(6, max(1, user.level+r.IntN(3)-1))
			cands := g.byKey[fmt.Sprintf("%d/%s/%d", t, user.language, lvl)]
			i, ok := pickByAppeal(r, g.lessons, cands, seen)
			if !ok {
				continue
			}
			seen[i] = true
			ev := catalog.Event{UserID: user.id, ID: fmt.Sprintf("%s-e%d", user.id, e), LessonID: g.lessons[i].id,
				At: start.Add(time.Duration(e) * 24 * time.Hour)}
			x := r.Float64()
			isFav := false
			for _, ft := range user.topics {
				isFav = isFav || ft == t
			}
			switch {
			case isFav && x < 0.70:
				ev.Type, ev.WatchSeconds = catalog.EventComplete, 300
			case isFav && x < 0.85:
				ev.Type = catalog.EventLike
			case isFav:
				ev.Type, ev.WatchSeconds = catalog.EventView, 60+r.Float64()*200
			case x < 0.5:
				ev.Type = catalog.EventSkip
			case x < 0.7:
				ev.Type = catalog.EventDislike
			default:
				ev.Type, ev.WatchSeconds = catalog.EventView, r.Float64()*100
			}
			user.events = append(user.events, ev)
		}
		g.users = append(g.users, user)
	}
	return g
}

func pickWeighted(r *rand.Rand, w []float64) int {
	var sum float64
	for _, x := range w {
		sum += x
	}
	x := r.Float64() * sum
	for i, v := range w {
		if x -= v; x < 0 {
			return i
		}
	}
	return len(w) - 1
}

func pickByAppeal(r *rand.Rand, lessons []genLesson, cands []int, seen map[int]bool) (int, bool) {
	var sum float64
	for _, i := range cands {
		if !seen[i] {
			sum += lessons[i].appeal
		}
	}
	if sum == 0 {
		return 0, false
	}
	x := r.Float64() * sum
	for _, i := range cands {
		if seen[i] {
			continue
		}
		if x -= lessons[i].appeal; x < 0 {
			return i, true
		}
	}
	return 0, false
}

// scratchDir is where the tools build their throwaway stores: in memory
// (/dev/shm) when there is one, so seeding is not bound by fsync.
// sqliteSeedDSN is the DSN seedCatalog writes a SQLite catalog file with.
func sqliteSeedDSN(path string) string {
	return (&url.URL{Scheme: "file", Path: path}).String() + "?_busy_timeout=10000&_txlock=immediate"
}

func scratchDir(prefix string) (string, error) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return os.MkdirTemp("/dev/shm", prefix)
	}
	return os.MkdirTemp("", prefix)
}

// seedCatalog writes the lessons as published videos straight into a
// catalog database that catalog.OpenSQLite or OpenPostgres created, in one
// transaction. Only these offline tools do this: seeding 100K lessons
// through the pipeline is not what they measure.
func seedCatalog(ctx context.Context, driver, dsn string, lessons []genLesson) error {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	vid, err := tx.PrepareContext(ctx, `INSERT INTO videos (id, sha256, title, description, level, language, tags, teacher_id,
		state, error, blob_key, size_bytes, media, created_at, updated_at)
		VALUES ($1, '', $2, '', $3, $4, '[]', 'seed', 'published', '', '', 0, '{"duration_ms":300000}', $5, $6)`)
	if err != nil {
		return err
	}
	pub, err := tx.PrepareContext(ctx, `INSERT INTO publications (video_id, published_at) VALUES ($1, $2)`)
	if err != nil {
		return err
	}
	for _, l := range lessons {
		us := l.at.UnixMicro()
		if _, err := vid.ExecContext(ctx, l.id, fmt.Sprintf("Lesson %s (topic %d)", l.id[len(l.id)-6:], l.topic),
			l.level, l.language, us, us); err != nil {
			return err
		}
		if _, err := pub.ExecContext(ctx, l.id, us); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// indexLessons upserts the lessons' vectors in batches and returns the time it took.
func indexLessons(ctx context.Context, vs vectorstore.Store, lessons []genLesson) (time.Duration, error) {
	start := time.Now()
	for i := 0; i < len(lessons); i += vectorstore.MaxBatch {
		var batch []vectorstore.Lesson
		for _, l := range lessons[i:min(i+vectorstore.MaxBatch, len(lessons))] {
			batch = append(batch, vectorstore.Lesson{ID: l.id, Vector: l.vector, Language: l.language, Level: l.level,
				PublishedAt: l.at, Popularity: 0})
		}
		if err := vs.Upsert(ctx, batch); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// recordEvents stores events through the catalog in batches.
func recordEvents(ctx context.Context, es catalog.EventStore, events []catalog.Event) error {
	for i := 0; i < len(events); i += catalog.MaxEventBatch {
		if _, err := es.RecordEvents(ctx, events[i:min(i+catalog.MaxEventBatch, len(events))]); err != nil {
			return err
		}
	}
	return nil
}

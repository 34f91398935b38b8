package vectorstore_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/vectorstore"
)

// The benchmark collection is built once per process (it takes a while) in
// benchDir, which TestMain removes. VECTORSTORE_BENCH_N overrides its size.
var (
	benchDir   string
	benchOnce  sync.Once
	benchStore *vectorstore.SQLiteVec
	benchErr   error
	// benchData keeps what was stored, for the exact answers of recall.
	benchData []vectorstore.Lesson
)

const benchDim = 1024

// benchLanguages is a skewed mix, as a catalogue would have: "en" holds 40%.
var benchLanguages = []struct {
	lang  string
	share float64
}{{"en", 0.40}, {"es", 0.20}, {"pt-BR", 0.15}, {"fr", 0.10}, {"de", 0.10}, {"ja", 0.05}}

func benchLanguage(r *rand.Rand) string {
	x := r.Float64()
	for _, l := range benchLanguages {
		if x -= l.share; x < 0 {
			return l.lang
		}
	}
	return "en"
}

// benchTopics are the clusters of the benchmark's vectors: like the
// embeddings of a ReLU network (and bench-recs' generator), vectors are
// non-negative, about a third of the features fire per topic, and a lesson
// is its topic plus noise. Uniformly random vectors have no neighbours worth
// the name, so they would measure nothing about quantisation.
var benchTopics = func() [][]float64 {
	r := rand.New(rand.NewPCG(1, 1))
	out := make([][]float64, 200)
	for t := range out {
		c := make([]float64, benchDim)
		for i := range c {
			if r.Float64() < 0.33 {
				c[i] = r.ExpFloat64()
			}
		}
		out[t] = c
	}
	return out
}()

func benchVector(r *rand.Rand) []float32 {
	c := benchTopics[r.IntN(len(benchTopics))]
	v := make([]float32, benchDim)
	var sum float64
	for i := range v {
		x := math.Max(0, c[i]+0.9*r.NormFloat64())
		v[i], sum = float32(x), sum+x*x
	}
	n := math.Sqrt(sum)
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
	return v
}

func buildBench(b *testing.B) *vectorstore.SQLiteVec {
	benchOnce.Do(func() {
		n := 100_000
		if s := os.Getenv("VECTORSTORE_BENCH_N"); s != "" {
			if n, benchErr = strconv.Atoi(s); benchErr != nil {
				return
			}
		}
		// /dev/shm when there is one: the file is memory-mapped either way,
		// and building on a slow disk measures the disk.
		tmp := ""
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			tmp = "/dev/shm"
		}
		if benchDir, benchErr = os.MkdirTemp(tmp, "vectorstore-bench-"); benchErr != nil {
			return
		}
		if benchStore, benchErr = vectorstore.OpenSQLiteVec(benchDir, "lessons_bench_1024", benchDim); benchErr != nil {
			return
		}
		r := rand.New(rand.NewPCG(42, 43))
		start := time.Now()
		for done := 0; done < n; {
			batch := make([]vectorstore.Lesson, min(vectorstore.MaxBatch, n-done))
			for i := range batch {
				batch[i] = vectorstore.Lesson{
					ID:          fmt.Sprintf("v%07d", done+i),
					Vector:      benchVector(r),
					Language:    benchLanguage(r),
					Level:       1 + r.IntN(6),
					PublishedAt: time.Now(),
					Popularity:  r.Float64(),
				}
			}
			benchData = append(benchData, batch...)
			if benchErr = benchStore.Upsert(context.Background(), batch); benchErr != nil {
				return
			}
			done += len(batch)
		}
		fi, err := os.Stat(benchStore.Path())
		if err != nil {
			benchErr = err
			return
		}
		b.Logf("built %d x %d-d in %v (%.0f lessons/s), file %.0f MiB",
			n, benchDim, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds(), float64(fi.Size())/(1<<20))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchStore
}

// benchQueries returns the 64 search vectors every benchmark uses (fixed
// seed, same topics as the collection) and nExclude stored ids to exclude.
func benchQueries(nExclude int) (queries [][]float32, exclude []string) {
	r := rand.New(rand.NewPCG(7, 8))
	queries = make([][]float32, 64)
	for i := range queries {
		queries[i] = benchVector(r)
	}
	exclude = make([]string, nExclude)
	for i := range exclude {
		exclude[i] = fmt.Sprintf("v%07d", i*7)
	}
	return queries, exclude
}

// BenchmarkSQLiteVecSearch measures top-10 searches over 100K x 1024-d
// random normalised vectors (6 languages, "en" 40%, "ja" 5%; levels 1-6),
// Count, and reopening the file. Run it with
//
//	go test -run '^$' -bench SQLiteVecSearch -benchtime 50x -v ./vectorstore/
//
// -v shows the build time (about 10 s). Add
// CGO_CFLAGS="-O2 -mavx2 -DSQLITE_VEC_ENABLE_AVX" for sqlite-vec's AVX kernel.
func BenchmarkSQLiteVecSearch(b *testing.B) {
	s := buildBench(b)
	ctx := context.Background()
	queries, exclude := benchQueries(100)
	for _, c := range []struct {
		name string
		f    vectorstore.Filter
	}{
		{"unfiltered_top10", vectorstore.Filter{}},
		{"language_top10", vectorstore.Filter{Language: "en"}},
		{"language_level_top10", vectorstore.Filter{Language: "en", LevelMin: 3, LevelMax: 4}},
		{"small_language_top10", vectorstore.Filter{Language: "ja"}},
		{"language_exclude100_top10", vectorstore.Filter{Language: "en", ExcludeIDs: exclude}},
	} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			var hitIDs [][]string
			for b.Loop() {
				hits, err := s.Search(ctx, queries[i%len(queries)], 10, c.f)
				if err != nil || len(hits) != 10 {
					b.Fatalf("%d hits, %v", len(hits), err)
				}
				if i < len(queries) {
					hitIDs = append(hitIDs, hitList(hits))
				}
				i++
			}
			b.ReportMetric(benchRecall(queries, hitIDs, c.f), "recall@10")
		})
	}
	b.Run("count", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Count(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Reopen: open the file and answer a first search.
	b.Run("reopen", func(b *testing.B) {
		for b.Loop() {
			s2, err := vectorstore.OpenSQLiteVec(benchDir, "lessons_bench_1024", benchDim)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s2.Search(ctx, queries[0], 10, vectorstore.Filter{Language: "en"}); err != nil {
				b.Fatal(err)
			}
			s2.Close()
		}
	})
}

func hitList(hits []vectorstore.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

// benchRecall is the mean recall@10 of the answers got[i] to queries[i]
// against brute force over benchData.
func benchRecall(queries [][]float32, got [][]string, f vectorstore.Filter) float64 {
	exclude := map[string]bool{}
	for _, id := range f.ExcludeIDs {
		exclude[id] = true
	}
	var sum float64
	for qi, ids := range got {
		q := queries[qi]
		type scored struct {
			id string
			s  float64
		}
		var best []scored
		for _, l := range benchData {
			if f.Language != "" && l.Language != f.Language || f.LevelMin > 0 && l.Level < f.LevelMin ||
				f.LevelMax > 0 && l.Level > f.LevelMax || exclude[l.ID] {
				continue
			}
			var dot float64
			for d, x := range l.Vector {
				dot += float64(x) * float64(q[d])
			}
			if len(best) < 10 || dot > best[len(best)-1].s {
				best = append(best, scored{l.ID, dot})
				sort.Slice(best, func(a, b int) bool { return best[a].s > best[b].s })
				best = best[:min(10, len(best))]
			}
		}
		want := map[string]bool{}
		for _, x := range best {
			want[x.id] = true
		}
		hit := 0
		for _, id := range ids {
			if want[id] {
				hit++
			}
		}
		sum += float64(hit) / float64(len(best))
	}
	return sum / float64(len(got))
}

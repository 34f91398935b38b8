package vectorstore_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/vectorstore/vectorstoretest"
)

func quantInfo(t *testing.T, s *vectorstore.SQLiteVec) vectorstore.QuantInfo {
	t.Helper()
	q, err := s.Quantization(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// The centre is fitted by the first Upsert and refitted each time the
// collection doubles; searches stay right across refits.
func TestSQLiteVecRefitSchedule(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, t.TempDir(), 32)
	defer s.Close()
	if q := quantInfo(t, s); q.Generation != 0 {
		t.Fatalf("empty collection: %+v, want generation 0", q)
	}
	ls := vectorstoretest.Clustered(rand.New(rand.NewPCG(3, 4)), "g", 100, 32, 5)
	for i, want := range []struct{ n, gen, fitted int64 }{
		{1, 1, 1}, {2, 2, 2}, {3, 2, 2}, {4, 3, 4}, {7, 3, 4}, {8, 4, 8}, {15, 4, 8}, {16, 5, 16}, {100, 6, 100},
	} {
		start := 0
		if i > 0 {
			if n, err := s.Count(ctx); err != nil {
				t.Fatal(err)
			} else {
				start = n
			}
		}
		if err := s.Upsert(ctx, ls[start:want.n]); err != nil {
			t.Fatal(err)
		}
		if q := quantInfo(t, s); q.Generation != want.gen || q.FittedCount != want.fitted {
			t.Fatalf("after %d lessons: generation %d fitted on %d, want %d on %d", want.n, q.Generation, q.FittedCount, want.gen, want.fitted)
		}
	}
	for _, l := range ls {
		hits, err := s.Search(ctx, l.Vector, 1, vectorstore.Filter{})
		if err != nil || len(hits) != 1 || hits[0].ID != l.ID {
			t.Fatalf("Search(vector of %s) = %+v, %v", l.ID, hits, err)
		}
	}
	// Requantize refits now.
	if err := s.Requantize(ctx); err != nil {
		t.Fatal(err)
	}
	if q := quantInfo(t, s); q.Generation != 7 || q.FittedCount != 100 {
		t.Fatalf("after Requantize: %+v", q)
	}
}

// A store whose cached centre is stale (another process refitted) notices
// it from the generation read with the codes, and re-encodes its query.
// Candidates are cut to k here, so a query encoded with the wrong centre
// would miss.
func TestSQLiteVecStaleCentre(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := vectorstore.SQLiteVecOptions{Rescore: 1, MinCandidates: 1}
	a, err := vectorstore.OpenSQLiteVecOptions(dir, testCollection, 64, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := rand.New(rand.NewPCG(5, 6))
	// First a cloud around one point, then many around another: the
	// refit moves the centre far.
	first := shifted(r, "a", 100, 64, 0)
	if err := a.Upsert(ctx, first); err != nil {
		t.Fatal(err)
	}
	b, err := vectorstore.OpenSQLiteVecOptions(dir, testCollection, 64, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Search(ctx, first[0].Vector, 1, vectorstore.Filter{}); err != nil {
		t.Fatal(err)
	}
	second := shifted(r, "b", 300, 64, 1)
	if err := a.Upsert(ctx, second); err != nil {
		t.Fatal(err)
	}
	if q := quantInfo(t, a); q.Generation != 2 {
		t.Fatalf("generation %d after growing 4x, want 2", q.Generation)
	}
	// a refitted, so its centre is current: b must answer as a does.
	differ := 0
	for _, l := range append(first, second...) {
		ha, err := a.Search(ctx, l.Vector, 3, vectorstore.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		hb, err := b.Search(ctx, l.Vector, 3, vectorstore.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(hitIDs(ha)) != fmt.Sprint(hitIDs(hb)) {
			differ++
		}
	}
	if differ > 0 {
		t.Fatalf("b answered %d of 400 searches differently from a", differ)
	}
	if q := quantInfo(t, b); q.Generation != 2 {
		t.Fatalf("b sees generation %d", q.Generation)
	}
}

func hitIDs(hits []vectorstore.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

// shifted returns n non-negative lessons: |noise| plus a bump on half the
// dimensions (the first half if half is 0, the second if 1).
func shifted(r *rand.Rand, prefix string, n, d, half int) []vectorstore.Lesson {
	out := make([]vectorstore.Lesson, n)
	for i := range out {
		v := make([]float32, d)
		var sum float64
		for j := range v {
			x := math.Abs(r.NormFloat64())
			if j/(d/2) == half {
				x += 2
			}
			v[j], sum = float32(x), sum+x*x
		}
		for j := range v {
			v[j] = float32(float64(v[j]) / math.Sqrt(sum))
		}
		out[i] = vectorstore.Lesson{ID: fmt.Sprint(prefix, i), Vector: v, Language: "en", Level: 1 + i%6}
	}
	return out
}

// A file written by the previous layout (one vec0 table of float vectors)
// is migrated on open: same lessons, searchable, and opened again as is.
func TestSQLiteVecMigratesLayout1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const d = 64
	// Opening once registers the driver that loads sqlite-vec.
	s0, err := vectorstore.OpenSQLiteVec(t.TempDir(), testCollection, d)
	if err != nil {
		t.Fatal(err)
	}
	s0.Close()
	path := filepath.Join(dir, testCollection+".db")
	db, err := sql.Open("sqlite3_vectorstore", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE collection (name TEXT NOT NULL, dim INTEGER NOT NULL, metric TEXT NOT NULL, created_at INTEGER NOT NULL)`,
		fmt.Sprintf(`INSERT INTO collection VALUES ('%s', %d, 'l2', 0)`, testCollection, d),
		fmt.Sprintf(`CREATE VIRTUAL TABLE lessons USING vec0(id TEXT PRIMARY KEY, language TEXT PARTITION KEY,
			level INTEGER PARTITION KEY, embedding FLOAT[%d] distance_metric=l2, +published_at INTEGER, +popularity FLOAT,
			chunk_size=256)`, d),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ls := vectorstoretest.Clustered(rand.New(rand.NewPCG(8, 9)), "m", 300, d, 6)
	published := time.UnixMilli(1_700_000_000_123).UTC()
	for i := range ls {
		ls[i].PublishedAt = published
		buf := make([]byte, 4*d)
		for j, x := range ls[i].Vector {
			binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
		}
		if _, err := db.Exec(`INSERT INTO lessons (id, language, level, embedding, published_at, popularity) VALUES (?, ?, ?, ?, ?, ?)`,
			ls[i].ID, ls[i].Language, ls[i].Level, buf, published.UnixMilli(), ls[i].Popularity); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	for range 2 { // the second open finds layout 2
		s := openSQLite(t, dir, d)
		if n, err := s.Count(ctx); err != nil || n != len(ls) {
			t.Fatalf("Count after migration = %d, %v", n, err)
		}
		for _, want := range ls[:20] {
			got, err := s.Get(ctx, want.ID)
			if err != nil || got.Language != want.Language || got.Level != want.Level || !got.PublishedAt.Equal(want.PublishedAt) ||
				got.Popularity != want.Popularity || got.Vector[5] != want.Vector[5] {
				t.Fatalf("Get(%s) = %+v, %v", want.ID, got, err)
			}
		}
		if q := quantInfo(t, s); q.Generation != 1 || q.FittedCount != int64(len(ls)) {
			t.Fatalf("quantizer after migration: %+v", q)
		}
		for _, l := range ls[:30] {
			hits, err := s.Search(ctx, l.Vector, 1, vectorstore.Filter{Language: l.Language})
			if err != nil || len(hits) != 1 || hits[0].ID != l.ID {
				t.Fatalf("Search(vector of %s) = %+v, %v", l.ID, hits, err)
			}
		}
		s.Close()
	}
	db, err = sql.Open("sqlite3_vectorstore", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var old int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'lessons'`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("old table still there (%d, %v)", old, err)
	}
}

package vectorstore_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/vectorstore"
	"github.com/lessonflow/lessonflow/vectorstore/vectorstoretest"
)

const testCollection = "lessons_test_model_1"

func openSQLite(t testing.TB, dir string, dim int) *vectorstore.SQLiteVec {
	t.Helper()
	s, err := vectorstore.OpenSQLiteVec(dir, testCollection, dim)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLiteVecContract(t *testing.T) {
	vectorstoretest.Run(t,
		func(t *testing.T, dim int) vectorstore.Store { return openSQLite(t, t.TempDir(), dim) },
		vectorstoretest.Reopen(func(t *testing.T, s vectorstore.Store) vectorstore.Store {
			sv := s.(*vectorstore.SQLiteVec)
			if err := sv.Close(); err != nil {
				t.Fatal(err)
			}
			return openSQLite(t, filepath.Dir(sv.Path()), sv.Dim())
		}))
}

func TestSQLiteVecOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new dir?#&_txlock=x")
	s := openSQLite(t, dir, 8)
	if want := filepath.Join(dir, testCollection+".db"); s.Path() != want {
		t.Fatalf("Path = %s, want %s", s.Path(), want)
	}
	if _, err := os.Stat(s.Path()); err != nil {
		t.Fatal(err)
	}
	if s.Collection() != testCollection || s.Dim() != 8 {
		t.Fatalf("Collection, Dim = %s, %d", s.Collection(), s.Dim())
	}
	s.Close()

	// The file remembers its dimension.
	if s, err := vectorstore.OpenSQLiteVec(dir, testCollection, 16); !errors.Is(err, vectorstore.ErrInvalid) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("reopen at another dimension: %v, want ErrInvalid", err)
	}
	// ...and its collection, should the file be renamed.
	if err := os.Rename(filepath.Join(dir, testCollection+".db"), filepath.Join(dir, "lessons_other_8.db")); err != nil {
		t.Fatal(err)
	}
	if s, err := vectorstore.OpenSQLiteVec(dir, "lessons_other_8", 8); !errors.Is(err, vectorstore.ErrInvalid) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open of a renamed file: %v, want ErrInvalid", err)
	}

	for _, c := range []struct {
		dir, coll string
		dim       int
	}{
		{"", testCollection, 8},
		{dir, "", 8},
		{dir, "../escape", 8},
		{dir, "Upper", 8},
		{dir, testCollection, 0},
		{dir, testCollection, vectorstore.MaxDim + 1},
	} {
		if s, err := vectorstore.OpenSQLiteVec(c.dir, c.coll, c.dim); !errors.Is(err, vectorstore.ErrInvalid) {
			if err == nil {
				s.Close()
			}
			t.Errorf("OpenSQLiteVec(%q, %q, %d) = %v, want ErrInvalid", c.dir, c.coll, c.dim, err)
		}
	}
}

// Several processes (here: goroutines each opening the file) may create a
// new collection file at the same moment.
func TestSQLiteVecConcurrentOpen(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		errs := make(chan error, 6)
		for i := range 6 {
			go func() {
				s, err := vectorstore.OpenSQLiteVec(dir, testCollection, 4)
				if err == nil {
					l := vectorstore.Lesson{ID: fmt.Sprint("o", i), Vector: []float32{1, 0, 0, 0}, Language: "en"}
					err = s.Upsert(context.Background(), []vectorstore.Lesson{l})
					s.Close()
				}
				errs <- err
			}()
		}
		for range 6 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		s := openSQLite(t, dir, 4)
		if n, err := s.Count(context.Background()); err != nil || n != 6 {
			t.Fatalf("round %d: Count = %d, %v; want 6", round, n, err)
		}
		s.Close()
	}
}

// Two stores on one file, as an API and a worker process would have.
func TestSQLiteVecTwoStoresOneFile(t *testing.T) {
	dir := t.TempDir()
	a, b := openSQLite(t, dir, 4), openSQLite(t, dir, 4)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	errs := make(chan error, 2)
	for i, s := range []*vectorstore.SQLiteVec{a, b} {
		go func() {
			for j := range 50 {
				l := vectorstore.Lesson{ID: fmt.Sprintf("s%d-%d", i, j), Vector: []float32{0, 0, 0.6, 0.8}, Language: "en", Level: 1}
				if err := s.Upsert(ctx, []vectorstore.Lesson{l}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*vectorstore.SQLiteVec{a, b} {
		if n, err := s.Count(ctx); err != nil || n != 100 {
			t.Fatalf("Count = %d, %v; want 100", n, err)
		}
	}
}

// Child process for TestSQLiteVecKill9: VECTORSTORE_CHILD=dir.
func TestMain(m *testing.M) {
	if dir := os.Getenv("VECTORSTORE_CHILD"); dir != "" {
		os.Exit(upsertForever(dir))
	}
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

const killBatch = 200

func killLesson(r *rand.Rand, batch, i int) vectorstore.Lesson {
	v := make([]float32, 64)
	var sum float64
	for j := range v {
		x := r.NormFloat64()
		v[j], sum = float32(x), sum+x*x
	}
	for j := range v {
		v[j] = float32(float64(v[j]) / math.Sqrt(sum))
	}
	return vectorstore.Lesson{ID: fmt.Sprintf("b%d-%d", batch, i), Vector: v, Language: "en", Level: 1 + i%6}
}

// upsertForever upserts batches of killBatch lessons, acknowledging each on
// stdout, until it is killed.
func upsertForever(dir string) int {
	s, err := vectorstore.OpenSQLiteVec(dir, testCollection, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := rand.New(rand.NewPCG(1, 2))
	for b := 0; ; b++ {
		batch := make([]vectorstore.Lesson, killBatch)
		for i := range batch {
			batch[i] = killLesson(r, b, i)
		}
		if err := s.Upsert(context.Background(), batch); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(b)
	}
}

// kill -9 in the middle of Upserts: every acknowledged batch is there, no
// batch is there in part, and the file is sound.
func TestSQLiteVecKill9(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VECTORSTORE_CHILD="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if acked, err = strconv.Atoi(sc.Text()); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		if acked == 5 {
			break
		}
	}
	// Let it get into the next transaction (a batch takes a few ms).
	time.Sleep(time.Duration(1+rand.IntN(5)) * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked < 5 {
		t.Fatalf("child acknowledged only %d batches", acked+1)
	}

	s := openSQLite(t, dir, 64)
	defer s.Close()
	ctx := context.Background()
	n, err := s.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n%killBatch != 0 || n < (acked+1)*killBatch {
		t.Fatalf("Count = %d after kill -9: want whole batches of %d, at least %d", n, killBatch, (acked+1)*killBatch)
	}
	t.Logf("%d batches acknowledged, %d in the file", acked+1, n/killBatch)
	r := rand.New(rand.NewPCG(1, 2))
	for b := 0; b < n/killBatch; b++ {
		for i := range killBatch {
			want := killLesson(r, b, i)
			if i%50 != 0 {
				continue
			}
			got, err := s.Get(ctx, want.ID)
			if err != nil || got.Level != want.Level || got.Vector[0] != want.Vector[0] {
				t.Fatalf("Get(%s) = %+v, %v", want.ID, got.Level, err)
			}
		}
	}
	db, err := sql.Open("sqlite3", "file:"+s.Path()+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var integrity string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	// And the store keeps working.
	if err := s.Upsert(ctx, []vectorstore.Lesson{killLesson(r, 999, 0)}); err != nil {
		t.Fatal(err)
	}
	if hits, err := s.Search(ctx, killLesson(r, 999, 1).Vector, 5, vectorstore.Filter{Language: "en"}); err != nil || len(hits) != 5 {
		t.Fatalf("Search after kill -9: %d hits, %v", len(hits), err)
	}
}

func TestSQLiteVecErrorsNameTheCollection(t *testing.T) {
	s := openSQLite(t, t.TempDir(), 4)
	defer s.Close()
	err := s.Upsert(context.Background(), []vectorstore.Lesson{{ID: "a", Vector: []float32{1, 0, 0}, Language: "en"}})
	if !errors.Is(err, vectorstore.ErrInvalid) || !strings.Contains(err.Error(), testCollection) ||
		!strings.Contains(err.Error(), "3 values, want 4") {
		t.Fatalf("error %q: want ErrInvalid naming the collection and the dimensions", err)
	}
}

package vectorstore

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	vec "github.com/asg017/sqlite-vec-go-bindings/cgo"
	"github.com/mattn/go-sqlite3"

	"github.com/lessonflow/lessonflow/internal/sqlitedb"
)

// SQLiteVec is the embedded Store: one SQLite file per collection, searched
// exactly (brute force) by the sqlite-vec extension.
//
// Schema. One vec0 virtual table holds everything:
//
//   - the vector with distance_metric=l2. Stored vectors are L2-normalised
//     and queries are normalised before searching, so the L2 distance d
//     ranks exactly as cosine and converts to it: cosine = 1 - d²/2.
//     sqlite-vec's cosine kernel recomputes both norms for every pair and
//     has no SIMD path; at 100K x 1024-d it was 1.17x slower than L2 in a
//     default build and 1.95x slower with AVX (see BenchmarkSQLiteVecSearch);
//   - language and level as PARTITION KEYs: vectors are stored in chunks per
//     (language, level), so a filtered search reads only the matching
//     chunks (at 100K x 1024-d: 97 ms unfiltered, 39 ms for a language
//     holding 40%, 12 ms for it and two levels of six);
//   - published_at (unix ms) and popularity as auxiliary (+) columns: stored
//     beside the vectors, returned by searches, never scanned.
//
// sqlite-vec cannot express NOT IN, so Search fetches k + len(ExcludeIDs)
// neighbours and drops the excluded ones; that is still exact.
//
// Writes follow catalog.SQLite: one writer connection, BEGIN IMMEDIATE,
// WAL, synchronous=FULL, and a pool of query_only readers that never block
// the writer. An Upsert batch is one transaction, so it is all-or-nothing
// even if the process dies mid-batch. Connections map the file into memory
// (mmap_size, up to SQLite's 2 GiB cap): a search reads every vector of the
// chunks it scans, and through read() calls searches took 1.37x as long.
//
// Speed: sqlite-vec's L2 has an AVX2 kernel, compiled only with
// CGO_CFLAGS="-O2 -mavx2 -DSQLITE_VEC_ENABLE_AVX" (no other setup needed;
// it halves search times). That setting applies to every cgo package and
// makes binaries need an AVX2 CPU, so it belongs in the build, not here.
//
// sqlite-vec v0.1.6 does not reuse the slot of a deleted or replaced vector
// unless it is in the newest chunk of its partition: a file grows with
// churn and searches read the holes. Rebuilding the collection compacts it.
type SQLiteVec struct {
	w, r       *sql.DB
	path       string
	collection string
	dim        int

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*SQLiteVec)(nil)

const (
	// sqliteChunkSize is the vectors per vec0 chunk. Every (language, level)
	// partition has its own chunks, allocated whole: 256 x 1024-d is 1 MiB,
	// so a sparse partition wastes at most that. 1024 (the default) searched
	// no faster in BenchmarkSQLiteVecSearch.
	sqliteChunkSize = 256
	// sqliteMaxKNN is sqlite-vec's limit on k (SQLITE_VEC_VEC0_K_MAX).
	sqliteMaxKNN = 4096
)

// Over-fetching for exclusions must stay within what sqlite-vec can return
// (a negative untyped constant does not convert to uint: compile error).
const _ uint = sqliteMaxKNN - (MaxK + MaxExclude)

// sqliteDriver is go-sqlite3 with memory-mapped reads on every connection.
const sqliteDriver = "sqlite3_vectorstore"

// registerSQLite registers sqliteDriver and makes every SQLite connection
// opened afterwards in this process (catalog ones too, harmlessly) load
// sqlite-vec.
var registerSQLite = sync.OnceFunc(func() {
	vec.Auto()
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		// SQLite caps this at SQLITE_MAX_MMAP_SIZE (2 GiB on Linux); the
		// rest of a bigger file is read as usual.
		_, err := c.Exec("PRAGMA mmap_size = 2147418112", nil)
		return err
	}})
})

// OpenSQLiteVec opens (creating if needed) the collection in directory dir,
// in the file <dir>/<collection>.db. A file created for another dimension is
// refused. Several processes may open the same file.
func OpenSQLiteVec(dir, collection string, dim int) (*SQLiteVec, error) {
	if err := ValidCollection(collection); err != nil {
		return nil, fmt.Errorf("open %s: %w", collection, err)
	}
	if err := validateDim(dim); err != nil {
		return nil, fmt.Errorf("open %s: %w", collection, err)
	}
	if dir == "" {
		return nil, fmt.Errorf("open %s: %w: empty directory", collection, ErrInvalid)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", collection, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open %s: %w", collection, err)
	}
	path := filepath.Join(abs, collection+".db")
	registerSQLite()

	db, err := sqlitedb.Open(context.Background(), sqliteDriver, path, "", func(ctx context.Context, w *sql.DB) error {
		return createSchema(ctx, w, collection, dim)
	})
	if err != nil {
		return nil, err
	}
	return &SQLiteVec{w: db.W, r: db.R, path: path, collection: collection, dim: dim}, nil
}

// createSchema creates the tables of a new file, or checks that an existing
// file holds this collection at this dimension.
func createSchema(ctx context.Context, db *sql.DB, collection string, dim int) error {
	return sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS collection (
			name TEXT NOT NULL, dim INTEGER NOT NULL, metric TEXT NOT NULL, created_at INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		var (
			name, metric string
			have         int
		)
		err := tx.QueryRowContext(ctx, `SELECT name, dim, metric FROM collection`).Scan(&name, &have, &metric)
		switch {
		case err == nil:
			if name != collection || have != dim || metric != "l2" {
				return fmt.Errorf("%w: file holds collection %s, %d-d, metric %s; want %s, %d-d, l2",
					ErrInvalid, name, have, metric, collection, dim)
			}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read schema: %w", err)
		}
		// Column names and dim are ours (dim validated), not user input.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE VIRTUAL TABLE lessons USING vec0(
			id TEXT PRIMARY KEY,
			language TEXT PARTITION KEY,
			level INTEGER PARTITION KEY,
			embedding FLOAT[%d] distance_metric=l2,
			+published_at INTEGER,
			+popularity FLOAT,
			chunk_size=%d
		)`, dim, sqliteChunkSize)); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO collection (name, dim, metric, created_at) VALUES (?, ?, 'l2', ?)`,
			collection, dim, time.Now().UnixMilli())
		if err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		return nil
	})
}

// Path returns the database file.
func (s *SQLiteVec) Path() string { return s.path }

// Collection returns the collection the store is bound to.
func (s *SQLiteVec) Collection() string { return s.collection }

// Dim returns the dimension of the collection's vectors.
func (s *SQLiteVec) Dim() int { return s.dim }

// Close implements Store.
func (s *SQLiteVec) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
	})
	return s.closeErr
}

// Upsert implements Store. The batch is one transaction.
func (s *SQLiteVec) Upsert(ctx context.Context, lessons []Lesson) error {
	if err := validateUpsert(s.dim, lessons); err != nil {
		return fmt.Errorf("upsert %s: %w", s.collection, err)
	}
	if len(lessons) == 0 {
		return nil
	}
	err := sqlitedb.InTx(ctx, s.w, func(tx *sql.Tx) error {
		// vec0 has no ON CONFLICT, and a partition key cannot be updated in
		// place: replace is delete + insert.
		del, err := tx.PrepareContext(ctx, `DELETE FROM lessons WHERE id = ?`)
		if err != nil {
			return err
		}
		defer del.Close()
		ins, err := tx.PrepareContext(ctx, `INSERT INTO lessons (id, language, level, embedding, published_at, popularity)
			VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		buf := make([]byte, 4*s.dim)
		for _, l := range lessons {
			if _, err := del.ExecContext(ctx, l.ID); err != nil {
				return fmt.Errorf("replace %q: %w", l.ID, err)
			}
			_, err := ins.ExecContext(ctx, l.ID, l.Language, l.Level, encodeVector(buf, l.Vector),
				l.PublishedAt.UnixMilli(), l.Popularity)
			if err != nil {
				return fmt.Errorf("insert %q: %w", l.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upsert %s: %w", s.collection, err)
	}
	return nil
}

// Delete implements Store.
func (s *SQLiteVec) Delete(ctx context.Context, ids []string) error {
	if err := validateIDs(ids); err != nil {
		return fmt.Errorf("delete from %s: %w", s.collection, err)
	}
	if len(ids) == 0 {
		return nil
	}
	err := sqlitedb.InTx(ctx, s.w, func(tx *sql.Tx) error {
		del, err := tx.PrepareContext(ctx, `DELETE FROM lessons WHERE id = ?`)
		if err != nil {
			return err
		}
		defer del.Close()
		for _, id := range ids {
			if _, err := del.ExecContext(ctx, id); err != nil {
				return fmt.Errorf("%q: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete from %s: %w", s.collection, err)
	}
	return nil
}

// Get implements Store.
func (s *SQLiteVec) Get(ctx context.Context, id string) (Lesson, error) {
	if err := validateID(id); err != nil {
		return Lesson{}, fmt.Errorf("get %q from %s: %w", id, s.collection, err)
	}
	var (
		l         = Lesson{ID: id}
		blob      []byte
		published int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT language, level, embedding, published_at, popularity
		FROM lessons WHERE id = ?`, id).Scan(&l.Language, &l.Level, &blob, &published, &l.Popularity)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	if err != nil {
		return Lesson{}, fmt.Errorf("get %q from %s: %w", id, s.collection, err)
	}
	if l.Vector, err = decodeVector(blob, s.dim); err != nil {
		return Lesson{}, fmt.Errorf("get %q from %s: %w", id, s.collection, err)
	}
	l.PublishedAt = time.UnixMilli(published).UTC()
	return l, nil
}

// Count implements Store.
func (s *SQLiteVec) Count(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM lessons`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", s.collection, err)
	}
	return n, nil
}

// Search implements Store.
func (s *SQLiteVec) Search(ctx context.Context, query []float32, k int, f Filter) ([]Hit, error) {
	req, err := prepareSearch(s.dim, query, k, f)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", s.collection, err)
	}
	// Excluded ids take at most len(ExcludeIDs) of the nearest, so fetching
	// that many more keeps the result exact.
	fetch := k + len(req.filter.ExcludeIDs)
	q := `SELECT id, distance, language, level, published_at, popularity FROM lessons
		WHERE embedding MATCH ? AND k = ?`
	args := []any{encodeVector(make([]byte, 4*s.dim), req.query), fetch}
	// Constraints on partition keys select the chunks to read.
	if f.Language != "" {
		q += ` AND language = ?`
		args = append(args, f.Language)
	}
	if f.LevelMin > 0 {
		q += ` AND level >= ?`
		args = append(args, f.LevelMin)
	}
	if f.LevelMax > 0 {
		q += ` AND level <= ?`
		args = append(args, f.LevelMax)
	}
	q += ` ORDER BY distance`

	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", s.collection, err)
	}
	defer rows.Close()
	hits := make([]Hit, 0, k)
	for rows.Next() {
		var (
			h         Hit
			dist      float64
			published int64
		)
		if err := rows.Scan(&h.ID, &dist, &h.Language, &h.Level, &published, &h.Popularity); err != nil {
			return nil, fmt.Errorf("search %s: %w", s.collection, err)
		}
		if _, ok := req.exclude[h.ID]; ok {
			continue
		}
		// Unit vectors: |q-x|² = 2 - 2·cos(q, x).
		h.Score = clampScore(1 - dist*dist/2)
		h.PublishedAt = time.UnixMilli(published).UTC()
		if hits = append(hits, h); len(hits) == k {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search %s: %w", s.collection, err)
	}
	return hits, nil
}

// encodeVector writes v as sqlite-vec's float32 BLOB (little-endian) into
// buf, which must hold 4*len(v) bytes.
func encodeVector(buf []byte, v []float32) []byte {
	for i, x := range v {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
	}
	return buf[:4*len(v)]
}

func decodeVector(b []byte, dim int) ([]float32, error) {
	if len(b) != 4*dim {
		return nil, fmt.Errorf("stored vector of %d bytes, want %d", len(b), 4*dim)
	}
	v := make([]float32, dim)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

package vectorstore

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vec "github.com/asg017/sqlite-vec-go-bindings/cgo"
	"github.com/mattn/go-sqlite3"

	"github.com/lessonflow/lessonflow/internal/sqlitedb"
)

// SQLiteVec is the embedded Store: one SQLite file per collection, searched
// by the sqlite-vec extension in two steps, a binary-quantised coarse search
// and an exact float rescoring.
//
// Schema (layout 2):
//
//   - lesson_data, a plain table, holds each lesson: id, language, level,
//     published_at (unix ms), popularity and the float32 vector as a blob.
//     It is the source of truth; Get and Count read it alone.
//   - lesson_codes, a vec0 virtual table with the same rowids, holds each
//     vector's binary code (bit[dim], 128 bytes at 1024-d instead of 4 KiB;
//     see sqlitevec_quant.go for the centring), with language and level as
//     PARTITION KEYs: vectors are stored in chunks per (language, level), so
//     a filtered search reads only the matching chunks.
//   - quantizer holds the centre the codes were made with, and the
//     centroids of the IVF lists: each code's nearest list is a third
//     partition key, cluster, and a search reads only the lists nearest the
//     query (sqlitevec_ivf.go).
//
// A Search encodes the query, lets sqlite-vec find the hamming-nearest
// max(MinCandidates, Rescore*(k+excluded)) codes (brute force, popcount) in
// the probed lists, then, in the same SQL statement, rescores those
// candidates exactly with vec_distance_l2 over their float vectors and keeps
// the best. Scores are therefore exact; only a true neighbour that is not
// among the candidates, or is in a list not probed, can be missed
// (recall@10 is measured by the contract suite, TestSQLiteVecIVFRecall and
// bench-recs). Stored vectors are L2-normalised and queries are normalised
// before searching, so the L2 distance d ranks exactly as cosine and
// converts to it: cosine = 1 - d²/2 (sqlite-vec's cosine recomputes both
// norms for every pair and has no SIMD path). When the probed lists are all
// the lists and the candidates cover every lesson matching the filter, the
// search is exact.
//
// Why not exact brute force over the floats, as layout 1 did: a query for a
// language holding 40K of 100K 1024-d vectors read 164 MB, 39 ms at best on
// this machine. The codes of the same 40K are 5 MB.
//
// sqlite-vec cannot express NOT IN, so Search fetches k + len(ExcludeIDs)
// neighbours and drops the excluded ones.
//
// Writes follow catalog.SQLite: one writer connection, BEGIN IMMEDIATE,
// WAL, synchronous=FULL, and a pool of query_only readers that never block
// the writer. An Upsert batch is one transaction (data and codes together),
// so it is all-or-nothing even if the process dies mid-batch. Connections
// map the file into memory (mmap_size, up to SQLite's 2 GiB cap).
//
// A file of layout 1 (one vec0 table "lessons" holding the float vectors)
// is migrated when it is opened: its rows are copied into lesson_data, the
// codes are built and the old table dropped, in one transaction.
//
// Speed: building with CGO_CFLAGS="-O2 -mavx2 -DSQLITE_VEC_ENABLE_AVX"
// gives sqlite-vec's L2 an AVX2 kernel (the rescoring) and the compiler the
// popcount instruction (the hamming distance). That setting applies to every
// cgo package and makes binaries need an AVX2 CPU, so it belongs in the
// build, not here.
//
// sqlite-vec v0.1.6 does not reuse the slot of a deleted or replaced code
// unless it is in the newest chunk of its partition: searches scan the
// holes. Requantize rebuilds the code table compactly.
type SQLiteVec struct {
	w, r       *sql.DB
	path       string
	collection string
	dim        int
	opts       SQLiteVecOptions
	quant      atomic.Pointer[quantizer]

	closeOnce sync.Once
	closeErr  error
}

// SQLiteVecOptions tunes the embedded store's coarse search. Zero fields
// take the defaults.
type SQLiteVecOptions struct {
	// Rescore: the coarse search keeps Rescore x (k + len(ExcludeIDs))
	// candidates for exact rescoring (default 10).
	Rescore int
	// MinCandidates is the fewest candidates rescored (default 400).
	MinCandidates int
	// Clusters is the most IVF lists a fit splits the codes into (default
	// 64; 1 disables the lists), and MinListSize the fewest vectors per list
	// (default 500): a collection of n vectors gets min(Clusters,
	// n/MinListSize) lists, none below 2. See sqlitevec_ivf.go. They apply
	// when this store fits the centre (a refit); the lists are kept in the
	// file.
	Clusters, MinListSize int
	// Probe is the most lists a search scans (default 4: recall@10 0.996
	// in bench-recs with the default margin, 0.998 fixed, as when scanning
	// every list). With the defaults, a
	// collection under 2500 vectors has at most 4 lists and is searched
	// whole.
	Probe int
	// ProbeMargin makes the scan adaptive. Besides the nearest list, a
	// search scans each of the next Probe-1 lists whose centroid's squared
	// distance to the query is at most 1+ProbeMargin times the nearest's
	// (default 0.15; negative: always Probe lists). A query deep inside one
	// list scans that list alone; one between lists scans its neighbours.
	// Each list scanned costs a KNN over its codes. When Probe covers every
	// list, all are scanned.
	ProbeMargin float64
}

// DefaultSQLiteVecOptions are the options OpenSQLiteVec uses: at 100K x
// 1024-d they gave recall@10 >= 0.98 against exact float search in
// bench-recs (see the README).
var DefaultSQLiteVecOptions = SQLiteVecOptions{Rescore: 10, MinCandidates: 400, Clusters: 64, MinListSize: 500, Probe: 4, ProbeMargin: 0.15}

var _ Store = (*SQLiteVec)(nil)

const (
	// sqliteChunkSize is the codes per vec0 chunk. sqlite-vec picks the
	// nearest of a chunk by selection (chunk x min(k, chunk) steps), then
	// merges them into the running top k (k steps) and opens a blob per
	// chunk: small chunks make selection cheap, big ones the rest. At 100K
	// x 1024-d, 400 candidates, 16, 32 and 64 were within 10% (32 best).
	sqliteChunkSize = 32
	// sqliteMaxKNN is sqlite-vec's limit on k (SQLITE_VEC_VEC0_K_MAX).
	sqliteMaxKNN = 4096
	// sqliteLayout is the schema version of files this code writes.
	sqliteLayout = 3
	// sqliteMaxLists bounds SQLiteVecOptions.Clusters and Probe: a search
	// is one compound SELECT with a branch per probed list.
	sqliteMaxLists = 256
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
// in the file <dir>/<collection>.db, with DefaultSQLiteVecOptions. A file
// created for another dimension is refused; a file of an older layout is
// migrated. Several processes may open the same file.
func OpenSQLiteVec(dir, collection string, dim int) (*SQLiteVec, error) {
	return OpenSQLiteVecOptions(dir, collection, dim, DefaultSQLiteVecOptions)
}

// OpenSQLiteVecOptions is OpenSQLiteVec with options.
func OpenSQLiteVecOptions(dir, collection string, dim int, opts SQLiteVecOptions) (*SQLiteVec, error) {
	if err := ValidCollection(collection); err != nil {
		return nil, fmt.Errorf("open %s: %w", collection, err)
	}
	if err := validateDim(dim); err != nil {
		return nil, fmt.Errorf("open %s: %w", collection, err)
	}
	if opts.Rescore < 0 || opts.MinCandidates < 0 || opts.Rescore > sqliteMaxKNN || opts.MinCandidates > sqliteMaxKNN ||
		opts.Clusters < 0 || opts.Clusters > sqliteMaxLists || opts.MinListSize < 0 || opts.Probe < 0 || opts.Probe > sqliteMaxLists ||
		math.IsNaN(opts.ProbeMargin) || math.IsInf(opts.ProbeMargin, 0) {
		return nil, fmt.Errorf("open %s: %w: options %+v out of range 0..%d", collection, ErrInvalid, opts, sqliteMaxKNN)
	}
	if opts.Rescore == 0 {
		opts.Rescore = DefaultSQLiteVecOptions.Rescore
	}
	if opts.MinCandidates == 0 {
		opts.MinCandidates = DefaultSQLiteVecOptions.MinCandidates
	}
	if opts.Clusters == 0 {
		opts.Clusters = DefaultSQLiteVecOptions.Clusters
	}
	if opts.MinListSize == 0 {
		opts.MinListSize = DefaultSQLiteVecOptions.MinListSize
	}
	if opts.Probe == 0 {
		opts.Probe = DefaultSQLiteVecOptions.Probe
	}
	if opts.ProbeMargin == 0 {
		opts.ProbeMargin = DefaultSQLiteVecOptions.ProbeMargin
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
		return createSchema(ctx, w, collection, dim, opts)
	})
	if err != nil {
		return nil, err
	}
	s := &SQLiteVec{w: db.W, r: db.R, path: path, collection: collection, dim: dim, opts: opts}
	q, _, err := readQuantizer(context.Background(), s.r, dim)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.quant.Store(q)
	return s, nil
}

// createSchema creates the tables of a new file, checks that an existing
// file holds this collection at this dimension, and migrates a file of an
// older layout.
func createSchema(ctx context.Context, db *sql.DB, collection string, dim int, opts SQLiteVecOptions) error {
	return sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS collection (
			name TEXT NOT NULL, dim INTEGER NOT NULL, metric TEXT NOT NULL, created_at INTEGER NOT NULL,
			layout INTEGER NOT NULL DEFAULT 1)`); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		// Layout 1 files have no layout column.
		var hasLayout bool
		if err := tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM pragma_table_info('collection') WHERE name = 'layout'`).
			Scan(&hasLayout); err != nil {
			return fmt.Errorf("read schema: %w", err)
		}
		if !hasLayout {
			if _, err := tx.ExecContext(ctx, `ALTER TABLE collection ADD COLUMN layout INTEGER NOT NULL DEFAULT 1`); err != nil {
				return fmt.Errorf("migrate schema: %w", err)
			}
		}
		var (
			name, metric string
			have, layout int
		)
		err := tx.QueryRowContext(ctx, `SELECT name, dim, metric, layout FROM collection`).Scan(&name, &have, &metric, &layout)
		switch {
		case err == nil:
			if name != collection || have != dim || metric != "l2" {
				return fmt.Errorf("%w: file holds collection %s, %d-d, metric %s; want %s, %d-d, l2",
					ErrInvalid, name, have, metric, collection, dim)
			}
			switch {
			case layout == sqliteLayout:
				return nil
			case layout == 1:
				return migrateLayout1(ctx, tx, dim, opts)
			case layout == 2:
				return migrateLayout2(ctx, tx, dim, opts)
			default:
				return fmt.Errorf("%w: file has layout %d, this build knows %d: a newer LessonFlow wrote it",
					ErrInvalid, layout, sqliteLayout)
			}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read schema: %w", err)
		}
		if err := createLayout(ctx, tx, dim); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO collection (name, dim, metric, created_at, layout) VALUES (?, ?, 'l2', ?, ?)`,
			collection, dim, time.Now().UnixMilli(), sqliteLayout)
		if err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		return nil
	})
}

// createLayout creates the tables of the current layout, empty.
func createLayout(ctx context.Context, tx *sql.Tx, dim int) error {
	// seq is the rowid, shared with lesson_codes; the embedding goes last so
	// the other columns are read without touching its overflow pages.
	if _, err := tx.ExecContext(ctx, `CREATE TABLE lesson_data (
		seq INTEGER PRIMARY KEY,
		id TEXT NOT NULL UNIQUE,
		language TEXT NOT NULL,
		level INTEGER NOT NULL,
		published_at INTEGER NOT NULL,
		popularity REAL NOT NULL,
		embedding BLOB NOT NULL)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE quantizer (
		generation INTEGER NOT NULL, centre BLOB NOT NULL, fitted_count INTEGER NOT NULL, fitted_at INTEGER NOT NULL,
		centroids BLOB)`); err != nil {
		return err
	}
	return createCodes(ctx, tx, dim)
}

// migrateLayout1 moves a layout 1 file (one vec0 table "lessons" with the
// float vectors) to the current layout, in tx: copy, fit and encode, drop.
func migrateLayout1(ctx context.Context, tx *sql.Tx, dim int, opts SQLiteVecOptions) error {
	start := time.Now()
	if err := createLayout(ctx, tx, dim); err != nil {
		return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO lesson_data (id, language, level, published_at, popularity, embedding)
		SELECT id, language, level, published_at, popularity, embedding FROM lessons`)
	if err != nil {
		return fmt.Errorf("migrate to layout %d: copy: %w", sqliteLayout, err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		if _, err := refit(ctx, tx, dim, opts); err != nil {
			return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE lessons`); err != nil {
		return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE collection SET layout = ?`, sqliteLayout); err != nil {
		return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
	}
	slog.Info("vectorstore: migrated file to the quantised layout", "layout", sqliteLayout, "lessons", n,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// migrateLayout2 moves a layout 2 file (codes without IVF lists) to the
// current layout, in tx: the quantizer gains its centroids column and every
// code is rewritten by a refit, which fits the lists.
func migrateLayout2(ctx context.Context, tx *sql.Tx, dim int, opts SQLiteVecOptions) error {
	start := time.Now()
	if _, err := tx.ExecContext(ctx, `ALTER TABLE quantizer ADD COLUMN centroids BLOB`); err != nil {
		return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
	}
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM lesson_data`).Scan(&n); err != nil {
		return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
	}
	if n > 0 {
		if _, err := refit(ctx, tx, dim, opts); err != nil {
			return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
		}
	} else {
		if _, err := tx.ExecContext(ctx, `DROP TABLE lesson_codes`); err != nil {
			return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
		}
		if err := createCodes(ctx, tx, dim); err != nil {
			return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE collection SET layout = ?`, sqliteLayout); err != nil {
		return fmt.Errorf("migrate to layout %d: %w", sqliteLayout, err)
	}
	slog.Info("vectorstore: migrated file to IVF lists", "layout", sqliteLayout, "lessons", n,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
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

// Upsert implements Store. The batch is one transaction: the lessons, their
// codes and, when the collection has doubled, a refit of every code.
func (s *SQLiteVec) Upsert(ctx context.Context, lessons []Lesson) error {
	if err := validateUpsert(s.dim, lessons); err != nil {
		return fmt.Errorf("upsert %s: %w", s.collection, err)
	}
	if len(lessons) == 0 {
		return nil
	}
	var refitted *quantizer
	err := sqlitedb.InTx(ctx, s.w, func(tx *sql.Tx) error {
		refitted = nil
		// The centre in the file, not the cached one: another process may
		// have refitted.
		q, fitted, err := readQuantizer(ctx, tx, s.dim)
		if err != nil {
			return err
		}
		find, err := tx.PrepareContext(ctx, `SELECT seq FROM lesson_data WHERE id = ?`)
		if err != nil {
			return err
		}
		defer find.Close()
		upd, err := tx.PrepareContext(ctx, `UPDATE lesson_data SET language = ?, level = ?, published_at = ?,
			popularity = ?, embedding = ? WHERE seq = ?`)
		if err != nil {
			return err
		}
		defer upd.Close()
		ins, err := tx.PrepareContext(ctx, `INSERT INTO lesson_data (id, language, level, published_at, popularity, embedding)
			VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer ins.Close()
		delCode, err := tx.PrepareContext(ctx, `DELETE FROM lesson_codes WHERE rowid = ?`)
		if err != nil {
			return err
		}
		defer delCode.Close()
		insCode, err := tx.PrepareContext(ctx, `INSERT INTO lesson_codes (rowid, language, level, cluster, code) VALUES (?, ?, ?, ?, vec_bit(?))`)
		if err != nil {
			return err
		}
		defer insCode.Close()
		buf := make([]byte, 4*s.dim)
		for _, l := range lessons {
			var seq int64
			err := find.QueryRowContext(ctx, l.ID).Scan(&seq)
			switch {
			case err == nil:
				// A partition key cannot be updated in place: the code is
				// deleted and inserted again.
				if _, err := delCode.ExecContext(ctx, seq); err != nil {
					return fmt.Errorf("replace %q: %w", l.ID, err)
				}
				if _, err := upd.ExecContext(ctx, l.Language, l.Level, l.PublishedAt.UnixMilli(), l.Popularity,
					encodeVector(buf, l.Vector), seq); err != nil {
					return fmt.Errorf("replace %q: %w", l.ID, err)
				}
			case errors.Is(err, sql.ErrNoRows):
				res, err := ins.ExecContext(ctx, l.ID, l.Language, l.Level, l.PublishedAt.UnixMilli(), l.Popularity,
					encodeVector(buf, l.Vector))
				if err != nil {
					return fmt.Errorf("insert %q: %w", l.ID, err)
				}
				if seq, err = res.LastInsertId(); err != nil {
					return fmt.Errorf("insert %q: %w", l.ID, err)
				}
			default:
				return fmt.Errorf("find %q: %w", l.ID, err)
			}
			if q.gen == 0 {
				continue // the refit below encodes everything
			}
			if _, err := insCode.ExecContext(ctx, seq, l.Language, l.Level, q.nearestList(l.Vector), q.encode(l.Vector)); err != nil {
				return fmt.Errorf("code of %q: %w", l.ID, err)
			}
		}
		if q.gen != 0 && fitted >= quantFreezeAt {
			return nil
		}
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM lesson_data`).Scan(&n); err != nil {
			return err
		}
		if q.gen == 0 || n >= 2*fitted {
			refitted, err = refit(ctx, tx, s.dim, s.opts)
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("upsert %s: %w", s.collection, err)
	}
	if refitted != nil {
		s.quant.Store(refitted)
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
		del, err := tx.PrepareContext(ctx, `DELETE FROM lesson_data WHERE id = ? RETURNING seq`)
		if err != nil {
			return err
		}
		defer del.Close()
		delCode, err := tx.PrepareContext(ctx, `DELETE FROM lesson_codes WHERE rowid = ?`)
		if err != nil {
			return err
		}
		defer delCode.Close()
		for _, id := range ids {
			var seq int64
			err := del.QueryRowContext(ctx, id).Scan(&seq)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%q: %w", id, err)
			}
			if _, err := delCode.ExecContext(ctx, seq); err != nil {
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
		FROM lesson_data WHERE id = ?`, id).Scan(&l.Language, &l.Level, &blob, &published, &l.Popularity)
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
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM lesson_data`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", s.collection, err)
	}
	return n, nil
}

// errStaleCentre: a refit happened between encoding the query and reading
// the codes.
var errStaleCentre = errors.New("centre changed")

// Search implements Store.
func (s *SQLiteVec) Search(ctx context.Context, query []float32, k int, f Filter) ([]Hit, error) {
	req, err := prepareSearch(s.dim, query, k, f)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", s.collection, err)
	}
	// Excluded ids take at most len(ExcludeIDs) of the nearest, so fetching
	// that many more keeps the rescored result exact.
	fetch := k + len(req.filter.ExcludeIDs)
	candidates := min(sqliteMaxKNN, max(s.opts.MinCandidates, s.opts.Rescore*fetch))
	for attempt := 0; ; attempt++ {
		q := s.quant.Load()
		hits, err := s.search(ctx, q, req, k, fetch, candidates)
		if !errors.Is(err, errStaleCentre) {
			return hits, err
		}
		if attempt == 3 {
			return nil, fmt.Errorf("search %s: the centre changed during 4 attempts", s.collection)
		}
		q, _, err = readQuantizer(ctx, s.r, s.dim)
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", s.collection, err)
		}
		s.quant.Store(q)
	}
}

func (s *SQLiteVec) search(ctx context.Context, q *quantizer, req search, k, fetch, candidates int) ([]Hit, error) {
	f := req.filter
	// The coarse search is materialised first, so that SQLite cannot turn
	// the join around; the rescoring then reads candidates by rowid. The
	// generation comes from the same statement, hence the same snapshot, as
	// the codes.
	var sb strings.Builder
	code := q.encode(req.query)
	lists := q.probe(req.query, s.opts.Probe, s.opts.ProbeMargin)
	var args []any
	// knn writes one KNN over the codes; constraints on partition keys
	// select the chunks to read.
	knn := func(list int) {
		sb.WriteString(`SELECT rowid AS seq, distance FROM lesson_codes WHERE code MATCH vec_bit(?) AND k = ?`)
		// Every list gets the whole k: within the query's topic, hamming
		// ranks the true neighbours coarsely (k/probe per list measured
		// recall@10 0.66 at 8 of 64 lists, 1.00 with k).
		args = append(args, code, candidates)
		if list >= 0 {
			sb.WriteString(` AND cluster = ?`)
			args = append(args, list)
		}
		if f.Language != "" {
			sb.WriteString(` AND language = ?`)
			args = append(args, f.Language)
		}
		if f.LevelMin > 0 {
			sb.WriteString(` AND level >= ?`)
			args = append(args, f.LevelMin)
		}
		if f.LevelMax > 0 {
			sb.WriteString(` AND level <= ?`)
			args = append(args, f.LevelMax)
		}
	}
	sb.WriteString(`WITH cand AS MATERIALIZED (`)
	switch len(lists) {
	case 0:
		knn(-1)
	case 1:
		// Alone, the outer LIMIT would reach vec0 beside its k, which it
		// refuses.
		knn(lists[0])
	default:
		// vec0 has no IN on partition keys: one KNN per probed list, the
		// nearest candidates of them all kept.
		sb.WriteString(`SELECT seq FROM (`)
		for i, l := range lists {
			if i > 0 {
				sb.WriteString(` UNION ALL `)
			}
			knn(l)
		}
		sb.WriteString(`) ORDER BY distance LIMIT ?`)
		args = append(args, candidates)
	}
	sb.WriteString(`)
		SELECT d.id, vec_distance_l2(d.embedding, ?) AS dist, d.language, d.level, d.published_at, d.popularity,
			(SELECT generation FROM quantizer)
		FROM cand JOIN lesson_data AS d ON d.seq = cand.seq
		ORDER BY dist LIMIT ?`)
	args = append(args, encodeVector(make([]byte, 4*s.dim), req.query), fetch)

	rows, err := s.r.QueryContext(ctx, sb.String(), args...)
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
			gen       sql.NullInt64
		)
		if err := rows.Scan(&h.ID, &dist, &h.Language, &h.Level, &published, &h.Popularity, &gen); err != nil {
			return nil, fmt.Errorf("search %s: %w", s.collection, err)
		}
		if gen.Int64 != q.gen {
			return nil, errStaleCentre
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

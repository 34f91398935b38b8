package vectorstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/lessonflow/lessonflow/internal/sqlitedb"
)

// Binary quantisation of the embedded store (see SQLiteVec).
//
// A vector's code has one bit per dimension: bit i is set when x[i] is above
// centre[i]. Embeddings of ReLU networks are non-negative, so without the
// centre nearly every bit would only say "this feature fired", and hamming
// distance ranked neighbours barely better than chance (recall@10 0.12 with
// 400 candidates on the bench-recs generator's vectors, 1.00 once centred).
//
// The centre is the mean of the stored vectors, kept in the file (table
// quantizer) with a generation number; the IVF lists' centroids
// (sqlitevec_ivf.go) are fitted with it and kept in the same row. Stored
// codes and query codes must use the same centre (and lists), so they only
// change by a refit, which recomputes every code in the same transaction
// and bumps the generation; a search
// reads the generation in the same statement as the codes and re-encodes
// its query if another connection or process has refitted meanwhile.
//
// When to refit: the first Upsert fits the centre to its batch, and the
// collection is refitted each time it has doubled since the last fit, until a
// fit has seen quantFreezeAt vectors; then the centre stays. The doubling
// keeps the total re-coding work under twice the final size; the freeze keeps
// a big collection from rewriting a million codes in one transaction, and a
// mean over 65,536 vectors is already precise. If what is uploaded drifts
// later, the codes stay consistent (the same centre on both sides) and only
// their balance degrades; the rescoring margin absorbs that, and Requantize
// refits on demand (it also compacts the code table).
const quantFreezeAt = 1 << 16

// quantizer is one generation of the centre.
type quantizer struct {
	gen    int64 // 0: never fitted (then there are no codes)
	centre []float32
	// centroids of the IVF lists (sqlitevec_ivf.go), nil when the
	// collection has none; halfNorms[i] is |centroids[i]|²/2.
	centroids [][]float32
	halfNorms []float32
}

// codeBytes is the size of a code: sqlite-vec bit vectors have a multiple of
// 8 bits; the padding bits are 0 on both sides and never differ.
func codeBytes(dim int) int { return (dim + 7) / 8 }

// encode returns v's code, v normalised (the centre is a mean of unit
// vectors, so the query must be on the same scale). Bit i is bit i%8 of byte
// i/8, sqlite-vec's order (as vec_quantize_binary).
func (q *quantizer) encode(v []float32) []byte {
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	norm = math.Sqrt(norm)
	if norm == 0 {
		norm = 1
	}
	out := make([]byte, codeBytes(len(v)))
	for i, x := range v {
		// x/norm > c, without a division per value.
		var c float64
		if q.centre != nil {
			c = float64(q.centre[i])
		}
		if float64(x) > c*norm {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

// readQuantizer reads the current centre (a zero quantizer when none was fitted).
func readQuantizer(ctx context.Context, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, dim int) (*quantizer, int64, error) {
	var (
		gen, fitted int64
		blob, cblob []byte
	)
	err := db.QueryRowContext(ctx, `SELECT generation, centre, fitted_count, centroids FROM quantizer`).Scan(&gen, &blob, &fitted, &cblob)
	if errors.Is(err, sql.ErrNoRows) {
		return &quantizer{}, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read quantizer: %w", err)
	}
	centre, err := decodeVector(blob, dim)
	if err != nil {
		return nil, 0, fmt.Errorf("read quantizer: %w", err)
	}
	cs, err := decodeCentroids(cblob, dim)
	if err != nil {
		return nil, 0, fmt.Errorf("read quantizer: %w", err)
	}
	q := &quantizer{gen: gen, centre: centre}
	q.setCentroids(cs)
	return q, fitted, nil
}

// createCodes creates the (empty) table of codes.
func createCodes(ctx context.Context, tx *sql.Tx, dim int) error {
	// Column names and sizes are ours, not user input.
	_, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE VIRTUAL TABLE lesson_codes USING vec0(
		language TEXT PARTITION KEY,
		level INTEGER PARTITION KEY,
		cluster INTEGER PARTITION KEY,
		code BIT[%d],
		chunk_size=%d
	)`, 8*codeBytes(dim), sqliteChunkSize))
	if err != nil {
		return err
	}
	// sqlite-vec finds the chunks of a partition by a query on its shadow
	// table lesson_codes_chunks (partition00 = language, 01 = level, 02 =
	// cluster) that has no index: without this one, each probed list would
	// read every chunk row. SQLite maintains it on vec0's own writes and
	// drops it with the table.
	_, err = tx.ExecContext(ctx, `CREATE INDEX lesson_codes_chunks_partition
		ON lesson_codes_chunks (partition02, partition00, partition01)`)
	return err
}

// refit computes the centre of every stored vector and the IVF lists of a
// sample of them, and rewrites every code with them, in tx. It reads the
// vectors twice (the mean and the sample first), 1000 at a time, so memory
// stays small whatever the collection's size.
func refit(ctx context.Context, tx *sql.Tx, dim int, opts SQLiteVecOptions) (*quantizer, error) {
	sum := make([]float64, dim)
	var n int64
	sample := &reservoir{cap: kmeansSamplePerList * max(1, opts.Clusters), rng: rand.New(rand.NewPCG(uint64(dim), 7))}
	rows, err := tx.QueryContext(ctx, `SELECT embedding FROM lesson_data`)
	if err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	for rows.Next() {
		var blob []byte
		if err := rows.Scan(&blob); err != nil {
			rows.Close()
			return nil, fmt.Errorf("refit: %w", err)
		}
		if len(blob) != 4*dim {
			rows.Close()
			return nil, fmt.Errorf("refit: stored vector of %d bytes, want %d", len(blob), 4*dim)
		}
		v, _ := decodeVector(blob, dim)
		for i, x := range v {
			sum[i] += float64(x)
		}
		sample.add(v)
		n++
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	q := &quantizer{centre: make([]float32, dim)}
	for i := range sum {
		if n > 0 {
			q.centre[i] = float32(sum[i] / float64(n))
		}
	}
	var gen int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(generation), 0) FROM quantizer`).Scan(&gen); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	q.gen = gen + 1
	q.setCentroids(kmeans(sample.vecs, listsFor(n, opts.Clusters, opts.MinListSize), uint64(n)))
	sample = nil

	// Dropping and recreating the table also compacts it: sqlite-vec leaves
	// the slots of deleted rows empty.
	if _, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS lesson_codes`); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	if err := createCodes(ctx, tx, dim); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO lesson_codes (rowid, language, level, cluster, code) VALUES (?, ?, ?, ?, vec_bit(?))`)
	if err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	defer ins.Close()
	type row struct {
		seq      int64
		language string
		level    int
		vec      []float32
	}
	var (
		after int64 = -1 << 63
		page  []row
	)
	for {
		page = page[:0]
		rows, err := tx.QueryContext(ctx, `SELECT seq, language, level, embedding FROM lesson_data
			WHERE seq > ? ORDER BY seq LIMIT 1000`, after)
		if err != nil {
			return nil, fmt.Errorf("refit: %w", err)
		}
		for rows.Next() {
			var (
				r    row
				blob []byte
			)
			if err := rows.Scan(&r.seq, &r.language, &r.level, &blob); err != nil {
				rows.Close()
				return nil, fmt.Errorf("refit: %w", err)
			}
			if r.vec, err = decodeVector(blob, dim); err != nil {
				rows.Close()
				return nil, fmt.Errorf("refit: %w", err)
			}
			page = append(page, r)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("refit: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("refit: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if _, err := ins.ExecContext(ctx, r.seq, r.language, r.level, q.nearestList(r.vec), q.encode(r.vec)); err != nil {
				return nil, fmt.Errorf("refit: code of row %d: %w", r.seq, err)
			}
		}
		after = page[len(page)-1].seq
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM quantizer`); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	buf := make([]byte, 4*dim)
	if _, err := tx.ExecContext(ctx, `INSERT INTO quantizer (generation, centre, fitted_count, fitted_at, centroids) VALUES (?, ?, ?, ?, ?)`,
		q.gen, encodeVector(buf, q.centre), n, time.Now().UnixMilli(), encodeCentroids(q.centroids)); err != nil {
		return nil, fmt.Errorf("refit: %w", err)
	}
	return q, nil
}

// QuantInfo describes the embedded store's quantisation, for benchmarks
// and operators.
type QuantInfo struct {
	// Generation counts refits; 0 means never fitted (an empty collection).
	Generation int64
	// FittedCount is how many vectors the centre is the mean of.
	FittedCount int64
	FittedAt    time.Time
	// Rescore and MinCandidates are the store's options: a search rescores
	// max(MinCandidates, Rescore*(k+excluded)) hamming-nearest candidates.
	Rescore, MinCandidates int
	// Lists is how many IVF lists the codes are split into (0: none, every
	// search scans all codes); a search scans at most the Probe nearest,
	// those within ProbeMargin (SQLiteVecOptions).
	Lists, Probe int
	ProbeMargin  float64
}

// Quantization reports the centre's generation and what it was fitted on.
func (s *SQLiteVec) Quantization(ctx context.Context) (QuantInfo, error) {
	info := QuantInfo{Rescore: s.opts.Rescore, MinCandidates: s.opts.MinCandidates, Probe: s.opts.Probe, ProbeMargin: s.opts.ProbeMargin}
	var at int64
	err := s.r.QueryRowContext(ctx, `SELECT generation, fitted_count, fitted_at, coalesce(length(centroids), 0) / ? FROM quantizer`, 4*s.dim).
		Scan(&info.Generation, &info.FittedCount, &at, &info.Lists)
	if errors.Is(err, sql.ErrNoRows) {
		return info, nil
	}
	if err != nil {
		return info, fmt.Errorf("quantization of %s: %w", s.collection, err)
	}
	info.FittedAt = time.UnixMilli(at).UTC()
	return info, nil
}

// Requantize refits the centre to every stored vector now and rewrites all
// codes (and compacts their table), in one transaction. Searches keep being
// answered meanwhile, from the previous generation.
func (s *SQLiteVec) Requantize(ctx context.Context) error {
	var q *quantizer
	err := sqlitedb.InTx(ctx, s.w, func(tx *sql.Tx) error {
		var err error
		q, err = refit(ctx, tx, s.dim, s.opts)
		return err
	})
	if err != nil {
		return fmt.Errorf("requantize %s: %w", s.collection, err)
	}
	s.quant.Store(q)
	return nil
}

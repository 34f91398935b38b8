package catalog

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// sqlStore is the catalog on a SQL database: the code SQLite and Postgres
// share. Statements are written once, with SQLite's placeholders (? and
// ?N), and rebound to $N for Postgres; the few that differ branch on pg.
//
// Transactions keep SQLite's semantics on both: a write transaction runs as
// if alone (SQLite: one writer, BEGIN IMMEDIATE; Postgres: SERIALIZABLE,
// retried on a serialization failure), so read-then-write code needs no
// locks of its own, and a read transaction sees one snapshot.
type sqlStore struct {
	w, r *sql.DB // SQLite: the one writer and the read-only pool; Postgres: one pool twice
	pg   bool

	closeOnce sync.Once
	closeErr  error
}

type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// bound rebinds every statement to the dialect before it runs.
type bound struct {
	q  querier
	pg bool
}

func (b bound) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return b.q.ExecContext(ctx, b.bind(query), args...)
}

func (b bound) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return b.q.QueryContext(ctx, b.bind(query), args...)
}

func (b bound) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return b.q.QueryRowContext(ctx, b.bind(query), args...)
}

func (b bound) bind(query string) string {
	if !b.pg {
		return query
	}
	return rebind(query)
}

var rebound sync.Map // query text → its Postgres form; the texts are a fixed set

// rebind turns ? and ?N placeholders into Postgres's $N, leaving quoted
// strings and identifiers alone.
func rebind(query string) string {
	if v, ok := rebound.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			b.WriteByte(c)
		case c == '\'' || c == '"':
			quote = c
			b.WriteByte(c)
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 {
				b.WriteString(query[i+1 : j])
			} else {
				n++
				b.WriteString(strconv.Itoa(n))
			}
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	rebound.Store(query, out)
	return out
}

// reader runs single statements outside a transaction, for reads.
func (s *sqlStore) reader() querier { return bound{s.r, s.pg} }

// writer runs single statements outside a transaction, for writes.
func (s *sqlStore) writer() querier { return bound{s.w, s.pg} }

// write runs fn in a write transaction. On Postgres, fn may run more than
// once: a serialization failure rolls the attempt back and starts over, so
// fn must only set its results, never accumulate them.
func (s *sqlStore) write(ctx context.Context, fn func(tx querier) error) error {
	return s.inTx(ctx, s.w, &sql.TxOptions{Isolation: sql.LevelSerializable}, fn)
}

// read runs fn in a read-only transaction: one snapshot.
func (s *sqlStore) read(ctx context.Context, fn func(tx querier) error) error {
	return s.inTx(ctx, s.r, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}, fn)
}

// maxTxAttempts bounds the retries of a Postgres transaction that keeps
// losing serialization conflicts.
const maxTxAttempts = 20

func (s *sqlStore) inTx(ctx context.Context, db *sql.DB, pgOpts *sql.TxOptions, fn func(tx querier) error) error {
	if !s.pg {
		// SQLite: the writer's transactions are IMMEDIATE (sqlitedb) and
		// take no options; a reader's are snapshots already.
		return runTx(ctx, db, nil, bound{pg: false}, fn)
	}
	for attempt := 1; ; attempt++ {
		err := runTx(ctx, db, pgOpts, bound{pg: true}, fn)
		if err == nil || attempt == maxTxAttempts || !retryable(err) {
			return err
		}
		// Jittered, growing: conflicting writers spread out.
		d := time.Duration(1+rand.IntN(5*attempt)) * time.Millisecond
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}

func runTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, b bound, fn func(tx querier) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	b.q = tx
	if err := fn(b); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// retryable reports a Postgres serialization failure or deadlock: the
// transaction did nothing and may simply run again. A unique violation
// counts too: every insert here either says ON CONFLICT or follows a
// look-up in the same transaction, so a violation means a concurrent
// transaction inserted the row after our look-up (Postgres reports that
// race as 23505, not always as 40001), and the next attempt finds it.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "23505")
}

// Close implements Store.
func (s *sqlStore) Close() error {
	s.closeOnce.Do(func() {
		if s.r == s.w {
			s.closeErr = s.w.Close()
			return
		}
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
	})
	return s.closeErr
}

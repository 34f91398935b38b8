// Package sqlitedb opens SQLite files the way LessonFlow's embedded stores
// (catalog, vectorstore) need them: one writer connection with immediate
// transactions (SQLite has one writer), a read-only pool, WAL with
// synchronous=FULL, a busy timeout, and a first open that survives several
// processes creating the same file at once.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// BusyTimeout is how long a connection waits for another's lock.
const BusyTimeout = 10 * time.Second

// DB is a SQLite file's writer connection and read-only pool.
type DB struct {
	W *sql.DB // the one writer: MaxOpenConns(1), BEGIN IMMEDIATE
	R *sql.DB // readers; query_only, so a write here is an error, not a bypass
}

// Open opens the file at the absolute path with the named driver ("sqlite3"
// or a variant registered with a connect hook). params (may be empty) are
// added to both pools, e.g. "_foreign_keys=on". setup runs on the writer
// before the readers open (schema creation, migrations).
func Open(ctx context.Context, driver, path, params string, setup func(context.Context, *sql.DB) error) (*DB, error) {
	// A file: URI, so that no byte of the path is taken for a parameter; the
	// driver reads the _ parameters, SQLite ignores them.
	uri := (&url.URL{Scheme: "file", Path: path}).String()
	common := "_busy_timeout=" + strconv.Itoa(int(BusyTimeout/time.Millisecond))
	if params != "" {
		common += "&" + params
	}
	w, err := sql.Open(driver, uri+"?"+common+"&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Switching a new file to WAL needs an exclusive lock, and SQLite reports
	// SQLITE_BUSY for it without calling the busy handler when several
	// processes create the file at once: retry that case ourselves.
	err = retryBusy(func() error {
		if err := checkWAL(ctx, w); err != nil {
			return err
		}
		return setup(ctx, w)
	})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r, err := sql.Open(driver, uri+"?"+common+"&_query_only=on")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(max(4, runtime.NumCPU()))
	r.SetMaxIdleConns(max(4, runtime.NumCPU()))
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &DB{W: w, R: r}, nil
}

// Close closes both pools.
func (db *DB) Close() error {
	return errors.Join(db.R.Close(), db.W.Close())
}

// InTx runs fn in a transaction on db, committing when fn returns nil.
func InTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func retryBusy(fn func() error) error {
	deadline := time.Now().Add(BusyTimeout)
	for {
		err := fn()
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || (se.Code != sqlite3.ErrBusy && se.Code != sqlite3.ErrLocked) ||
			time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
	}
}

// checkWAL fails if the driver could not switch the file to WAL (e.g. on a
// filesystem without shared memory): readers would then block the writer.
func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	return nil
}

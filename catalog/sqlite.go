package catalog

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/lessonflow/lessonflow/internal/sqlitedb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// SQLite is the Store on one SQLite file, which the API and worker processes
// of one machine may share.
//
// SQLite allows one writer at a time, so writes go through a *sql.DB with a
// single connection: goroutines of one process queue in Go (honouring their
// contexts) rather than spinning on the file lock, and only processes contend
// for the lock, waiting up to sqlitedb.BusyTimeout. Write transactions start with
// BEGIN IMMEDIATE, taking the lock up front, so a transaction that reads and
// then writes can never fail with SQLITE_BUSY on the upgrade. Reads use a
// pool of read-only connections; in WAL mode they never block the writer.
//
// Durability: synchronous=FULL fsyncs the WAL at every commit. NORMAL would
// already survive kill -9 (a commit is in the OS page cache before it
// returns), but not power loss, and after a power loss Temporal, whose server
// has its own storage, could remember an activity as completed whose
// catalog record was lost. Our writes number a handful per pipeline stage,
// so an fsync each costs nothing that matters.
type SQLite struct{ *sqlStore }

var _ Backend = (*SQLite)(nil)

// OpenSQLite opens (creating if needed) the catalog at path and brings its
// schema up to date. Several processes may open the same file at once.
// path must name a file: ":memory:" would give each connection its own
// database.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open catalog: %w: need a file path, got %q", ErrInvalid, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	db, err := sqlitedb.Open(context.Background(), "sqlite3", abs, "_foreign_keys=on", migrate)
	if err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	return &SQLite{&sqlStore{w: db.W, r: db.R}}, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are migrations/NNNN_name.sql, applied in order of NNNN.
func migrations() ([]migration, error) { return readMigrations(migrationFiles, "migrations") }

// readMigrations reads dir's NNNN_name.sql files, numbered from 1 without gaps.
func readMigrations(files embed.FS, dir string) ([]migration, error) {
	entries, err := files.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := files.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return out, nil
}

// migrate applies the missing migrations in one IMMEDIATE transaction and
// records the version in PRAGMA user_version, which is part of the same
// transaction. A second process opening at the same time waits for the lock,
// then finds nothing left to do.
func migrate(ctx context.Context, db *sql.DB) error {
	migs, err := migrations()
	if err != nil {
		return err
	}
	latest := len(migs)
	return sqlitedb.InTx(ctx, db, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		if v > latest {
			// A newer binary migrated this file; running old code on it could
			// corrupt what the new schema means.
			return fmt.Errorf("schema version %d is newer than this binary's %d", v, latest)
		}
		for _, m := range migs[v:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		if v < latest {
			if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(latest)); err != nil {
				return fmt.Errorf("set schema version: %w", err)
			}
		}
		return nil
	})
}

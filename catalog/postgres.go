package catalog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

//go:embed migrations/postgres/*.sql
var pgMigrationFiles embed.FS

// Postgres is the Store on a PostgreSQL database (version 13 or later), for
// deployments where API and worker processes run on several machines. It
// runs the same code as SQLite (see sqlStore): write transactions are
// SERIALIZABLE and start over on a serialization failure, read
// transactions are REPEATABLE READ snapshots. Its migrations live in
// migrations/postgres, one twin per SQLite migration.
type Postgres struct{ *sqlStore }

var _ Backend = (*Postgres)(nil)

// OpenPostgres connects to the database dsn names (a postgres:// URL or
// key=value pairs, as pgx reads them) and brings its schema up to date.
// Several processes may open it at once.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	if dsn == "" {
		return nil, fmt.Errorf("open catalog: %w: empty Postgres DSN", ErrInvalid)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	db.SetMaxOpenConns(DefaultPostgresMaxConns)
	db.SetMaxIdleConns(DefaultPostgresMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	if err := migratePostgres(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	return &Postgres{&sqlStore{w: db, r: db, pg: true}}, nil
}

// DefaultPostgresMaxConns bounds the connections one process opens.
const DefaultPostgresMaxConns = 16

// SetMaxConns bounds the connections this process opens (and keeps idle):
// every API and worker process counts against the server's
// max_connections. Statements wait for a free connection, honouring their
// contexts.
func (p *Postgres) SetMaxConns(n int) {
	p.w.SetMaxOpenConns(n)
	p.w.SetMaxIdleConns(n)
}

// pgMigrationLock is the advisory lock key that serializes migrations of
// processes opening one database at once.
const pgMigrationLock = 0x6c6573736f6e // "lesson"

// migratePostgres applies the missing migrations in one transaction, holding
// an advisory lock so a second process waits and then finds nothing to do.
// The version lives in lessonflow_schema, written in the same transaction.
func migratePostgres(ctx context.Context, db *sql.DB) error {
	migs, err := readMigrations(pgMigrationFiles, "migrations/postgres")
	if err != nil {
		return err
	}
	latest := len(migs)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrationLock); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS lessonflow_schema (version BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM lessonflow_schema`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = tx.ExecContext(ctx, `INSERT INTO lessonflow_schema (version) VALUES (0)`)
	}
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if v > latest {
		// A newer binary migrated this database; running old code on it
		// could corrupt what the new schema means.
		return fmt.Errorf("schema version %d is newer than this binary's %d", v, latest)
	}
	for _, m := range migs[v:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration postgres/%s: %w", m.name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE lessonflow_schema SET version = $1`, latest); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return tx.Commit()
}

package catalog_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/catalog/catalogtest"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"golang.org/x/sync/errgroup"
)

func openPostgres(t *testing.T, dsn string) *catalog.Postgres {
	t.Helper()
	s, err := catalog.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPostgresContract runs the catalog contract against a real PostgreSQL
// server (testenv.Postgres: Debian's, started for the test, or the one
// LESSONFLOW_TEST_POSTGRES_DSN names), one fresh database per test.
func TestPostgresContract(t *testing.T) {
	pg := testenv.Postgres(t)
	catalogtest.Run(t, func(t *testing.T) catalog.Store {
		s, err := catalog.OpenPostgres(context.Background(), pg.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	catalogtest.RunRechecks(t, func(t *testing.T) catalogtest.RecheckStore {
		s, err := catalog.OpenPostgres(context.Background(), pg.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Processes that open one database at once migrate it once; a reopen finds
// the schema current; a database a newer binary migrated is refused.
func TestPostgresConcurrentOpenAndSchemaVersion(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.Database(t)
	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			s, err := catalog.OpenPostgres(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent open: %v", err)
	}
	openPostgres(t, dsn).Close()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`SELECT version FROM lessonflow_schema`).Scan(&v); err != nil || v != 6 {
		t.Fatalf("schema version %d, %v; want 6", v, err)
	}
	if _, err := db.Exec(`UPDATE lessonflow_schema SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.OpenPostgres(context.Background(), dsn); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// The decision log and the watermark registry refuse UPDATE and DELETE from
// any client, as in SQLite.
func TestPostgresAppendOnly(t *testing.T) {
	pg := testenv.Postgres(t)
	dsn := pg.Database(t)
	s := openPostgres(t, dsn)
	ctx := context.Background()
	if _, _, err := s.CreateVideo(ctx, catalog.Video{ID: "v1", Title: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "v1", Key: "k", Outcome: "approved"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterWatermark(ctx, "v1", "teacher", "k1"); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE decisions SET outcome = 'blocked'`, `DELETE FROM decisions`, `TRUNCATE decisions CASCADE`,
		`UPDATE watermarks SET teacher_id = 'x'`, `DELETE FROM watermarks`,
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s: allowed", q)
		}
	}
	if err := s.DeleteVideo(ctx, "v1"); !errors.Is(err, catalog.ErrHasDecisions) {
		t.Fatalf("DeleteVideo with decisions: %v", err)
	}
}

package testenv

import (
	"database/sql"
	"testing"
	"time"
)

// TestPostgres checks that each database Postgres hands out connects, is
// isolated from the others, and is gone once its test ends.
func TestPostgres(t *testing.T) {
	start := time.Now()
	pg := Postgres(t)
	t.Logf("server up in %v: %s", time.Since(start), pg.DSN)

	var names []string
	t.Run("databases", func(t *testing.T) {
		open := func(dsn string) *sql.DB {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			var one int
			if err := db.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1 on %s: %d, %v", dsn, one, err)
			}
			var name string
			if err := db.QueryRow("SELECT current_database()").Scan(&name); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
			return db
		}
		start := time.Now()
		dsnA := pg.Database(t)
		t.Logf("database created in %v: %s", time.Since(start), dsnA)
		a, b := open(dsnA), open(pg.Database(t))
		if names[0] == names[1] {
			t.Fatalf("both databases are %s", names[0])
		}
		if _, err := a.Exec("CREATE TABLE only_in_a (id int); INSERT INTO only_in_a VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := a.QueryRow("SELECT count(*) FROM only_in_a").Scan(&n); err != nil || n != 1 {
			t.Fatalf("count in %s: %d, %v", names[0], n, err)
		}
		var reg sql.NullString
		if err := b.QueryRow("SELECT to_regclass('only_in_a')::text").Scan(&reg); err != nil {
			t.Fatal(err)
		}
		if reg.Valid {
			t.Fatalf("table only_in_a of %s is visible in %s", names[0], names[1])
		}
	})
	if len(names) != 2 {
		t.FailNow()
	}

	admin, err := sql.Open("pgx", pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var left int
	if err := admin.QueryRow("SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of databases %v are left after their test ended", left, names)
	}
}

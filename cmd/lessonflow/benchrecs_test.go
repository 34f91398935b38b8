package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/lessonflow/lessonflow/internal/testenv"
)

// TestBenchRecsPostgres is `make bench-recs`' PostgreSQL row (opt-in:
// LESSONFLOW_BENCH_RECS_POSTGRES=1): the same bench with the catalog in a
// database of testenv.Postgres (a throwaway server, or the one
// LESSONFLOW_TEST_POSTGRES_DSN names). LESSONFLOW_BENCH_RECS_ARGS adds flags
// (e.g. "--lessons 5000" for a quick look).
func TestBenchRecsPostgres(t *testing.T) {
	if os.Getenv("LESSONFLOW_BENCH_RECS_POSTGRES") == "" {
		t.Skip("benchmark: set LESSONFLOW_BENCH_RECS_POSTGRES=1 (make bench-recs)")
	}
	dsn := testenv.Postgres(t).Database(t)
	args := append([]string{"--label", "default", "--postgres", dsn}, strings.Fields(os.Getenv("LESSONFLOW_BENCH_RECS_ARGS"))...)
	if err := runBenchRecs(context.Background(), args); err != nil {
		t.Fatal(err)
	}
}

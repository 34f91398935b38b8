package catalog_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/catalog/catalogtest"
)

func openAt(t *testing.T, path string) *catalog.SQLite {
	t.Helper()
	s, err := catalog.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteContract(t *testing.T) {
	catalogtest.Run(t, func(t *testing.T) catalog.Store {
		s, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "catalog.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// rawDB opens the file behind the store's back, as an operator might.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestSQLiteOpenRejectsNonFiles(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file::memory:?cache=shared"} {
		if s, err := catalog.OpenSQLite(p); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) succeeded", p)
		}
	}
}

func TestSQLiteOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%chars&_txlock=x")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cat alog.db")
	s := openAt(t, path)
	if _, _, err := s.CreateVideo(context.Background(), catalog.Video{ID: "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given path: %v", err)
	}
}

func TestSQLiteReopenAndSchemaVersion(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s, err := catalog.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateVideo(ctx, catalog.Video{ID: "v1", Title: "kept"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "v1", Key: "k", Outcome: "approved"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path) // migrations are not re-applied
	if v, err := s.GetVideo(ctx, "v1"); err != nil || v.Title != "kept" {
		t.Fatalf("after reopen: %+v, %v", v, err)
	}
	db := rawDB(t, path)
	var version int
	var mode string
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version < 1 {
		t.Fatalf("user_version = %d, %v", version, err)
	}
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	s.Close()

	// A file migrated by a newer binary is refused, not misread.
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
		t.Fatal(err)
	}
	if s, err := catalog.OpenSQLite(path); err == nil {
		s.Close()
		t.Fatal("OpenSQLite of a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("OpenSQLite of a newer schema: %v", err)
	}
}

// The decision log stays append-only even for someone with a SQL shell.
func TestSQLiteDecisionsAppendOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s := openAt(t, path)
	if _, _, err := s.CreateVideo(ctx, catalog.Video{ID: "v1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "v1", Key: "k", Outcome: "approved"}); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, q := range []string{`UPDATE decisions SET outcome = 'blocked'`, `DELETE FROM decisions`} {
		if _, err := db.Exec(q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want append-only error", q, err)
		}
	}
}

// Several processes (here: goroutines each opening the file) may create and
// migrate a fresh database at the same moment.
func TestSQLiteConcurrentOpen(t *testing.T) {
	for round := range 10 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("catalog%d.db", round))
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := catalog.OpenSQLite(path)
				if err == nil {
					_, _, err = s.CreateVideo(context.Background(), catalog.Video{ID: "v"})
					s.Close()
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}

// hammer does a pipeline's worth of writes for videos prefix0..prefixN-1 and
// appends decisions under keys shared with other writers.
func hammer(ctx context.Context, s catalog.Store, prefix string, n int) error {
	if _, _, err := s.CreateVideo(ctx, catalog.Video{ID: "shared"}); err != nil {
		return err
	}
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i)
		if _, _, err := s.CreateVideo(ctx, catalog.Video{ID: id, Tags: []string{"t"}}); err != nil {
			return err
		}
		for _, stage := range []string{"probe", "sample", "classify"} {
			if err := s.StageStarted(ctx, id, stage, time.Time{}); err != nil {
				return err
			}
			if err := s.StageFinished(ctx, id, stage, time.Time{}, catalog.StageSucceeded, ""); err != nil {
				return err
			}
		}
		if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: id, Key: "decide", Outcome: "approved"}); err != nil {
			return err
		}
		// Every writer also appends to a shared video under shared keys.
		if _, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "shared", Key: fmt.Sprintf("k%d", i), Actor: prefix}); err != nil {
			return err
		}
		if err := s.SetState(ctx, id, catalog.StateApproved, ""); err != nil {
			return err
		}
		if _, _, err := s.ListVideos(ctx, catalog.ListQuery{Limit: 5}); err != nil {
			return err
		}
	}
	return nil
}

func checkHammered(t *testing.T, s catalog.Store, prefixes []string, n int) {
	t.Helper()
	ctx := context.Background()
	ds, err := s.Decisions(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != n {
		t.Fatalf("shared video has %d decisions, want %d (one per key)", len(ds), n)
	}
	for _, p := range prefixes {
		for i := range n {
			v, err := s.GetVideo(ctx, fmt.Sprintf("%s%d", p, i))
			if err != nil {
				t.Fatal(err)
			}
			if v.State != catalog.StateApproved || len(v.Stages) != 3 {
				t.Fatalf("%s: state %s, %d stages", v.ID, v.State, len(v.Stages))
			}
		}
	}
}

// Two stores on one file, as the API and a worker would have, writing in
// parallel: the file lock and busy_timeout must absorb all contention.
func TestSQLiteTwoStoresOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	a, b := openAt(t, path), openAt(t, path)
	const n = 20
	var (
		wg       sync.WaitGroup
		prefixes []string
	)
	errs := make(chan error, 8)
	for i := range 8 {
		s := catalog.Store(a)
		if i%2 == 1 {
			s = b
		}
		p := fmt.Sprintf("g%d-", i)
		prefixes = append(prefixes, p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- hammer(ctx, s, p, n)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err) // e.g. "database is locked" would surface here
		}
	}
	checkHammered(t, a, prefixes, n)
	checkHammered(t, b, prefixes, n)
}

// Child processes for the multi-process tests: CATALOG_CHILD=mode:path:prefix.
func TestMain(m *testing.M) {
	if spec := os.Getenv("CATALOG_CHILD"); spec != "" {
		os.Exit(child(spec))
	}
	os.Exit(m.Run())
}

func child(spec string) int {
	parts := strings.SplitN(spec, ":", 3)
	mode, path, prefix := parts[0], parts[1], parts[2]
	s, err := catalog.OpenSQLite(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	switch mode {
	case "hammer":
		if err := hammer(ctx, s, prefix, 20); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	case "append":
		// Append forever, acknowledging each committed decision on stdout,
		// until the parent kills the process.
		for i := 0; ; i++ {
			d, _, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "v1", Key: fmt.Sprintf("k%06d", i), Outcome: "approved"})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			if err := s.SetState(ctx, "v1", catalog.StateNeedsReview, strconv.Itoa(i)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Printf("%d %d\n", i, d.Seq)
		}
	}
	return 0
}

func childCmd(mode, path, prefix string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CATALOG_CHILD="+mode+":"+path+":"+prefix)
	cmd.Stderr = os.Stderr
	return cmd
}

// Separate OS processes creating, migrating and writing one file at once.
func TestSQLiteMultiProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	prefixes := []string{"p0-", "p1-", "p2-"}
	var cmds []*exec.Cmd
	for _, p := range prefixes {
		cmd := childCmd("hammer", path, p)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	checkHammered(t, openAt(t, path), prefixes, 20)
}

// kill -9 of a writer loses no acknowledged write, leaves a sound file, and a
// retry of the interrupted work adds no duplicate.
func TestSQLiteKill9(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	s, err := catalog.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateVideo(ctx, catalog.Video{ID: "v1"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cmd := childCmd("append", path, "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var i int
		var seq int64
		if _, err := fmt.Sscanf(sc.Text(), "%d %d", &i, &seq); err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked[fmt.Sprintf("k%06d", i)] = seq
		if len(acked) == 50 {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL, mid-write most likely
		t.Fatal(err)
	}
	cmd.Wait()
	if len(acked) < 50 {
		t.Fatalf("child acknowledged only %d writes", len(acked))
	}

	s = openAt(t, path)
	var integrity string
	if err := rawDB(t, path).QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("integrity_check = %q, %v", integrity, err)
	}
	ds, err := s.Decisions(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]int64{}
	for _, d := range ds {
		have[d.Key] = d.Seq
	}
	for k, seq := range acked {
		if have[k] != seq {
			t.Fatalf("acknowledged decision %s (seq %d) lost after kill -9", k, seq)
		}
	}
	// Retrying everything, as Temporal would, appends only what is missing.
	n := len(ds)
	for i := range n + 5 {
		_, created, err := s.AppendDecision(ctx, catalog.Decision{VideoID: "v1", Key: fmt.Sprintf("k%06d", i), Outcome: "approved"})
		if err != nil {
			t.Fatal(err)
		}
		if created != (i >= n) {
			t.Fatalf("retry of k%06d: created = %v", i, created)
		}
	}
	if ds, _ := s.Decisions(ctx, "v1"); len(ds) != n+5 {
		t.Fatalf("%d decisions after retries, want %d", len(ds), n+5)
	}
	if _, err := s.GetVideo(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVideo(ctx, "v1"); !errors.Is(err, catalog.ErrHasDecisions) {
		t.Fatalf("DeleteVideo = %v", err)
	}
}

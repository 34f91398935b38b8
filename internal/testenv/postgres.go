package testenv

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// PostgresServer is a PostgreSQL server that tests may create databases in.
type PostgresServer struct {
	// DSN connects to the server's maintenance database as a user that may
	// CREATE DATABASE; tests that need the whole server use it.
	DSN    string
	admin  *sql.DB
	dsnFor func(db string) string // a DSN naming database db
}

// Postgres is the PostgreSQL server of this test: the one
// LESSONFLOW_TEST_POSTGRES_DSN names (its user must be allowed to CREATE
// DATABASE), else a fresh cluster of Debian's postgresql package (which
// setup installs), listening only on a unix socket in a temporary directory
// and stopped, directory and all, when the test ends. Tests get their own
// databases from it with Database, so they never see each other's tables.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	p := &PostgresServer{DSN: os.Getenv("LESSONFLOW_TEST_POSTGRES_DSN")}
	if p.DSN != "" {
		p.dsnFor = func(db string) string { return withDatabase(p.DSN, db) }
	} else {
		dir := startPostgres(t)
		p.dsnFor = func(db string) string { return socketDSN(dir, db) }
		p.DSN = p.dsnFor("postgres")
	}
	db, err := sql.Open("pgx", p.DSN)
	if err != nil {
		t.Fatalf("postgres %q: %v", p.DSN, err)
	}
	t.Cleanup(func() { db.Close() }) // before the server stops: cleanups run last-in first-out
	p.admin = db
	return p
}

// Database creates an empty database with a fresh name and returns a DSN for
// it (for sql.Open("pgx", dsn)); the database is dropped, even with
// connections still open, when the test ends.
func (p *PostgresServer) Database(t testing.TB) string {
	t.Helper()
	name := freshName("lf_")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = p.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return p.dsnFor(name)
}

// socketDSN connects as postgres to database db of the server whose unix
// socket is in dir.
func socketDSN(dir, db string) string {
	return "host=" + dir + " port=5432 user=postgres dbname=" + db + " sslmode=disable"
}

// withDatabase is dsn, in URL or keyword/value form, naming database name.
func withDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Path, u.RawPath = "/"+name, ""
			return u.String()
		}
	}
	return dsn + " dbname=" + name // a repeated keyword overrides the earlier one
}

// startPostgres runs initdb and postgres from the newest
// /usr/lib/postgresql/<version>/bin and returns the directory holding the
// cluster and its socket. The postgres
// binary is run directly, not through pg_ctl, so the test owns the process
// and can read its log when it fails to come up.
func startPostgres(t testing.TB) string {
	t.Helper()
	bin := postgresBinDir(t)

	// initdb and postgres refuse to run as root: as root, run them as the
	// postgres user that Debian's package creates.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres user to run PostgreSQL as (run `make setup`): %v", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}

	// Not t.TempDir: its parents are root's, mode 0700, which the postgres
	// user cannot enter, and its path, which holds the test's name, can push
	// the socket's past the 107 bytes a unix socket path may have.
	dir, err := os.MkdirTemp("", "lfpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if sock := filepath.Join(dir, ".s.PGSQL.5432"); len(sock) > 107 {
		t.Fatalf("postgres socket path %s is longer than 107 bytes: set TMPDIR to a shorter directory", sock)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}

	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", dir, "-A", "trust", "-U", "postgres",
		"--no-sync", "-E", "UTF8", "--locale=C")
	initdb.Dir = dir // the test's working directory may be closed to the postgres user
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	// Durability is worthless for a throwaway cluster: turning it off makes
	// CREATE DATABASE and commits far cheaper.
	var log lockedBuffer
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", dir, "-k", dir, "-c", "listen_addresses=",
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "shared_buffers=16MB", "-c", "max_connections=50")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &log, &log
	// No Pdeathsig: Linux sends it when the starting OS thread exits, which
	// a goroutine that locked its thread can cause mid-test. A test binary
	// killed before its cleanups leaves the server running; its directory
	// in TMPDIR (lfpg-*) says which.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed once waitErr is set
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown: disconnect clients, no waiting
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	if err := waitPostgres(socketDSN(dir, "postgres"), exited, &waitErr); err != nil {
		stop()
		t.Fatalf("postgres in %s: %v\n%s", dir, err, log.String())
	}
	t.Cleanup(stop) // registered after the directory's removal, so it runs before it
	return dir
}

// postgresBinDir is the bin directory of the newest PostgreSQL that Debian's
// postgresql package installed.
func postgresBinDir(t testing.TB) string {
	t.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		t.Fatal("no /usr/lib/postgresql/*/bin/initdb: run `make setup` (or set LESSONFLOW_TEST_POSTGRES_DSN)")
	}
	version := func(p string) float64 { // "15", "9.6"
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	newest := slices.MaxFunc(initdbs, func(a, b string) int {
		va, vb := version(a), version(b)
		switch {
		case va < vb:
			return -1
		case va > vb:
			return 1
		}
		return 0
	})
	return filepath.Dir(newest)
}

// waitPostgres polls dsn until the server accepts connections, it exits
// (exited is closed, *waitErr says how), or 20 s pass.
func waitPostgres(dsn string, exited <-chan struct{}, waitErr *error) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited: %v", *waitErr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after 20 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockedBuffer collects a process's output while the test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

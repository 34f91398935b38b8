package blob_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/blob/blobtest"
)

func newFS(t *testing.T) *blob.FS {
	t.Helper()
	s, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFSContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return newFS(t) })
}

func TestFSLocalPath(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	if _, err := blob.PutBytes(ctx, s, "uploads/v1/source.mp4", []byte("video")); err != nil {
		t.Fatal(err)
	}
	p, err := s.LocalPath("uploads/v1/source.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "video" {
		t.Fatalf("ReadFile(%s) = %q, %v", p, b, err)
	}
	if !filepath.IsAbs(p) || filepath.Ext(p) != ".mp4" {
		t.Fatalf("LocalPath = %s, want an absolute path keeping the extension", p)
	}
	if _, err := s.LocalPath("uploads/v1"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("LocalPath(directory) = %v, want ErrNotFound", err)
	}
	if _, err := s.LocalPath("uploads/v2/source.mp4"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("LocalPath(missing) = %v, want ErrNotFound", err)
	}
	if _, err := s.LocalPath("../etc/passwd"); !errors.Is(err, blob.ErrInvalidKey) {
		t.Fatalf("LocalPath(../etc/passwd) = %v, want ErrInvalidKey", err)
	}
}

// A reader of an object keeps reading the old bytes while a Put replaces it.
func TestFSOverwriteWhileReading(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	blob.PutBytes(ctx, s, "k", []byte("old content"))
	rc, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := blob.PutBytes(ctx, s, "k", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "old content" {
		t.Fatalf("open reader saw %q", b)
	}
}

func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestFSFailedPutLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	s, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(context.Background(), "k", io.MultiReader(strings.NewReader("partial"), errReader{}))
	if err == nil {
		t.Fatal("Put succeeded")
	}
	if names := tmpFiles(t, dir); len(names) != 0 {
		t.Fatalf("temp files left: %v", names)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestFSConflictingKeys(t *testing.T) {
	s := newFS(t)
	ctx := context.Background()
	blob.PutBytes(ctx, s, "a", []byte("x"))
	if _, err := blob.PutBytes(ctx, s, "a/b", []byte("y")); err == nil {
		t.Fatal("Put(a/b) over object a succeeded")
	}
	blob.PutBytes(ctx, s, "d/e", []byte("y"))
	if _, err := blob.PutBytes(ctx, s, "d", []byte("x")); err == nil {
		t.Fatal("Put(d) over directory d succeeded")
	}
	if b, err := blob.GetBytes(ctx, s, "d/e", 10); err != nil || string(b) != "y" {
		t.Fatalf("d/e = %q, %v", b, err)
	}
}

func TestFSRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	if _, err := blob.NewFS(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "put-stale")
	fresh := filepath.Join(dir, "tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := blob.NewFS(dir); err != nil {
		t.Fatal(err)
	}
	if names := tmpFiles(t, dir); len(names) != 1 || names[0] != "put-fresh" {
		t.Fatalf("temp files after NewFS: %v, want only the fresh one", names)
	}
}

// TestFSKill9 kills a process in the middle of a Put: the object must not
// exist, neither in part nor at all, and the store must keep working.
func TestFSKill9(t *testing.T) {
	if os.Getenv("BLOB_KILL9_CHILD") != "" {
		kill9Child()
		return
	}
	dir := t.TempDir()
	s, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := blob.PutBytes(ctx, s, "uploads/v1/source", []byte("previous")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFSKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BLOB_KILL9_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child says "streaming" once bytes are flowing into the temp file.
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "streaming" {
	}
	time.Sleep(50 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	cmd.Wait()

	if b, err := blob.GetBytes(ctx, s, "uploads/v1/source", 1<<20); err != nil || string(b) != "previous" {
		t.Fatalf("after kill -9 mid-overwrite: %q, %v; want the previous object", b, err)
	}
	if _, err := s.Stat(ctx, "uploads/v2/source"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("after kill -9 mid-put: Stat = %v, want ErrNotFound", err)
	}
	if names := tmpFiles(t, dir); len(names) == 0 {
		t.Fatal("expected the killed Puts' temp files to remain (they are swept when stale)")
	}
	infos, err := s.List(ctx, "")
	if err != nil || len(infos) != 1 {
		t.Fatalf("List = %+v, %v", infos, err)
	}
}

// endless yields bytes forever, announcing when it has started.
type endless struct{ said bool }

func (e *endless) Read(p []byte) (int, error) {
	if !e.said {
		e.said = true
		defer fmt.Println("streaming")
	}
	time.Sleep(time.Millisecond)
	return len(p), nil
}

func kill9Child() {
	s, err := blob.NewFS(os.Getenv("BLOB_KILL9_CHILD"))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	go s.Put(ctx, "uploads/v2/source", &endless{said: true})
	s.Put(ctx, "uploads/v1/source", &endless{})
	panic("unreachable: the parent kills this process")
}

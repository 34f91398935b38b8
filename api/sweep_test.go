package api

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
)

func TestSweepOrphanUploads(t *testing.T) {
	ctx := context.Background()
	fs := newFS(t)
	cat, err := catalog.OpenSQLite(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	s := &Server{Catalog: cat, Blobs: fs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	old := time.Now().Add(-48 * time.Hour)
	orphan, owned, young := uploadKey(old), uploadKey(old), uploadKey(time.Now())
	for _, k := range []string{orphan, owned, young, "uploads/not-a-stamp"} {
		if _, err := blob.PutBytes(ctx, fs, k, []byte("video bytes")); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cat.CreateVideo(ctx, catalog.Video{ID: "v1", SHA256: "ab", Title: "t", Level: 1, Language: "en", TeacherID: "t", BlobKey: owned}); err != nil {
		t.Fatal(err)
	}
	n, err := s.SweepOrphanUploads(ctx, 24*time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("removed %d (%v), want 1", n, err)
	}
	if _, err := fs.Stat(ctx, orphan); err == nil {
		t.Fatal("orphan upload survived")
	}
	for _, k := range []string{owned, young, "uploads/not-a-stamp"} {
		if _, err := fs.Stat(ctx, k); err != nil {
			t.Fatalf("%s removed: %v", k, err)
		}
	}
}

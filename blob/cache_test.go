package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lessonflow/lessonflow/blob"
)

// countingStore counts Gets and can hold them until released, like a slow
// remote store; it has no local files.
type countingStore struct {
	blob.Store
	gets atomic.Int32
	gate chan struct{} // nil: Gets go through at once
	fail error
}

func (s *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.gets.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	if s.fail != nil {
		return nil, s.fail
	}
	return s.Store.Get(ctx, key)
}

func newCache(t *testing.T, max int64) (*blob.Cache, *countingStore, string) {
	t.Helper()
	store := &countingStore{Store: newFS(t)}
	dir := filepath.Join(t.TempDir(), "cache")
	c, err := blob.NewCache(store, dir, max)
	if err != nil {
		t.Fatal(err)
	}
	return c, store, dir
}

func cacheFile(t *testing.T, c *blob.Cache, key string, want []byte) func() {
	t.Helper()
	p, release, err := c.File(context.Background(), key)
	if err != nil {
		t.Fatalf("File(%s): %v", key, err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("File(%s) holds %d bytes (%v), want %d", key, len(got), err, len(want))
	}
	return release
}

func filesIn(t *testing.T, dir string) int {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestCacheReusesCopies(t *testing.T) {
	c, store, dir := newCache(t, 1<<20)
	ctx := context.Background()
	a := bytes.Repeat([]byte("a"), 1000)
	blob.PutBytes(ctx, store, "uploads/a", a)
	cacheFile(t, c, "uploads/a", a)()
	cacheFile(t, c, "uploads/a", a)()
	if n := store.gets.Load(); n != 1 {
		t.Fatalf("%d downloads for two uses, want 1", n)
	}
	// An object that changed (another size) is fetched again; the old copy goes.
	b := bytes.Repeat([]byte("b"), 2000)
	blob.PutBytes(ctx, store, "uploads/a", b)
	cacheFile(t, c, "uploads/a", b)()
	if n := store.gets.Load(); n != 2 || filesIn(t, dir) != 1 || c.Size() != 2000 {
		t.Fatalf("after a change: %d downloads, %d files, %d bytes", n, filesIn(t, dir), c.Size())
	}
	// A missing object is ErrNotFound, with nothing cached.
	if _, _, err := c.File(ctx, "uploads/none"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
}

// Unused copies go least recently used first once the budget is exceeded;
// a copy in use stays whatever the budget.
func TestCacheEvicts(t *testing.T) {
	c, store, dir := newCache(t, 2500)
	ctx := context.Background()
	obj := map[string][]byte{}
	for _, k := range []string{"a", "b", "c"} {
		obj[k] = bytes.Repeat([]byte(k), 1000)
		blob.PutBytes(ctx, store, k, obj[k])
	}
	cacheFile(t, c, "a", obj["a"])()
	cacheFile(t, c, "b", obj["b"])()
	cacheFile(t, c, "a", obj["a"])() // b is now the least recently used
	holdC := cacheFile(t, c, "c", obj["c"])
	if c.Size() != 2000 || filesIn(t, dir) != 2 {
		t.Fatalf("%d bytes in %d files, want a and c", c.Size(), filesIn(t, dir))
	}
	before := store.gets.Load()
	cacheFile(t, c, "a", obj["a"])()
	if store.gets.Load() != before {
		t.Fatal("a was evicted instead of b")
	}
	// Over budget with everything in use: nothing in use is removed.
	holdB := cacheFile(t, c, "b", obj["b"])
	holdA := cacheFile(t, c, "a", obj["a"])
	if filesIn(t, dir) != 3 {
		t.Fatalf("%d files while all three are in use", filesIn(t, dir))
	}
	holdA()
	holdB()
	holdC()
	holdC() // a second release is a no-op
	if c.Size() > 2500 || filesIn(t, dir) != 2 {
		t.Fatalf("after release: %d bytes in %d files", c.Size(), filesIn(t, dir))
	}
}

// Callers asking for one key at once share one download; a failed download
// leaves no file and the next call tries again.
func TestCacheSharesDownloads(t *testing.T) {
	c, store, dir := newCache(t, 1<<20)
	ctx := context.Background()
	body := bytes.Repeat([]byte("x"), 5000)
	blob.PutBytes(ctx, store, "v", body)
	store.gate = make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			p, release, err := c.File(ctx, "v")
			if err == nil {
				if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
					err = errors.New("wrong content")
				}
				release()
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	close(store.gate)
	wg.Wait()
	if n := store.gets.Load(); n != 1 {
		t.Fatalf("%d downloads for 4 concurrent uses, want 1", n)
	}

	store.gate = nil
	blob.PutBytes(ctx, store, "w", body)
	store.fail = errors.New("connection reset")
	if _, _, err := c.File(ctx, "w"); err == nil {
		t.Fatal("a failed download gave a file")
	}
	if filesIn(t, dir) != 1 {
		t.Fatalf("%d files after a failed download, want only v's", filesIn(t, dir))
	}
	store.fail = nil
	cacheFile(t, c, "w", body)()
}

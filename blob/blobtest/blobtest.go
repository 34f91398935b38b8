// Package blobtest is the contract every blob.Store must pass, like the
// conformance suites of database/sql drivers. A backend's test calls Run with
// a constructor of fresh, empty stores.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/lessonflow/lessonflow/blob"
)

// Run runs the contract suite. newStore must return a new, empty store each
// time it is called and arrange its own cleanup.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s blob.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Empty", testEmpty},
		{"Large", testLarge},
		{"Overwrite", testOverwrite},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"DeletePrefix", testDeletePrefix},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"ValidEdgeKeys", testValidEdgeKeys},
		{"FailingReader", testFailingReader},
		{"Cancelled", testCancelled},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutDelete", testConcurrentPutDelete},
		{"Bytes", testBytes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s blob.Store, key string, b []byte) blob.Info {
	t.Helper()
	info, err := s.Put(context.Background(), key, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	want := blob.Info{Key: key, Size: int64(len(b)), SHA256: sum(b)}
	if info != want {
		t.Fatalf("Put(%q) = %+v, want %+v", key, info, want)
	}
	return info
}

func get(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", key, err)
	}
	return b
}

func wantContent(t *testing.T, s blob.Store, key string, want []byte) {
	t.Helper()
	if got := get(t, s, key); !bytes.Equal(got, want) {
		t.Fatalf("Get(%q): %d bytes (sha %s), want %d bytes (sha %s)", key, len(got), sum(got)[:12], len(want), sum(want)[:12])
	}
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Key != key || info.Size != int64(len(want)) {
		t.Fatalf("Stat(%q) = %+v, want key %q size %d", key, info, key, len(want))
	}
	if info.SHA256 != "" && info.SHA256 != sum(want) {
		t.Fatalf("Stat(%q).SHA256 = %s, want %s or empty", key, info.SHA256, sum(want))
	}
}

func wantMissing(t *testing.T, s blob.Store, key string) {
	t.Helper()
	ctx := context.Background()
	if rc, err := s.Get(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("Get(%q) error = %v, want ErrNotFound", key, err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Stat(%q) error = %v, want ErrNotFound", key, err)
	}
}

func keys(t *testing.T, s blob.Store, prefix string) []string {
	t.Helper()
	infos, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	out := []string{}
	for _, in := range infos {
		out = append(out, in.Key)
	}
	return out
}

func wantKeys(t *testing.T, s blob.Store, prefix string, want ...string) {
	t.Helper()
	got := keys(t, s, prefix)
	if want == nil {
		want = []string{}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
	}
}

func testRoundTrip(t *testing.T, s blob.Store) {
	b := []byte("hello, lesson")
	put(t, s, "uploads/v1/source.mp4", b)
	wantContent(t, s, "uploads/v1/source.mp4", b)
}

func testEmpty(t *testing.T, s blob.Store) {
	put(t, s, "empty", nil)
	wantContent(t, s, "empty", []byte{})
}

func testLarge(t *testing.T, s blob.Store) {
	b := randBytes(5<<20+123, 1)
	// iotest-style one-byte-at-a-time reads would be slow; a reader that
	// returns short, odd-sized chunks still exercises the streaming path.
	info, err := s.Put(context.Background(), "big/blob.bin", &chunky{r: bytes.NewReader(b), n: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(b)) || info.SHA256 != sum(b) {
		t.Fatalf("Put = %+v, want size %d sha %s", info, len(b), sum(b))
	}
	wantContent(t, s, "big/blob.bin", b)
}

type chunky struct {
	r io.Reader
	n int
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func testOverwrite(t *testing.T, s blob.Store) {
	put(t, s, "k", []byte("first version, longer"))
	put(t, s, "k", []byte("second"))
	wantContent(t, s, "k", []byte("second"))
	wantKeys(t, s, "", "k")
}

func testNotFound(t *testing.T, s blob.Store) {
	wantMissing(t, s, "nope")
	wantMissing(t, s, "no/such/dir/file")
	put(t, s, "file", []byte("x"))
	// A key below an object, and a "directory" of objects, are not objects.
	wantMissing(t, s, "file/below")
	put(t, s, "dir/child", []byte("x"))
	wantMissing(t, s, "dir")
	wantKeys(t, s, "nope")
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	put(t, s, "a/b/c", []byte("x"))
	put(t, s, "a/b/d", []byte("y"))
	if err := s.Delete(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "a/b/c")
	wantContent(t, s, "a/b/d", []byte("y"))
	for _, k := range []string{"a/b/c", "never/existed", "a/b/d/below"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q) of a missing key: %v", k, err)
		}
	}
	if err := s.Delete(ctx, "a/b/d"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, s, "")
	// Deleting the last object under a prefix must not stop new Puts there.
	put(t, s, "a/b/e", []byte("z"))
	wantContent(t, s, "a/b/e", []byte("z"))
}

func testDeletePrefix(t *testing.T, s blob.Store) {
	ctx := context.Background()
	for _, k := range []string{"v/1/a", "v/1/b", "v/1/sub/c", "v/10/c", "v/2/a", "w"} {
		put(t, s, k, []byte(k))
	}
	if err := s.DeletePrefix(ctx, "v/1/"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, s, "", "v/10/c", "v/2/a", "w")
	wantMissing(t, s, "v/1/a")
	// A prefix is a string prefix, not a directory.
	put(t, s, "v/1/a", []byte("again"))
	if err := s.DeletePrefix(ctx, "v/1"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, s, "", "v/2/a", "w")
	for _, p := range []string{"v/1/", "nothing/here/", "zz"} {
		if err := s.DeletePrefix(ctx, p); err != nil {
			t.Fatalf("DeletePrefix(%q) matching nothing: %v", p, err)
		}
	}
	// A prefix naming an object as a directory deletes nothing.
	if err := s.DeletePrefix(ctx, "w/"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, s, "", "v/2/a", "w")
	// The whole key is a prefix of itself.
	if err := s.DeletePrefix(ctx, "w"); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, s, "", "v/2/a")
	if err := s.DeletePrefix(ctx, ""); err == nil {
		t.Fatal("DeletePrefix(\"\") succeeded, want an error")
	}
	wantKeys(t, s, "", "v/2/a")
	put(t, s, "v/1/new", []byte("n"))
	wantContent(t, s, "v/1/new", []byte("n"))
}

func testList(t *testing.T, s blob.Store) {
	wantKeys(t, s, "")
	// '-' < '.' < '/' < '0' bytewise: sorting must be by key, not by walk order.
	all := []string{"a-b", "a.b", "a/b", "a/c/d", "a0", "b/x"}
	for i := len(all) - 1; i >= 0; i-- {
		put(t, s, all[i], []byte(all[i]))
	}
	wantKeys(t, s, "", all...)
	wantKeys(t, s, "a", "a-b", "a.b", "a/b", "a/c/d", "a0")
	wantKeys(t, s, "a/", "a/b", "a/c/d")
	wantKeys(t, s, "a/c", "a/c/d")
	wantKeys(t, s, "a/c/d", "a/c/d")
	wantKeys(t, s, "a/c/d/")
	wantKeys(t, s, "b/x/")
	wantKeys(t, s, "c")
	wantKeys(t, s, "zz/top/")
	infos, err := s.List(context.Background(), "a/c/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Size != int64(len("a/c/d")) {
		t.Fatalf("List(a/c/) = %+v", infos)
	}
	if h := infos[0].SHA256; h != "" && h != sum([]byte("a/c/d")) {
		t.Fatalf("List SHA256 = %s, want %s or empty", h, sum([]byte("a/c/d")))
	}
}

// InvalidKeys are rejected by ValidKey and every method.
var InvalidKeys = []string{
	"", "/", "/abs", "abs/", "a//b", "../x", "x/..", "a/../b", "..", ".", "./a", "a/./b",
	"a b", "a\\b", "a\x00b", "ä", "a:b", "a?b", "%2e%2e",
	strings.Repeat("s", blob.MaxSegmentLen+1),
	strings.Repeat("k", blob.MaxSegmentLen) + "/" + strings.Repeat("k", blob.MaxSegmentLen) + "/k",
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := context.Background()
	for _, k := range InvalidKeys {
		if err := blob.ValidKey(k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("ValidKey(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Put(ctx, k, strings.NewReader("x")); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
		if rc, err := s.Get(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
	for _, p := range []string{"/", "/abs", "a//", "../", "../x", "a/../", "./", "a b", "ä", strings.Repeat("p", blob.MaxKeyLen+1), strings.Repeat("p", blob.MaxSegmentLen+1)} {
		if _, err := s.List(ctx, p); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("List(%q) = %v, want ErrInvalidKey", p, err)
		}
		if err := s.DeletePrefix(ctx, p); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("DeletePrefix(%q) = %v, want ErrInvalidKey", p, err)
		}
	}
	wantKeys(t, s, "")
}

func testValidEdgeKeys(t *testing.T, s blob.Store) {
	long := strings.Repeat("k", blob.MaxSegmentLen) + "/" + strings.Repeat("k", blob.MaxKeyLen-blob.MaxSegmentLen-3) + "/k"
	if len(long) != blob.MaxKeyLen {
		t.Fatalf("test bug: long key is %d bytes", len(long))
	}
	for _, k := range []string{long, "a/.hidden", "..a/b..", "A-Z_0.9/x", "-"} {
		if err := blob.ValidKey(k); err != nil {
			t.Fatalf("ValidKey(%q) = %v, want nil", k, err)
		}
		put(t, s, k, []byte(k))
		wantContent(t, s, k, []byte(k))
	}
	for _, p := range []string{"", "a", "a/", "a/.", "a/..", "a/.h"} {
		if err := blob.ValidPrefix(p); err != nil {
			t.Fatalf("ValidPrefix(%q) = %v, want nil", p, err)
		}
	}
	wantKeys(t, s, "a/..")
	wantKeys(t, s, "a/.", "a/.hidden")
}

var errBoom = errors.New("boom: client went away")

// failingReader yields n bytes and then fails.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errBoom
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	for i := range p {
		p[i] = 'x'
	}
	f.n -= len(p)
	return len(p), nil
}

func testFailingReader(t *testing.T, s blob.Store) {
	ctx := context.Background()
	_, err := s.Put(ctx, "up/v1/source", &failingReader{n: 1 << 20})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Put with a failing reader = %v, want it to wrap the reader's error", err)
	}
	wantMissing(t, s, "up/v1/source")
	wantKeys(t, s, "")
	// A failed overwrite keeps the previous object.
	put(t, s, "up/v1/source", []byte("good"))
	if _, err := s.Put(ctx, "up/v1/source", &failingReader{n: 3 << 20}); !errors.Is(err, errBoom) {
		t.Fatalf("Put with a failing reader = %v", err)
	}
	wantContent(t, s, "up/v1/source", []byte("good"))
	wantKeys(t, s, "", "up/v1/source")
}

// cancellingReader cancels its context after the first read.
type cancellingReader struct {
	cancel context.CancelFunc
	reads  int
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	c.reads++
	if c.reads == 2 {
		c.cancel()
	}
	if c.reads > 1000 {
		return 0, io.EOF // the store ignored cancellation; let the test report it
	}
	n := min(len(p), 4096)
	for i := range p[:n] {
		p[i] = 'y'
	}
	return n, nil
}

func testCancelled(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "c/pre", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context = %v, want context.Canceled", err)
	}
	wantMissing(t, s, "c/pre")

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.Put(ctx, "c/mid", &cancellingReader{cancel: cancel}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put cancelled mid-stream = %v, want context.Canceled", err)
	}
	wantMissing(t, s, "c/mid")
	wantKeys(t, s, "")
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := randBytes(64<<10+i, uint64(i))
			key := fmt.Sprintf("frames/v1/%04d.jpg", i)
			info, err := s.Put(context.Background(), key, bytes.NewReader(b))
			if err == nil && info.SHA256 != sum(b) {
				err = fmt.Errorf("Put(%q) sha %s, want %s", key, info.SHA256, sum(b))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		wantContent(t, s, fmt.Sprintf("frames/v1/%04d.jpg", i), randBytes(64<<10+i, uint64(i)))
	}
	if got := keys(t, s, "frames/v1/"); len(got) != n {
		t.Fatalf("List: %d keys, want %d", len(got), n)
	}
}

// testConcurrentPutDelete races Puts against Deletes that empty the same
// "directory" over and over: no Put may fail because its directory vanished
// under it.
func testConcurrentPutDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	const workers, rounds = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := fmt.Sprintf("race/d/w%d-%d", w, i)
				if _, err := s.Put(ctx, k, strings.NewReader("t")); err != nil {
					errs <- err
					return
				}
				if err := s.Delete(ctx, k); err != nil {
					errs <- err
					return
				}
			}
			_, err := s.Put(ctx, fmt.Sprintf("race/d/keep%d", w), strings.NewReader("k"))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := keys(t, s, "race/"); len(got) != workers {
		t.Fatalf("List: %d keys, want %d: %q", len(got), workers, got)
	}
}

func testBytes(t *testing.T, s blob.Store) {
	ctx := context.Background()
	b := []byte("0123456789")
	info, err := blob.PutBytes(ctx, s, "scores/v1.json", b)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 10 || info.SHA256 != sum(b) {
		t.Fatalf("PutBytes = %+v", info)
	}
	got, err := blob.GetBytes(ctx, s, "scores/v1.json", 10)
	if err != nil || !bytes.Equal(got, b) {
		t.Fatalf("GetBytes(max 10) = %q, %v", got, err)
	}
	if _, err := blob.GetBytes(ctx, s, "scores/v1.json", 9); !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("GetBytes(max 9) = %v, want ErrTooLarge", err)
	}
	if _, err := blob.GetBytes(ctx, s, "scores/none.json", 9); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("GetBytes(missing) = %v, want ErrNotFound", err)
	}
}

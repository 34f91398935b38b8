package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Cache keeps local copies of a remote store's objects for tools that need
// a file (ffmpeg reads the upload in several pipeline stages; from S3 each
// would download it again). Copies are checked against the store's size on
// every use, live until released, and are then evicted least recently used
// first once the cache holds more than its byte budget. A worker's cache
// starts empty: NewCache clears the directory.
type Cache struct {
	store Store
	dir   string
	max   int64

	mu      sync.Mutex
	entries map[string]*cacheEntry
	size    int64 // bytes of the complete entries
	clock   int64 // orders uses for eviction
}

type cacheEntry struct {
	path    string
	size    int64
	refs    int
	used    int64
	ready   chan struct{} // closed when the download ends
	err     error         // the download's failure, once ready
	evicted bool
}

// NewCache caches store's objects in dir (emptied first), holding about
// maxBytes of unreferenced copies.
func NewCache(store Store, dir string, maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("blob cache: budget %d bytes", maxBytes)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("blob cache %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("blob cache %s: %w", dir, err)
	}
	return &Cache{store: store, dir: dir, max: maxBytes, entries: map[string]*cacheEntry{}}, nil
}

// File returns a local file holding key's object. The file is read-only and
// stays until release is called (once); callers that ask for the same key
// at once share one download.
func (c *Cache) File(ctx context.Context, key string) (path string, release func(), err error) {
	info, err := c.store.Stat(ctx, key)
	if err != nil {
		return "", nil, err
	}
	for {
		c.mu.Lock()
		e := c.entries[key]
		if e != nil && isReady(e) && (e.err != nil || e.size != info.Size) {
			c.dropLocked(key, e) // failed, or the object changed: fetch again
			e = nil
		}
		if e == nil {
			c.clock++
			// Unique per copy: a dropped copy's readers may still hold its
			// file while the next copy of the key downloads.
			e = &cacheEntry{path: filepath.Join(c.dir, cacheName(key)+"-"+strconv.FormatInt(c.clock, 10)),
				ready: make(chan struct{}), refs: 1, used: c.clock}
			c.entries[key] = e
			c.mu.Unlock()
			e.err = c.download(ctx, key, e.path)
			c.mu.Lock()
			if e.err == nil {
				e.size = fileSize(e.path)
				c.size += e.size
			}
			close(e.ready)
			c.mu.Unlock()
			if e.err != nil {
				c.release(key, e)
				return "", nil, e.err
			}
			c.evict()
			return e.path, c.releaser(key, e), nil
		}
		e.refs++
		c.clock++
		e.used = c.clock
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.release(key, e)
			return "", nil, ctx.Err()
		}
		if e.err == nil && e.size == info.Size {
			return e.path, c.releaser(key, e), nil
		}
		c.release(key, e) // the shared download failed: try our own
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
	}
}

func isReady(e *cacheEntry) bool {
	select {
	case <-e.ready:
		return true
	default:
		return false
	}
}

// cacheName is a file name for key that no key can make escape dir.
func cacheName(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// download copies key's object to path through a temporary file, so a
// failed or cancelled download leaves no file behind.
func (c *Cache) download(ctx context.Context, key, path string) error {
	rc, err := c.store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.CreateTemp(c.dir, "part-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cache %s: %w", key, err)
	}
	return nil
}

func (c *Cache) releaser(key string, e *cacheEntry) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.release(key, e)
			c.evict()
		})
	}
}

func (c *Cache) release(key string, e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.refs == 0 && (e.evicted || e.err != nil) {
		c.dropLocked(key, e)
	}
}

// dropLocked forgets e and removes its file once nobody holds it.
func (c *Cache) dropLocked(key string, e *cacheEntry) {
	if c.entries[key] == e {
		delete(c.entries, key)
		if !e.evicted && e.err == nil {
			c.size -= e.size
		}
		e.evicted = true
	}
	if e.refs == 0 {
		os.Remove(e.path)
	}
}

// evict removes unreferenced copies, least recently used first, while the
// cache is over its budget.
func (c *Cache) evict() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.size > c.max {
		var (
			victim string
			oldest *cacheEntry
		)
		for k, e := range c.entries {
			if e.refs == 0 && isReady(e) && e.err == nil && (oldest == nil || e.used < oldest.used) {
				victim, oldest = k, e
			}
		}
		if oldest == nil {
			return // everything left is in use
		}
		c.dropLocked(victim, oldest)
	}
}

// Size is how many bytes the cached copies take.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

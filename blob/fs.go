package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// FS stores objects as files under a directory: object <key> lives at
// <dir>/objects/<key>, and Puts stream into <dir>/tmp first, so a temporary
// file can never show up as (or collide with) an object. Both sit on the same
// filesystem, which makes the final rename atomic. Several processes may
// share one directory.
//
// Limitation: a key cannot be both an object and a directory of other
// objects ("a" and "a/b"); the second Put fails.
type FS struct {
	objects string
	tmp     string
}

var (
	_ Store       = (*FS)(nil)
	_ LocalPather = (*FS)(nil)
)

// staleTemp is how long an untouched temp file must sit before NewFS deletes
// it. Temp files of a live Put are written continuously, so only ones left by
// a killed process get this old.
const staleTemp = 24 * time.Hour

// NewFS opens (creating if needed) a store rooted at dir and removes temp
// files abandoned by killed processes.
func NewFS(dir string) (*FS, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob dir %s: %w", dir, err)
	}
	s := &FS{objects: filepath.Join(abs, "objects"), tmp: filepath.Join(abs, "tmp")}
	for _, d := range []string{s.objects, s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("blob dir: %w", err)
		}
	}
	s.removeStaleTemps(time.Now().Add(-staleTemp))
	return s, nil
}

func (s *FS) removeStaleTemps(before time.Time) {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return // best effort: a leftover temp file wastes space, nothing more
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(before) {
			_ = os.Remove(filepath.Join(s.tmp, e.Name()))
		}
	}
}

func (s *FS) path(key string) string {
	return filepath.Join(s.objects, filepath.FromSlash(key))
}

// Put implements Store: it streams into a temp file while hashing, fsyncs it,
// renames it into place and fsyncs the directory. A returned Put survives a
// kill -9 and, but for parent directories it had to create, a power loss; an
// interrupted one leaves nothing visible.
func (s *FS) Put(ctx context.Context, key string, r io.Reader) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(s.tmp, "put-*")
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.Remove(tmp)
		}
	}()

	h := sha256.New()
	n, err := copyCtx(ctx, f, h, r)
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	// Last chance to honour a cancellation: after the rename the object exists.
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	dst := s.path(key)
	if err := renameInto(tmp, dst); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	committed = true
	// The object is in place; failing to fsync the directory only weakens
	// durability against power loss, so report it but the rename stands.
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return Info{}, fmt.Errorf("put %s: sync dir: %w", key, err)
	}
	return Info{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// renameInto moves tmp to dst, creating dst's parents. A concurrent Delete may
// prune a parent directory during MkdirAll (which then fails with ENOENT, or
// EEXIST when the directory vanished between its mkdir and its check) or
// before Rename (ENOENT), so retry; each retry means another caller made
// progress. A file in the way of a parent gives ENOTDIR, which is final.
func renameInto(tmp, dst string) error {
	var err error
	for range 100 {
		err = os.MkdirAll(filepath.Dir(dst), 0o755)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
				continue
			}
			break
		}
		err = os.Rename(tmp, dst)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("key is below an existing object: %w", err)
	}
	if errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
		return fmt.Errorf("key is a directory of other objects: %w", err)
	}
	return err
}

// copyCtx copies r to f and h, checking ctx between reads. A Read that blocks
// is not interrupted; cancellation takes effect when it returns.
func copyCtx(ctx context.Context, f *os.File, h hash.Hash, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			if _, err := f.Write(buf[:m]); err != nil {
				return n, err
			}
			h.Write(buf[:m])
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("read: %w", rerr)
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Get implements Store.
func (s *FS) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, notFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// Stat implements Store; SHA256 is always empty.
func (s *FS) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidKey(key); err != nil {
		return Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	return Info{Key: key, Size: fi.Size()}, nil
}

// LocalPath implements LocalPather.
func (s *FS) LocalPath(key string) (string, error) {
	if err := ValidKey(key); err != nil {
		return "", err
	}
	p := s.path(key)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("local path %s: %w", key, notFound(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("local path %s: %w", key, ErrNotFound)
	}
	return p, nil
}

// Delete implements Store.
func (s *FS) Delete(ctx context.Context, key string) error {
	if err := ValidKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	p := s.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil // a directory of other objects, not an object
	}
	if err := os.Remove(p); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	s.pruneDirs(filepath.Dir(p))
	return nil
}

// pruneDirs removes dir and its parents up to the objects root while they are
// empty (or already gone), so deleted videos leave no directory litter.
// Removing a non-empty directory fails, which stops the climb; a Put that
// loses a race with this retries (see renameInto).
func (s *FS) pruneDirs(dir string) {
	for dir != s.objects && strings.HasPrefix(dir, s.objects+string(filepath.Separator)) {
		// Rmdir, unlike os.Remove, never deletes a file: dir may be an object
		// when a prefix named one as if it were a directory.
		if err := syscall.Rmdir(dir); err != nil && err != syscall.ENOENT {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// DeletePrefix implements Store.
func (s *FS) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("delete prefix: %w: empty prefix", ErrInvalidKey)
	}
	dir, err := splitPrefix(prefix)
	if err != nil {
		return err
	}
	root := s.objects
	if dir != "" {
		root = s.path(dir)
	}
	err = s.walk(ctx, root, prefix, func(key, p string, d fs.DirEntry) error {
		if d.IsDir() {
			// Whole directory under the prefix: drop it in one go.
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			return fs.SkipDir
		}
		if err := os.Remove(p); err != nil && !isNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete prefix %s: %w", prefix, err)
	}
	s.pruneDirs(root)
	return nil
}

// List implements Store; SHA256 is always empty.
func (s *FS) List(ctx context.Context, prefix string) ([]Info, error) {
	dir, err := splitPrefix(prefix)
	if err != nil {
		return nil, err
	}
	root := s.objects
	if dir != "" {
		root = s.path(dir)
	}
	var out []Info
	err = s.walk(ctx, root, prefix, func(key, p string, d fs.DirEntry) error {
		if d.IsDir() {
			return nil // descend
		}
		fi, err := d.Info()
		if err != nil {
			if isNotFound(err) {
				return nil // deleted while listing
			}
			return err
		}
		out = append(out, Info{Key: key, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// walk calls fn for every regular file whose key has prefix, and for every
// directory whose keys all have prefix (fn may return fs.SkipDir). It skips
// directories that cannot hold a match and tolerates concurrent deletion.
func (s *FS) walk(ctx context.Context, root, prefix string, fn func(key, path string, d fs.DirEntry) error) error {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == s.objects {
			return nil
		}
		rel, err := filepath.Rel(s.objects, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			switch {
			case strings.HasPrefix(key+"/", prefix):
				return fn(key, p, d)
			case strings.HasPrefix(prefix, key+"/"):
				return nil // the prefix continues below: descend
			default:
				return fs.SkipDir
			}
		case d.Type().IsRegular() && strings.HasPrefix(key, prefix):
			return fn(key, p, d)
		}
		return nil
	})
	return err
}

// notFound maps "no such file" (including a file where a directory was
// expected, as in key "a/b" when "a" is an object) to ErrNotFound.
func notFound(err error) error {
	if isNotFound(err) {
		return ErrNotFound
	}
	return err
}

func isNotFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Package blob owns the bytes: uploads, sampled frames, per-frame scores and
// renditions, addressed by key.
//
// Keys are slash-separated paths (see ValidKey). Prefixes passed to List and
// DeletePrefix are plain string prefixes, as in S3: "v/1" matches "v/1/a" and
// "v/10/b"; end a prefix with "/" to mean one "directory".
package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

var (
	// ErrNotFound is returned (wrapped) when a key holds no object.
	ErrNotFound = errors.New("blob: not found")
	// ErrInvalidKey is returned (wrapped) for a key or prefix that ValidKey rejects.
	ErrInvalidKey = errors.New("blob: invalid key")
	// ErrTooLarge is returned (wrapped) by GetBytes when an object exceeds its limit.
	ErrTooLarge = errors.New("blob: object too large")
)

const (
	// MaxKeyLen bounds keys in bytes; it fits S3's 1024 with room for a prefix.
	MaxKeyLen = 512
	// MaxSegmentLen bounds each '/'-separated segment: NAME_MAX of Linux
	// filesystems, so every valid key can be a file name for FS.
	MaxSegmentLen = 255
)

// Info describes a stored object.
type Info struct {
	Key  string
	Size int64
	// SHA256 is the lowercase hex digest of the content. Put always sets it;
	// Stat and List leave it empty when the backend does not record it (FS
	// does not, to avoid rehashing whole videos on every Stat).
	SHA256 string
}

// Store holds objects by key. Implementations must be safe for concurrent use
// by many goroutines and, where the backend is shared (a directory, a
// bucket), by many processes.
type Store interface {
	// Put stores everything r yields under key, replacing any previous
	// object. It is atomic: readers see the previous object (or nothing) until
	// Put returns successfully, and a failed or cancelled Put (including a
	// process killed mid-way) leaves the previous state untouched. Put does
	// not bound the size: wrap r (e.g. io.LimitReader) to do so.
	Put(ctx context.Context, key string, r io.Reader) (Info, error)
	// Get opens the object for reading; the caller closes it.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object without reading it.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// DeletePrefix removes every object whose key starts with prefix. The
	// empty prefix is rejected so that a bug cannot wipe the store.
	DeletePrefix(ctx context.Context, prefix string) error
	// List describes every object whose key starts with prefix ("" for all),
	// sorted by key (bytewise).
	List(ctx context.Context, prefix string) ([]Info, error)
}

// LocalPather is implemented by stores whose objects are plain local files,
// so tools like ffmpeg can read them in place. With other stores, callers
// copy the object to a temporary file first.
type LocalPather interface {
	// LocalPath returns the file holding key's object, or ErrNotFound. The
	// file must be treated as read-only; a concurrent Put replaces it with a
	// new file (already open descriptors keep reading the old content).
	LocalPath(key string) (string, error)
}

// ValidKey reports whether key may name an object: 1 to MaxKeyLen bytes,
// segments of 1 to MaxSegmentLen bytes of [A-Za-z0-9._-] separated by single
// '/', no leading or trailing '/', and no "." or ".." segment. Such a key can never escape a directory
// it is joined to.
func ValidKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, max %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	for _, seg := range strings.Split(key, "/") {
		if err := validSegment(seg); err != nil {
			return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, err)
		}
	}
	return nil
}

func validSegment(seg string) error {
	switch seg {
	case "":
		return errors.New("empty segment")
	case ".", "..":
		return fmt.Errorf("%q segment", seg)
	}
	if len(seg) > MaxSegmentLen {
		return fmt.Errorf("segment of %d bytes, max %d", len(seg), MaxSegmentLen)
	}
	for i := 0; i < len(seg); i++ {
		if !validByte(seg[i]) {
			return fmt.Errorf("byte %q not allowed", seg[i])
		}
	}
	return nil
}

func validByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// ValidPrefix reports whether prefix may be passed to List or DeletePrefix:
// "" or a valid key, optionally followed by '/' and the start of a segment.
func ValidPrefix(prefix string) error {
	_, err := splitPrefix(prefix)
	return err
}

// splitPrefix validates prefix and splits it at its last '/': dir holds the
// complete segments (each valid as in ValidKey, "" when there are none) and
// may be used as a path; the rest is a partial segment that must only be used
// as a string filter.
func splitPrefix(prefix string) (dir string, err error) {
	if prefix == "" {
		return "", nil
	}
	if len(prefix) > MaxKeyLen {
		return "", fmt.Errorf("%w: prefix of %d bytes, max %d", ErrInvalidKey, len(prefix), MaxKeyLen)
	}
	i := strings.LastIndexByte(prefix, '/')
	partial := prefix[i+1:]
	if len(partial) > MaxSegmentLen {
		return "", fmt.Errorf("%w: prefix %q: segment of %d bytes, max %d", ErrInvalidKey, prefix, len(partial), MaxSegmentLen)
	}
	for j := 0; j < len(partial); j++ {
		if !validByte(partial[j]) {
			return "", fmt.Errorf("%w: prefix %q: byte %q not allowed", ErrInvalidKey, prefix, partial[j])
		}
	}
	if i < 0 {
		return "", nil
	}
	dir = prefix[:i]
	if err := ValidKey(dir); err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return dir, nil
}

// PutBytes stores b under key.
func PutBytes(ctx context.Context, s Store, key string, b []byte) (Info, error) {
	return s.Put(ctx, key, bytes.NewReader(b))
}

// GetBytes reads a whole object into memory, failing with ErrTooLarge rather
// than reading more than max bytes.
func GetBytes(ctx context.Context, s Store, key string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, fmt.Errorf("get %s: negative max %d", key, max)
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("get %s: %w: more than %d bytes", key, ErrTooLarge, max)
	}
	return b, nil
}

package catalog

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A cursor is the sort key of the last video of a page: created_at (Unix
// microseconds) and id, base64url-encoded so clients treat it as opaque.
type cursor struct {
	createdAt int64
	id        string
}

func encodeCursor(v Video) string {
	return sealCursor(strconv.FormatInt(v.CreatedAt.UnixMicro(), 10) + "|" + v.ID)
}

func decodeCursor(s string) (cursor, error) {
	b, err := openCursor(s)
	if err != nil {
		return cursor{}, err
	}
	ts, id, ok := strings.Cut(b, "|")
	if !ok || id == "" {
		return cursor{}, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return cursor{}, fmt.Errorf("%w: malformed time", ErrBadCursor)
	}
	return cursor{createdAt: us, id: id}, nil
}

// sealCursor makes a page's sort key opaque to clients; every list's
// cursor is one.
func sealCursor(key string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// openCursor returns the sort key sealCursor sealed, or ErrBadCursor.
func openCursor(s string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	return string(b), nil
}

// Times are kept to the microsecond, in UTC, by every backend.
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return normTime(time.Now())
	}
	return normTime(t)
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

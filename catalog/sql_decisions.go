package catalog

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// DecisionQuery selects a page of one video's decision log, oldest first.
type DecisionQuery struct {
	VideoID string
	Limit   int    // clamped like ListQuery.Limit
	Cursor  string // "" for the first page
}

// DecisionPager pages through a video's decision log: a long-lived lesson
// collects model, re-check and human decisions without bound.
type DecisionPager interface {
	// DecisionsPage returns a page and the next page's cursor ("" after the
	// last). ErrNotFound for an unknown video, ErrBadCursor for a cursor it
	// did not issue.
	DecisionsPage(ctx context.Context, q DecisionQuery) ([]Decision, string, error)
}

// Decision cursors are the last seq of a page, opaque to clients.
const decisionCursorPrefix = "dc|"

// DecisionsPage implements DecisionPager: keyset pagination on seq, which
// only grows, so pages stay stable while decisions are appended.
func (s *sqlStore) DecisionsPage(ctx context.Context, q DecisionQuery) ([]Decision, string, error) {
	var after int64
	if q.Cursor != "" {
		key, err := openCursor(q.Cursor)
		if err != nil {
			return nil, "", err
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(key, decisionCursorPrefix), 10, 64)
		if !strings.HasPrefix(key, decisionCursorPrefix) || err != nil || n < 0 {
			return nil, "", fmt.Errorf("%w: not a decision cursor", ErrBadCursor)
		}
		after = n
	}
	limit := clampLimit(q.Limit)
	var out []Decision
	err := s.read(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, q.VideoID); err != nil {
			return err
		}
		var err error
		out, err = queryAll(ctx, tx, scanDecision, `SELECT `+decisionCols+` FROM decisions
			WHERE video_id = ? AND seq > ? ORDER BY seq LIMIT ?`, q.VideoID, after, limit+1)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("decisions of %s: %w", q.VideoID, err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = sealCursor(decisionCursorPrefix + strconv.FormatInt(out[len(out)-1].Seq, 10))
	}
	if out == nil {
		out = []Decision{}
	}
	return out, next, nil
}

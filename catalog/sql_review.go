package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/review"
)

var _ ReviewStore = (*SQLite)(nil)

// SaveReviewItem implements ReviewStore.
func (s *sqlStore) SaveReviewItem(ctx context.Context, it review.Item) error {
	switch {
	case it.ID == "" || it.VideoID == "":
		return fmt.Errorf("save review item: %w: empty id or video id", ErrInvalid)
	case !it.Kind.Valid():
		return fmt.Errorf("save review item %s: %w: kind %q", it.ID, ErrInvalid, it.Kind)
	case !it.State.Valid():
		return fmt.Errorf("save review item %s: %w: state %q", it.ID, ErrInvalid, it.State)
	case it.Version <= 0:
		return fmt.Errorf("save review item %s: %w: version %d", it.ID, ErrInvalid, it.Version)
	}
	it.CreatedAt, it.UpdatedAt = nowOr(it.CreatedAt), nowOr(it.UpdatedAt)
	var lease sql.NullInt64
	if it.LeaseExpiresAt != nil {
		t := normTime(*it.LeaseExpiresAt)
		it.LeaseExpiresAt = &t
		lease = sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
	}
	it.Priority = 0 // computed when read
	b, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("save review item %s: %w", it.ID, err)
	}
	err = s.write(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, it.VideoID); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO review_items (id, video_id, kind, state, version, rank, base_priority,
			claimed_by, lease_expires_at, workflow_id, run_id, item, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET
				state = excluded.state, version = excluded.version, rank = excluded.rank,
				base_priority = excluded.base_priority, claimed_by = excluded.claimed_by,
				lease_expires_at = excluded.lease_expires_at, item = excluded.item, updated_at = excluded.updated_at
			WHERE excluded.version >= review_items.version`,
			it.ID, it.VideoID, it.Kind, it.State, it.Version, review.Rank(it.BasePriority, it.CreatedAt), it.BasePriority,
			it.ClaimedBy, lease, it.WorkflowID, it.RunID, string(b), it.CreatedAt.UnixMicro(), it.UpdatedAt.UnixMicro())
		return err
	})
	if err != nil {
		return fmt.Errorf("save review item %s: %w", it.ID, err)
	}
	return nil
}

func scanReviewItem(sc rowScanner, now time.Time) (review.Item, float64, error) {
	var (
		raw  string
		rank float64
	)
	if err := sc.Scan(&raw, &rank); err != nil {
		return review.Item{}, 0, err
	}
	var it review.Item
	if err := json.Unmarshal([]byte(raw), &it); err != nil {
		return review.Item{}, 0, fmt.Errorf("review item: %w", err)
	}
	if it.State == review.StateDecided && it.Decision != nil {
		// A decided item stops waiting.
		it.Priority = review.Priority(it.BasePriority, it.CreatedAt, it.Decision.DecidedAt)
	} else {
		it.Priority = review.PriorityFromRank(rank, now)
	}
	if it.Evidence.Segments == nil {
		it.Evidence.Segments = []review.Segment{}
	}
	if it.Opinions == nil {
		it.Opinions = []review.Decision{}
	}
	if it.Excluded == nil {
		it.Excluded = []string{}
	}
	return it, rank, nil
}

// rankedItems scans items as of now, appending each one's stored rank to
// ranks unless it is nil.
func rankedItems(now time.Time, ranks *[]float64) func(rowScanner) (review.Item, error) {
	return func(sc rowScanner) (review.Item, error) {
		it, rank, err := scanReviewItem(sc, now)
		if err == nil && ranks != nil {
			*ranks = append(*ranks, rank)
		}
		return it, err
	}
}

// GetReviewItem implements ReviewStore.
func (s *sqlStore) GetReviewItem(ctx context.Context, id string) (review.Item, error) {
	it, err := queryOne(ctx, s.reader(), rankedItems(time.Now(), nil), `SELECT item, rank FROM review_items WHERE id = ?`, id)
	if err != nil {
		return review.Item{}, fmt.Errorf("get review item %s: %w", id, err)
	}
	return it, nil
}

// A review cursor is the last item's rank (exact, as Go formats float64)
// and id.
func encodeReviewCursor(rank float64, id string) string {
	return sealCursor(strconv.FormatFloat(rank, 'g', -1, 64) + "|" + id)
}

func decodeReviewCursor(s string) (float64, string, error) {
	b, err := openCursor(s)
	if err != nil {
		return 0, "", err
	}
	r, id, ok := strings.Cut(b, "|")
	if !ok || id == "" {
		return 0, "", fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	rank, err := strconv.ParseFloat(r, 64)
	if err != nil || math.IsNaN(rank) || math.IsInf(rank, 0) {
		return 0, "", fmt.Errorf("%w: malformed rank", ErrBadCursor)
	}
	return rank, id, nil
}

// ListReviewItems implements ReviewStore.
func (s *sqlStore) ListReviewItems(ctx context.Context, q ReviewQuery) ([]review.Item, string, error) {
	limit := clampLimit(q.Limit)
	var where conditions
	if q.State != "" {
		if !q.State.Valid() {
			return nil, "", fmt.Errorf("list review items: %w: unknown state %q", ErrInvalid, q.State)
		}
		where.add("state = ?", q.State)
	}
	if q.VideoID != "" {
		where.add("video_id = ?", q.VideoID)
	}
	if q.Cursor != "" {
		rank, id, err := decodeReviewCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("list review items: %w", err)
		}
		where.add("(rank, id) < (?, ?)", rank, id)
	}
	var ranks []float64
	items, err := queryAll(ctx, s.reader(), rankedItems(time.Now(), &ranks),
		`SELECT item, rank FROM review_items`+where.clause()+` ORDER BY rank DESC, id DESC LIMIT ?`,
		append(where.args, limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("list review items: %w", err)
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = encodeReviewCursor(ranks[limit-1], items[limit-1].ID)
	}
	return items, next, nil
}

// UploaderHistory implements ReviewStore.
func (s *sqlStore) UploaderHistory(ctx context.Context, teacherID string) (blocked, total int, err error) {
	if teacherID == "" {
		return 0, 0, nil
	}
	err = s.reader().QueryRowContext(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0) AS BIGINT)
		FROM videos WHERE teacher_id = ?`,
		StateBlocked, teacherID).Scan(&total, &blocked)
	if err != nil {
		return 0, 0, fmt.Errorf("uploader history of %s: %w", teacherID, err)
	}
	return blocked, total, nil
}

// Audience implements ReviewStore: distinct viewers, kept by RecordEvents.
func (s *sqlStore) Audience(ctx context.Context, videoID string) (int, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT views FROM lesson_stats WHERE lesson_id = ?`, videoID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audience of %s: %w", videoID, err)
	}
	return n, nil
}

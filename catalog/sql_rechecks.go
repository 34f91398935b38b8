package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

var _ RecheckStore = (*SQLite)(nil)

const batchCols = `id, policy_version, policy_sha256, policy_key, model_id, states, requested_by, state, error, created_at, finished_at`

func scanBatch(sc rowScanner) (RecheckBatch, error) {
	var (
		b        RecheckBatch
		states   string
		created  int64
		finished sql.NullInt64
	)
	err := sc.Scan(&b.ID, &b.PolicyVersion, &b.PolicySHA256, &b.PolicyKey, &b.ModelID, &states, &b.RequestedBy,
		&b.State, &b.Error, &created, &finished)
	if err != nil {
		return RecheckBatch{}, err
	}
	if err := json.Unmarshal([]byte(states), &b.States); err != nil {
		return RecheckBatch{}, fmt.Errorf("recheck batch %s: states: %w", b.ID, err)
	}
	b.CreatedAt = time.UnixMicro(created).UTC()
	b.FinishedAt = microsPtr(finished)
	return b, nil
}

// CreateRecheckBatch implements RecheckStore.
func (s *sqlStore) CreateRecheckBatch(ctx context.Context, b RecheckBatch) (RecheckBatch, bool, error) {
	if b.ID == "" || b.PolicyVersion == "" || b.PolicyKey == "" {
		return RecheckBatch{}, false, fmt.Errorf("create recheck batch %q: %w: id, policy version and policy key are required", b.ID, ErrInvalid)
	}
	for _, st := range b.States {
		if !st.Valid() {
			return RecheckBatch{}, false, fmt.Errorf("create recheck batch %s: %w: unknown state %q", b.ID, ErrInvalid, st)
		}
	}
	states := b.States
	if states == nil {
		states = []State{}
	}
	statesJSON, err := json.Marshal(states)
	if err != nil {
		return RecheckBatch{}, false, fmt.Errorf("create recheck batch %s: %w", b.ID, err)
	}
	var (
		out      RecheckBatch
		inserted bool
	)
	err = s.write(ctx, func(tx querier) error {
		var err error
		out, inserted, err = insertOrGet(ctx, tx, func() (RecheckBatch, error) {
			return scanBatch(tx.QueryRowContext(ctx, `SELECT `+batchCols+` FROM recheck_batches WHERE id = ?`, b.ID))
		}, `INSERT INTO recheck_batches (`+batchCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', ?, NULL) ON CONFLICT (id) DO NOTHING`,
			b.ID, b.PolicyVersion, b.PolicySHA256, b.PolicyKey, b.ModelID, string(statesJSON), b.RequestedBy,
			RecheckRunning, nowOr(b.CreatedAt).UnixMicro())
		return err
	})
	if err != nil {
		return RecheckBatch{}, false, fmt.Errorf("create recheck batch %s: %w", b.ID, err)
	}
	return out, inserted, nil
}

// GetRecheckBatch implements RecheckStore.
func (s *sqlStore) GetRecheckBatch(ctx context.Context, id string) (RecheckBatch, error) {
	b, err := queryOne(ctx, s.reader(), scanBatch, `SELECT `+batchCols+` FROM recheck_batches WHERE id = ?`, id)
	if err != nil {
		return RecheckBatch{}, fmt.Errorf("get recheck batch %s: %w", id, err)
	}
	return b, nil
}

// RecheckBatchByPolicy implements RecheckStore.
func (s *sqlStore) RecheckBatchByPolicy(ctx context.Context, policyVersion string) (RecheckBatch, error) {
	b, err := queryOne(ctx, s.reader(), scanBatch, `SELECT `+batchCols+` FROM recheck_batches
		WHERE policy_version = ? ORDER BY created_at DESC, id DESC LIMIT 1`, policyVersion)
	if err != nil {
		return RecheckBatch{}, fmt.Errorf("recheck batch of policy %s: %w", policyVersion, err)
	}
	return b, nil
}

// FinishRecheckBatch implements RecheckStore.
func (s *sqlStore) FinishRecheckBatch(ctx context.Context, id, state, errMsg string) error {
	if state != RecheckCompleted && state != RecheckFailed {
		return fmt.Errorf("finish recheck batch %s: %w: state %q", id, ErrInvalid, state)
	}
	res, err := s.writer().ExecContext(ctx, `UPDATE recheck_batches SET state = ?, error = ?, finished_at = ? WHERE id = ?`,
		state, errMsg, nowOr(time.Time{}).UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("finish recheck batch %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("finish recheck batch %s: %w", id, cmpErr(err, ErrNotFound))
	}
	return nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

const resultCols = `batch_id, video_id, seq, video_state, old_outcome, old_policy_version, old_model_sha256, new_outcome,
	new_reason, model_id, model_sha256, policy_version, changed, frames, segments, scores, error, review_item_id, created_at`

func scanResult(sc rowScanner) (RecheckResult, error) {
	var (
		r                RecheckResult
		changed          int
		segments, scores sql.NullString
		created          int64
	)
	err := sc.Scan(&r.BatchID, &r.VideoID, &r.Seq, &r.VideoState, &r.OldOutcome, &r.OldPolicyVersion, &r.OldModelSHA256,
		&r.NewOutcome, &r.NewReason, &r.ModelID, &r.ModelSHA256, &r.PolicyVersion, &changed, &r.Frames,
		&segments, &scores, &r.Error, &r.ReviewItemID, &created)
	if err != nil {
		return RecheckResult{}, err
	}
	r.Changed = changed != 0
	if segments.Valid {
		r.Segments = json.RawMessage(segments.String)
	}
	if scores.Valid {
		r.Scores = json.RawMessage(scores.String)
	}
	r.CreatedAt = time.UnixMicro(created).UTC()
	return r, nil
}

func batchExists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM recheck_batches WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("recheck batch %s: %w", id, ErrNotFound)
	}
	return err
}

// RecordRecheckResult implements RecheckStore.
func (s *sqlStore) RecordRecheckResult(ctx context.Context, r RecheckResult) (RecheckResult, bool, error) {
	if r.BatchID == "" || r.VideoID == "" {
		return RecheckResult{}, false, fmt.Errorf("record recheck result: %w: empty batch or video id", ErrInvalid)
	}
	segments, err := rawJSON("segments", r.Segments)
	if err != nil {
		return RecheckResult{}, false, fmt.Errorf("record recheck result %s/%s: %w", r.BatchID, r.VideoID, err)
	}
	scores, err := rawJSON("scores", r.Scores)
	if err != nil {
		return RecheckResult{}, false, fmt.Errorf("record recheck result %s/%s: %w", r.BatchID, r.VideoID, err)
	}
	var (
		out      RecheckResult
		inserted bool
	)
	err = s.write(ctx, func(tx querier) error {
		if err := batchExists(ctx, tx, r.BatchID); err != nil {
			return err
		}
		if err := videoExists(ctx, tx, r.VideoID); err != nil {
			return err
		}
		get := func() (RecheckResult, error) {
			return scanResult(tx.QueryRowContext(ctx, `SELECT `+resultCols+` FROM recheck_results
				WHERE batch_id = ? AND video_id = ?`, r.BatchID, r.VideoID))
		}
		var err error
		out, inserted, err = findOrInsert(get, func() (RecheckResult, error) {
			var seq int64
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM recheck_results WHERE batch_id = ?`,
				r.BatchID).Scan(&seq); err != nil {
				return RecheckResult{}, err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO recheck_results (`+resultCols+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.BatchID, r.VideoID, seq, r.VideoState, r.OldOutcome, r.OldPolicyVersion, r.OldModelSHA256, r.NewOutcome,
				r.NewReason, r.ModelID, r.ModelSHA256, r.PolicyVersion, btoi(r.Changed), r.Frames, segments, scores,
				r.Error, r.ReviewItemID, nowOr(r.CreatedAt).UnixMicro()); err != nil {
				return RecheckResult{}, err
			}
			return get()
		})
		return err
	})
	if err != nil {
		return RecheckResult{}, false, fmt.Errorf("record recheck result %s/%s: %w", r.BatchID, r.VideoID, err)
	}
	return out, inserted, nil
}

// GetRecheckResult implements RecheckStore.
func (s *sqlStore) GetRecheckResult(ctx context.Context, batchID, videoID string) (RecheckResult, error) {
	r, err := queryOne(ctx, s.reader(), scanResult, `SELECT `+resultCols+` FROM recheck_results
		WHERE batch_id = ? AND video_id = ?`, batchID, videoID)
	if err != nil {
		return RecheckResult{}, fmt.Errorf("recheck result %s/%s: %w", batchID, videoID, err)
	}
	return r, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SetRecheckReviewItem implements RecheckStore.
func (s *sqlStore) SetRecheckReviewItem(ctx context.Context, batchID, videoID, itemID string) error {
	if itemID == "" {
		return fmt.Errorf("set review item of %s/%s: %w: empty item id", batchID, videoID, ErrInvalid)
	}
	res, err := s.writer().ExecContext(ctx, `UPDATE recheck_results SET review_item_id = ? WHERE batch_id = ? AND video_id = ?`,
		itemID, batchID, videoID)
	if err != nil {
		return fmt.Errorf("set review item of %s/%s: %w", batchID, videoID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("set review item of %s/%s: %w", batchID, videoID, cmpErr(err, ErrNotFound))
	}
	return nil
}

// Result cursors are the last seq of a page, opaque to clients.
const resultCursorPrefix = "rr|"

func encodeResultCursor(seq int64) string {
	return sealCursor(resultCursorPrefix + strconv.FormatInt(seq, 10))
}

func decodeResultCursor(s string) (int64, error) {
	b, err := openCursor(s)
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(b, resultCursorPrefix)
	if !ok {
		return 0, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	seq, err := strconv.ParseInt(n, 10, 64)
	if err != nil || seq < 0 {
		return 0, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	return seq, nil
}

// RecheckResults implements RecheckStore.
func (s *sqlStore) RecheckResults(ctx context.Context, q RecheckResultQuery) ([]RecheckResult, string, error) {
	limit := clampLimit(q.Limit)
	var after int64
	if q.Cursor != "" {
		var err error
		if after, err = decodeResultCursor(q.Cursor); err != nil {
			return nil, "", fmt.Errorf("recheck results of %s: %w", q.BatchID, err)
		}
	}
	var out []RecheckResult
	next := ""
	err := s.read(ctx, func(tx querier) error {
		if err := batchExists(ctx, tx, q.BatchID); err != nil {
			return err
		}
		query := `SELECT ` + resultCols + ` FROM recheck_results WHERE batch_id = ? AND seq > ?`
		if q.ChangedOnly {
			query += ` AND changed = 1`
		}
		var err error
		out, err = queryAll(ctx, tx, scanResult, query+` ORDER BY seq LIMIT ?`, q.BatchID, after, limit+1)
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("recheck results of %s: %w", q.BatchID, err)
	}
	if len(out) > limit {
		out = out[:limit]
		next = encodeResultCursor(out[limit-1].Seq)
	}
	return out, next, nil
}

// RecheckCounts implements RecheckStore.
func (s *sqlStore) RecheckCounts(ctx context.Context, batchID string) (RecheckCounts, error) {
	var c RecheckCounts
	err := s.read(ctx, func(tx querier) error {
		if err := batchExists(ctx, tx, batchID); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(changed), 0) AS BIGINT),
			CAST(COALESCE(SUM(CASE WHEN error <> '' THEN 1 ELSE 0 END), 0) AS BIGINT),
			CAST(COALESCE(SUM(CASE WHEN review_item_id <> '' THEN 1 ELSE 0 END), 0) AS BIGINT)
			FROM recheck_results WHERE batch_id = ?`, batchID).Scan(&c.Processed, &c.Changed, &c.Errors, &c.SentToReview)
	})
	if err != nil {
		return RecheckCounts{}, fmt.Errorf("recheck counts of %s: %w", batchID, err)
	}
	return c, nil
}

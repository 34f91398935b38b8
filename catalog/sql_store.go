package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/media"
)

const videoCols = `id, sha256, title, description, level, language, tags, teacher_id, state, error, blob_key, size_bytes, media, created_at, updated_at`

func scanVideo(sc rowScanner) (Video, error) {
	var (
		v                Video
		tags             string
		mediaJSON        sql.NullString
		created, updated int64
	)
	err := sc.Scan(&v.ID, &v.SHA256, &v.Title, &v.Description, &v.Level, &v.Language, &tags, &v.TeacherID,
		&v.State, &v.Error, &v.BlobKey, &v.SizeBytes, &mediaJSON, &created, &updated)
	if err != nil {
		return Video{}, err
	}
	if err := json.Unmarshal([]byte(tags), &v.Tags); err != nil {
		return Video{}, fmt.Errorf("video %s: tags: %w", v.ID, err)
	}
	if v.Tags == nil {
		v.Tags = []string{}
	}
	if mediaJSON.Valid {
		v.Media = new(media.Info)
		if err := json.Unmarshal([]byte(mediaJSON.String), v.Media); err != nil {
			return Video{}, fmt.Errorf("video %s: media: %w", v.ID, err)
		}
	}
	v.CreatedAt = time.UnixMicro(created).UTC()
	v.UpdatedAt = time.UnixMicro(updated).UTC()
	v.Stages = []Stage{}
	return v, nil
}

// getVideo reads one video with its stages; ErrNotFound if missing.
func getVideo(ctx context.Context, q querier, id string) (Video, error) {
	v, err := queryOne(ctx, q, scanVideo, `SELECT `+videoCols+` FROM videos WHERE id = ?`, id)
	if err != nil {
		return Video{}, err
	}
	vs := []Video{v}
	if err := loadStages(ctx, q, vs); err != nil {
		return Video{}, err
	}
	return vs[0], nil
}

// loadStages fills in the stages of vs with one query.
func loadStages(ctx context.Context, q querier, vs []Video) error {
	if len(vs) == 0 {
		return nil
	}
	idx := make(map[string]int, len(vs))
	args := make([]any, len(vs))
	for i, v := range vs {
		idx[v.ID] = i
		args[i] = v.ID
	}
	rows, err := q.QueryContext(ctx, `SELECT video_id, name, state, started_at, finished_at, error, attempts
		FROM stages WHERE video_id IN (?`+strings.Repeat(",?", len(vs)-1)+`) ORDER BY video_id, seq`, args...)
	if err != nil {
		return fmt.Errorf("stages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id                string
			st                Stage
			started, finished sql.NullInt64
		)
		if err := rows.Scan(&id, &st.Name, &st.State, &started, &finished, &st.Error, &st.Attempts); err != nil {
			return fmt.Errorf("stages: %w", err)
		}
		st.StartedAt = microsPtr(started)
		st.FinishedAt = microsPtr(finished)
		i := idx[id]
		vs[i].Stages = append(vs[i].Stages, st)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("stages: %w", err)
	}
	return nil
}

func microsPtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.UnixMicro(n.Int64).UTC()
	return &t
}

// videoExists reports ErrNotFound for a missing video.
func videoExists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM videos WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// CreateVideo implements Store.
func (s *sqlStore) CreateVideo(ctx context.Context, v Video) (Video, bool, error) {
	if v.ID == "" {
		return Video{}, false, fmt.Errorf("create video: %w: empty id", ErrInvalid)
	}
	tags := v.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return Video{}, false, fmt.Errorf("create video %s: tags: %w", v.ID, err)
	}
	var mediaJSON sql.NullString
	if v.Media != nil {
		b, err := json.Marshal(v.Media)
		if err != nil {
			return Video{}, false, fmt.Errorf("create video %s: media: %w", v.ID, err)
		}
		mediaJSON = sql.NullString{String: string(b), Valid: true}
	}
	created := nowOr(v.CreatedAt).UnixMicro()
	var (
		out      Video
		inserted bool
	)
	err = s.write(ctx, func(tx querier) error {
		var err error
		out, inserted, err = insertOrGet(ctx, tx, func() (Video, error) { return getVideo(ctx, tx, v.ID) },
			`INSERT INTO videos (`+videoCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			v.ID, v.SHA256, v.Title, v.Description, v.Level, v.Language, string(tagsJSON), v.TeacherID,
			StateProcessing, v.BlobKey, v.SizeBytes, mediaJSON, created, created)
		return err
	})
	if err != nil {
		return Video{}, false, fmt.Errorf("create video %s: %w", v.ID, err)
	}
	return out, inserted, nil
}

// GetVideo implements Store.
func (s *sqlStore) GetVideo(ctx context.Context, id string) (Video, error) {
	var v Video
	// One read transaction: the video and its stages from the same snapshot.
	err := s.read(ctx, func(tx querier) error {
		var err error
		v, err = getVideo(ctx, tx, id)
		return err
	})
	if err != nil {
		return Video{}, fmt.Errorf("get video %s: %w", id, err)
	}
	return v, nil
}

// ListVideos implements Store.
func (s *sqlStore) ListVideos(ctx context.Context, q ListQuery) ([]Video, string, error) {
	limit := clampLimit(q.Limit)
	var where conditions
	if q.State != "" {
		if !q.State.Valid() {
			return nil, "", fmt.Errorf("list videos: %w: unknown state %q", ErrInvalid, q.State)
		}
		where.add("state = ?", q.State)
	}
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("list videos: %w", err)
		}
		where.add("(created_at, id) < (?, ?)", c.createdAt, c.id)
	}
	// One extra row tells whether there is a next page.
	query := `SELECT ` + videoCols + ` FROM videos` + where.clause() + ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args := append(where.args, limit+1)

	var (
		vs   []Video
		more bool
	)
	err := s.read(ctx, func(tx querier) error {
		var err error
		if vs, err = queryAll(ctx, tx, scanVideo, query, args...); err != nil {
			return err
		}
		if len(vs) > limit {
			vs, more = vs[:limit], true
		}
		return loadStages(ctx, tx, vs)
	})
	if err != nil {
		return nil, "", fmt.Errorf("list videos: %w", err)
	}
	next := ""
	if more {
		next = encodeCursor(vs[len(vs)-1])
	}
	return vs, next, nil
}

// SetMedia implements Store.
func (s *sqlStore) SetMedia(ctx context.Context, id string, info media.Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("set media of %s: %w", id, err)
	}
	if err := s.update(ctx, `UPDATE videos SET media = ?, updated_at = ? WHERE id = ?`, string(b), nowOr(time.Time{}).UnixMicro(), id); err != nil {
		return fmt.Errorf("set media of %s: %w", id, err)
	}
	return nil
}

// SetState implements Store.
func (s *sqlStore) SetState(ctx context.Context, id string, state State, reason string) error {
	if !state.Valid() {
		return fmt.Errorf("set state of %s: %w: unknown state %q", id, ErrInvalid, state)
	}
	if err := s.update(ctx, `UPDATE videos SET state = ?, error = ?, updated_at = ? WHERE id = ?`, state, reason, nowOr(time.Time{}).UnixMicro(), id); err != nil {
		return fmt.Errorf("set state of %s to %s: %w", id, state, err)
	}
	return nil
}

// ConcludeStage implements Store.
func (s *sqlStore) ConcludeStage(ctx context.Context, id, stage string, state State) error {
	if !state.Valid() || stage == "" {
		return fmt.Errorf("conclude stage %q of %s: %w: state %q", stage, id, ErrInvalid, state)
	}
	err := s.write(ctx, func(tx querier) error {
		now := nowOr(time.Time{}).UnixMicro()
		res, err := tx.ExecContext(ctx, `UPDATE videos SET state = ?, error = '', updated_at = ? WHERE id = ?`, state, now, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		_, err = tx.ExecContext(ctx, `UPDATE stages SET state = ?, finished_at = ?, error = '' WHERE video_id = ? AND name = ? AND state = ?`,
			StageSucceeded, now, id, stage, StageRunning)
		return err
	})
	if err != nil {
		return fmt.Errorf("conclude stage %s of %s with %s: %w", stage, id, state, err)
	}
	return nil
}

// insertOrGet runs an INSERT ... ON CONFLICT DO NOTHING in tx and reads the
// row back: the stored row, and whether this call inserted it (a retried
// create gets the first one).
func insertOrGet[T any](ctx context.Context, tx querier, read func() (T, error), query string, args ...any) (T, bool, error) {
	var zero T
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return zero, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return zero, false, err
	}
	out, err := read()
	if err != nil {
		return zero, false, err
	}
	return out, n == 1, nil
}

// findOrInsert returns the row find reads, or, when there is none
// (sql.ErrNoRows), the row insert writes: appends keyed by an idempotency key
// run it inside one write transaction so a retry gets the first row.
func findOrInsert[T any](find, insert func() (T, error)) (T, bool, error) {
	existing, err := find()
	if err == nil {
		return existing, false, nil
	}
	var zero T
	if !errors.Is(err, sql.ErrNoRows) {
		return zero, false, err
	}
	out, err := insert()
	if err != nil {
		return zero, false, err
	}
	return out, true, nil
}

// update runs a single-row UPDATE; no row means ErrNotFound.
func (s *sqlStore) update(ctx context.Context, query string, args ...any) error {
	res, err := s.writer().ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// StageStarted implements Store.
func (s *sqlStore) StageStarted(ctx context.Context, id, stage string, at time.Time) error {
	if stage == "" {
		return fmt.Errorf("start stage of %s: %w: empty stage name", id, ErrInvalid)
	}
	err := s.upsertStage(ctx, id, `INSERT INTO stages (video_id, name, seq, state, started_at, finished_at, error, attempts)
		VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM stages WHERE video_id = ?1), 'running', ?3, NULL, '', 1)
		ON CONFLICT (video_id, name) DO UPDATE SET
			state = 'running', started_at = excluded.started_at, finished_at = NULL, error = '',
			attempts = stages.attempts + 1`,
		id, stage, nowOr(at).UnixMicro())
	if err != nil {
		return fmt.Errorf("start stage %s of %s: %w", stage, id, err)
	}
	return nil
}

// StageFinished implements Store.
func (s *sqlStore) StageFinished(ctx context.Context, id, stage string, at time.Time, state, errMsg string) error {
	if stage == "" {
		return fmt.Errorf("finish stage of %s: %w: empty stage name", id, ErrInvalid)
	}
	switch state {
	case StageSucceeded, StageFailed, StageSkipped:
	default:
		return fmt.Errorf("finish stage %s of %s: %w: state %q", stage, id, ErrInvalid, state)
	}
	err := s.upsertStage(ctx, id, `INSERT INTO stages (video_id, name, seq, state, started_at, finished_at, error, attempts)
		VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM stages WHERE video_id = ?1), ?3, NULL, ?4, ?5, 0)
		ON CONFLICT (video_id, name) DO UPDATE SET
			state = excluded.state, finished_at = excluded.finished_at, error = excluded.error`,
		id, stage, state, nowOr(at).UnixMicro(), errMsg)
	if err != nil {
		return fmt.Errorf("finish stage %s of %s: %w", stage, id, err)
	}
	return nil
}

// upsertStage runs a stage upsert (args start with video id) for an existing
// video and touches the video's updated_at.
func (s *sqlStore) upsertStage(ctx context.Context, id, query string, args ...any) error {
	return s.write(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE videos SET updated_at = ? WHERE id = ?`, nowOr(time.Time{}).UnixMicro(), id)
		return err
	})
}

const decisionCols = `seq, video_id, key, actor, outcome, reason, model_id, model_sha256, policy_version, sampler, segments, scores, created_at`

func scanDecision(sc rowScanner) (Decision, error) {
	var (
		d                         Decision
		sampler, segments, scores sql.NullString
		created                   int64
	)
	err := sc.Scan(&d.Seq, &d.VideoID, &d.Key, &d.Actor, &d.Outcome, &d.Reason, &d.ModelID, &d.ModelSHA256,
		&d.PolicyVersion, &sampler, &segments, &scores, &created)
	if err != nil {
		return Decision{}, err
	}
	if sampler.Valid {
		d.Sampler = new(media.SamplerSettings)
		if err := json.Unmarshal([]byte(sampler.String), d.Sampler); err != nil {
			return Decision{}, fmt.Errorf("decision %d: sampler: %w", d.Seq, err)
		}
	}
	if segments.Valid {
		d.Segments = json.RawMessage(segments.String)
	}
	if scores.Valid {
		d.Scores = json.RawMessage(scores.String)
	}
	d.CreatedAt = time.UnixMicro(created).UTC()
	return d, nil
}

func rawJSON(field string, m json.RawMessage) (sql.NullString, error) {
	if len(m) == 0 {
		return sql.NullString{}, nil
	}
	if !json.Valid(m) {
		return sql.NullString{}, fmt.Errorf("%w: %s is not valid JSON", ErrInvalid, field)
	}
	return sql.NullString{String: string(m), Valid: true}, nil
}

// AppendDecision implements Store.
func (s *sqlStore) AppendDecision(ctx context.Context, d Decision) (Decision, bool, error) {
	if d.VideoID == "" || d.Key == "" {
		return Decision{}, false, fmt.Errorf("append decision for %q: %w: empty video id or key", d.VideoID, ErrInvalid)
	}
	var sampler sql.NullString
	if d.Sampler != nil {
		b, err := json.Marshal(d.Sampler)
		if err != nil {
			return Decision{}, false, fmt.Errorf("append decision for %s: sampler: %w", d.VideoID, err)
		}
		sampler = sql.NullString{String: string(b), Valid: true}
	}
	segments, err := rawJSON("segments", d.Segments)
	if err != nil {
		return Decision{}, false, fmt.Errorf("append decision for %s: %w", d.VideoID, err)
	}
	scores, err := rawJSON("scores", d.Scores)
	if err != nil {
		return Decision{}, false, fmt.Errorf("append decision for %s: %w", d.VideoID, err)
	}
	var (
		out      Decision
		inserted bool
	)
	// Inside one IMMEDIATE transaction the lookup and the insert cannot
	// interleave with another append; UNIQUE (video_id, key) backs it up.
	err = s.write(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, d.VideoID); err != nil {
			return err
		}
		var err error
		out, inserted, err = findOrInsert(func() (Decision, error) {
			return scanDecision(tx.QueryRowContext(ctx,
				`SELECT `+decisionCols+` FROM decisions WHERE video_id = ? AND key = ?`, d.VideoID, d.Key))
		}, func() (Decision, error) {
			var seq int64
			err := tx.QueryRowContext(ctx, `INSERT INTO decisions (video_id, key, actor, outcome, reason, model_id,
				model_sha256, policy_version, sampler, segments, scores, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
				d.VideoID, d.Key, d.Actor, d.Outcome, d.Reason, d.ModelID, d.ModelSHA256, d.PolicyVersion,
				sampler, segments, scores, nowOr(d.CreatedAt).UnixMicro()).Scan(&seq)
			if err != nil {
				return Decision{}, err
			}
			return scanDecision(tx.QueryRowContext(ctx, `SELECT `+decisionCols+` FROM decisions WHERE seq = ?`, seq))
		})
		return err
	})
	if err != nil {
		return Decision{}, false, fmt.Errorf("append decision for %s: %w", d.VideoID, err)
	}
	return out, inserted, nil
}

// Decisions implements Store.
func (s *sqlStore) Decisions(ctx context.Context, videoID string) ([]Decision, error) {
	var out []Decision
	err := s.read(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, videoID); err != nil {
			return err
		}
		var err error
		out, err = queryAll(ctx, tx, scanDecision, `SELECT `+decisionCols+` FROM decisions WHERE video_id = ? ORDER BY seq`, videoID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decisions of %s: %w", videoID, err)
	}
	return out, nil
}

// BlobKeyInUse implements Store.
func (s *sqlStore) BlobKeyInUse(ctx context.Context, key string) (bool, error) {
	var n int
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM videos WHERE blob_key = ?`, key).Scan(&n); err != nil {
		return false, fmt.Errorf("look up blob key %s: %w", key, err)
	}
	return n > 0, nil
}

// DeleteVideo implements Store.
func (s *sqlStore) DeleteVideo(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx querier) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM decisions WHERE video_id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w (%d)", ErrHasDecisions, n)
		}
		// Stages explicitly, not by ON DELETE CASCADE, so this does not hinge
		// on PRAGMA foreign_keys being on for the connection.
		if _, err := tx.ExecContext(ctx, `DELETE FROM stages WHERE video_id = ?`, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM videos WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete video %s: %w", id, err)
	}
	return nil
}

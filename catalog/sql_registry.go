package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

var _ Registry = (*SQLite)(nil)

// newWatermarkID draws a registry id; a variable so a test can force collisions.
var newWatermarkID = func() (WatermarkID, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return WatermarkID(v), nil
		}
	}
}

// maxIDDraws bounds the retries on an id collision. With 2^64 ids, even a
// billion videos collide with probability ~5e-11 per draw.
const maxIDDraws = 8

const watermarkCols = `payload, video_id, teacher_id, key_id, created_at`

func scanWatermark(sc rowScanner) (WatermarkRecord, error) {
	var (
		r       WatermarkRecord
		payload int64
		created int64
	)
	if err := sc.Scan(&payload, &r.VideoID, &r.TeacherID, &r.KeyID, &created); err != nil {
		return r, err
	}
	r.ID = WatermarkID(uint64(payload)) // stored bit for bit in a signed INTEGER
	r.CreatedAt = time.UnixMicro(created).UTC()
	return r, nil
}

// RegisterWatermark implements Registry.
func (s *sqlStore) RegisterWatermark(ctx context.Context, videoID, teacherID, keyID string) (WatermarkRecord, error) {
	if videoID == "" || keyID == "" {
		return WatermarkRecord{}, fmt.Errorf("register watermark for %q: %w: empty video id or key id", videoID, ErrInvalid)
	}
	var out WatermarkRecord
	// One IMMEDIATE transaction: the lookup and the insert cannot interleave
	// with another registration; UNIQUE (video_id) backs it up.
	err := s.write(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, videoID); err != nil {
			return err
		}
		existing, err := scanWatermark(tx.QueryRowContext(ctx, `SELECT `+watermarkCols+` FROM watermarks WHERE video_id = ?`, videoID))
		if err == nil {
			out = existing
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := nowOr(time.Time{})
		for range maxIDDraws {
			id, err := newWatermarkID()
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO watermarks (payload, video_id, teacher_id, key_id, created_at)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (payload) DO NOTHING`,
				int64(id), videoID, teacherID, keyID, now.UnixMicro())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				out = WatermarkRecord{ID: id, VideoID: videoID, TeacherID: teacherID, KeyID: keyID, CreatedAt: now}
				return nil
			}
		}
		return fmt.Errorf("no free id after %d draws", maxIDDraws)
	})
	if err != nil {
		return WatermarkRecord{}, fmt.Errorf("register watermark for %s: %w", videoID, err)
	}
	return out, nil
}

// LookupWatermark implements Registry.
func (s *sqlStore) LookupWatermark(ctx context.Context, id WatermarkID) (WatermarkRecord, error) {
	r, err := queryOne(ctx, s.reader(), scanWatermark, `SELECT `+watermarkCols+` FROM watermarks WHERE payload = ?`, int64(id))
	if err != nil {
		return r, fmt.Errorf("look up watermark %s: %w", id, err)
	}
	return r, nil
}

// WatermarkOf implements Registry.
func (s *sqlStore) WatermarkOf(ctx context.Context, videoID string) (WatermarkRecord, error) {
	r, err := queryOne(ctx, s.reader(), scanWatermark, `SELECT `+watermarkCols+` FROM watermarks WHERE video_id = ?`, videoID)
	if err != nil {
		return r, fmt.Errorf("watermark of %s: %w", videoID, err)
	}
	return r, nil
}

// SetRendition implements Registry.
func (s *sqlStore) SetRendition(ctx context.Context, r Rendition) error {
	if r.VideoID == "" || r.BlobKey == "" || r.SHA256 == "" || r.SizeBytes <= 0 || r.Frames <= 0 {
		return fmt.Errorf("set rendition of %q: %w: empty video id, blob key or hash, or no bytes or frames", r.VideoID, ErrInvalid)
	}
	enc, err := json.Marshal(r.Encode)
	if err != nil {
		return fmt.Errorf("set rendition of %s: %w", r.VideoID, err)
	}
	err = s.write(ctx, func(tx querier) error {
		if err := videoExists(ctx, tx, r.VideoID); err != nil {
			return err
		}
		var payload int64
		err := tx.QueryRowContext(ctx, `SELECT payload FROM watermarks WHERE video_id = ?`, r.VideoID).Scan(&payload)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && WatermarkID(uint64(payload)) != r.Payload) {
			return fmt.Errorf("%w: payload %s is not the video's registry id", ErrInvalid, r.Payload)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO renditions (video_id, blob_key, sha256, size_bytes, payload, frames, encode, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (video_id) DO UPDATE SET blob_key = excluded.blob_key, sha256 = excluded.sha256,
				size_bytes = excluded.size_bytes, payload = excluded.payload, frames = excluded.frames,
				encode = excluded.encode, created_at = excluded.created_at`,
			r.VideoID, r.BlobKey, r.SHA256, r.SizeBytes, payload, r.Frames, string(enc), nowOr(r.CreatedAt).UnixMicro())
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE videos SET updated_at = ? WHERE id = ?`, nowOr(time.Time{}).UnixMicro(), r.VideoID)
		return err
	})
	if err != nil {
		return fmt.Errorf("set rendition of %s: %w", r.VideoID, err)
	}
	return nil
}

// Rendition implements Registry.
func (s *sqlStore) Rendition(ctx context.Context, videoID string) (Rendition, error) {
	r := Rendition{VideoID: videoID}
	var (
		payload, created int64
		enc              string
	)
	err := s.reader().QueryRowContext(ctx, `SELECT blob_key, sha256, size_bytes, payload, frames, encode, created_at
		FROM renditions WHERE video_id = ?`, videoID).Scan(&r.BlobKey, &r.SHA256, &r.SizeBytes, &payload, &r.Frames, &enc, &created)
	if errors.Is(err, sql.ErrNoRows) {
		if err = videoExists(ctx, s.reader(), videoID); err == nil {
			err = ErrNoRendition
		}
	}
	if err != nil {
		return Rendition{}, fmt.Errorf("rendition of %s: %w", videoID, err)
	}
	if err := json.Unmarshal([]byte(enc), &r.Encode); err != nil {
		return Rendition{}, fmt.Errorf("rendition of %s: encode settings: %w", videoID, err)
	}
	r.Payload = WatermarkID(uint64(payload))
	r.CreatedAt = time.UnixMicro(created).UTC()
	return r, nil
}

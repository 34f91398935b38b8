package vectorstore

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// GetMany returns the stored lessons among ids (at most MaxBatch), by id;
// ids not stored are absent from the map. It is one query where Get per id
// would be len(ids): the recommender reads the vectors of a user's history
// and of its candidates with it.
func (s *SQLiteVec) GetMany(ctx context.Context, ids []string) (map[string]Lesson, error) {
	if err := validateIDs(ids); err != nil {
		return nil, fmt.Errorf("get from %s: %w", s.collection, err)
	}
	out := make(map[string]Lesson, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, language, level, embedding, published_at, popularity
		FROM lesson_data WHERE id IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("get from %s: %w", s.collection, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			l         Lesson
			blob      []byte
			published int64
		)
		if err := rows.Scan(&l.ID, &l.Language, &l.Level, &blob, &published, &l.Popularity); err != nil {
			return nil, fmt.Errorf("get from %s: %w", s.collection, err)
		}
		if l.Vector, err = decodeVector(blob, s.dim); err != nil {
			return nil, fmt.Errorf("get %q from %s: %w", l.ID, s.collection, err)
		}
		l.PublishedAt = time.UnixMilli(published).UTC()
		out[l.ID] = l
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get from %s: %w", s.collection, err)
	}
	return out, nil
}

package catalog

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// rowScanner is what *sql.Row and *sql.Rows share, so one scan function
// reads a record from either.
type rowScanner interface{ Scan(...any) error }

// queryOne reads the one row of query with scan; a missing row is
// ErrNotFound.
func queryOne[T any](ctx context.Context, q querier, scan func(rowScanner) (T, error), query string, args ...any) (T, error) {
	v, err := scan(q.QueryRowContext(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNotFound
	}
	return v, err
}

// queryAll reads every row of query with scan. The slice is never nil, so
// an empty list encodes as [] rather than null.
func queryAll[T any](ctx context.Context, q querier, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// conditions collects the AND-ed WHERE conditions of a filtered query and
// their arguments, in order.
type conditions struct {
	conds []string
	args  []any
}

func (c *conditions) add(cond string, args ...any) {
	c.conds = append(c.conds, cond)
	c.args = append(c.args, args...)
}

// clause is " WHERE …", or empty with no conditions.
func (c *conditions) clause() string {
	if len(c.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.conds, " AND ")
}

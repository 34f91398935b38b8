package catalog

import "testing"

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                                      `SELECT 1`,
		`WHERE a = ? AND b = ? LIMIT ?`:                 `WHERE a = $1 AND b = $2 LIMIT $3`,
		`VALUES (?1, ?2, (SELECT ?1)), ?3`:              `VALUES ($1, $2, (SELECT $1)), $3`,
		`SET x = '?' WHERE y = ? AND z = 'it''s ?'`:     `SET x = '?' WHERE y = $1 AND z = 'it''s ?'`,
		`json_extract(v.media, '$.duration_ms') = ?`:    `json_extract(v.media, '$.duration_ms') = $1`,
		`SELECT "odd?col" FROM t WHERE a = ?`:           `SELECT "odd?col" FROM t WHERE a = $1`,
		`(created_at, id) < (?, ?) ORDER BY id LIMIT ?`: `(created_at, id) < ($1, $2) ORDER BY id LIMIT $3`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
		if got := rebind(in); got != want { // the cached answer
			t.Errorf("rebind(%q) again = %q", in, got)
		}
	}
}

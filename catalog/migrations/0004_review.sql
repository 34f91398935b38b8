-- Review queue: a queryable projection of the review workflows' state, so the
-- API lists and paginates items without asking every workflow. The workflow
-- is the source of truth and writes each new version here; a row only ever
-- moves to a higher version, so retried or reordered writes cannot roll it back.
CREATE TABLE review_items (
	id               TEXT PRIMARY KEY,
	video_id         TEXT NOT NULL REFERENCES videos (id),
	kind             TEXT NOT NULL,      -- model, report, appeal, recheck
	state            TEXT NOT NULL,      -- pending, claimed, decided, escalated
	version          INTEGER NOT NULL,
	rank             REAL NOT NULL,      -- review.Rank: orders by priority at any instant
	base_priority    REAL NOT NULL,
	claimed_by       TEXT NOT NULL,
	lease_expires_at INTEGER,            -- NULL unless claimed
	workflow_id      TEXT NOT NULL,
	run_id           TEXT NOT NULL,
	item             TEXT NOT NULL,      -- JSON review.Item as of version
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL
) STRICT;

-- The queue, highest priority first, by state or across states.
CREATE INDEX review_items_state_rank ON review_items (state, rank DESC, id DESC);
CREATE INDEX review_items_rank ON review_items (rank DESC, id DESC);
CREATE INDEX review_items_video ON review_items (video_id, created_at);

-- Postgres twin of ../0004_review.sql.

CREATE TABLE review_items (
	id               TEXT COLLATE "C" PRIMARY KEY,
	video_id         TEXT COLLATE "C" NOT NULL REFERENCES videos (id),
	kind             TEXT NOT NULL,
	state            TEXT NOT NULL,
	version          BIGINT NOT NULL,
	rank             DOUBLE PRECISION NOT NULL,
	base_priority    DOUBLE PRECISION NOT NULL,
	claimed_by       TEXT NOT NULL,
	lease_expires_at BIGINT,
	workflow_id      TEXT NOT NULL,
	run_id           TEXT NOT NULL,
	item             TEXT NOT NULL,
	created_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL
);

CREATE INDEX review_items_state_rank ON review_items (state, rank DESC, id DESC);
CREATE INDEX review_items_rank ON review_items (rank DESC, id DESC);
CREATE INDEX review_items_video ON review_items (video_id, created_at);

-- Postgres twin of ../0005_rechecks.sql.

CREATE TABLE recheck_batches (
	id             TEXT COLLATE "C" PRIMARY KEY,
	policy_version TEXT NOT NULL,
	policy_sha256  TEXT NOT NULL,
	policy_key     TEXT NOT NULL,
	model_id       TEXT NOT NULL,
	states         TEXT NOT NULL,
	requested_by   TEXT NOT NULL,
	state          TEXT NOT NULL,
	error          TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	finished_at    BIGINT
);

CREATE INDEX recheck_batches_policy ON recheck_batches (policy_version);

CREATE TABLE recheck_results (
	batch_id           TEXT COLLATE "C" NOT NULL REFERENCES recheck_batches (id),
	video_id           TEXT COLLATE "C" NOT NULL REFERENCES videos (id),
	seq                BIGINT NOT NULL,
	video_state        TEXT NOT NULL,
	old_outcome        TEXT NOT NULL,
	old_policy_version TEXT NOT NULL,
	old_model_sha256   TEXT NOT NULL,
	new_outcome        TEXT NOT NULL,
	new_reason         TEXT NOT NULL,
	model_id           TEXT NOT NULL,
	model_sha256       TEXT NOT NULL,
	policy_version     TEXT NOT NULL,
	changed            BIGINT NOT NULL,
	frames             TEXT NOT NULL,
	segments           TEXT,
	scores             TEXT,
	error              TEXT NOT NULL,
	review_item_id     TEXT NOT NULL,
	created_at         BIGINT NOT NULL,
	PRIMARY KEY (batch_id, video_id)
);

CREATE UNIQUE INDEX recheck_results_seq ON recheck_results (batch_id, seq);
CREATE INDEX recheck_results_changed ON recheck_results (batch_id, changed, seq);

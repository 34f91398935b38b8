-- Re-check batches: existing videos re-classified in shadow under a new
-- policy or model. A batch never changes a video; it records what the new
-- policy would decide and which review item a changed decision went to.

CREATE TABLE recheck_batches (
	id             TEXT PRIMARY KEY,
	policy_version TEXT NOT NULL,
	policy_sha256  TEXT NOT NULL,       -- sha256 of the policy YAML
	policy_key     TEXT NOT NULL,       -- blob key of the policy YAML
	model_id       TEXT NOT NULL,
	states         TEXT NOT NULL,       -- JSON array of the video states walked
	requested_by   TEXT NOT NULL,
	state          TEXT NOT NULL,       -- running, completed, failed
	error          TEXT NOT NULL,
	created_at     INTEGER NOT NULL,
	finished_at    INTEGER
) STRICT;

CREATE INDEX recheck_batches_policy ON recheck_batches (policy_version);

CREATE TABLE recheck_results (
	batch_id           TEXT NOT NULL REFERENCES recheck_batches (id),
	video_id           TEXT NOT NULL REFERENCES videos (id),
	seq                INTEGER NOT NULL,   -- order within the batch, for pagination
	video_state        TEXT NOT NULL,      -- the video's state when re-checked
	old_outcome        TEXT NOT NULL,      -- approved or blocked, from the video's state
	old_policy_version TEXT NOT NULL,
	old_model_sha256   TEXT NOT NULL,
	new_outcome        TEXT NOT NULL,      -- approved, blocked, needs_review; '' when it could not be re-checked
	new_reason         TEXT NOT NULL,
	model_id           TEXT NOT NULL,
	model_sha256       TEXT NOT NULL,
	policy_version     TEXT NOT NULL,
	changed            INTEGER NOT NULL,   -- 1 when new_outcome differs from old_outcome
	frames             TEXT NOT NULL,      -- where the frames came from: stored, resampled, partial
	segments           TEXT,               -- JSON, opaque (package moderation)
	scores             TEXT,               -- JSON, opaque (package moderation)
	error              TEXT NOT NULL,
	review_item_id     TEXT NOT NULL,      -- set once a changed decision is sent to review
	created_at         INTEGER NOT NULL,
	PRIMARY KEY (batch_id, video_id)     -- what makes a retried re-check write one row
) STRICT;

CREATE UNIQUE INDEX recheck_results_seq ON recheck_results (batch_id, seq);
CREATE INDEX recheck_results_changed ON recheck_results (batch_id, changed, seq);

-- Times are Unix microseconds (UTC): exact, sortable, and what Postgres keeps.

CREATE TABLE videos (
	id          TEXT PRIMARY KEY,
	sha256      TEXT NOT NULL,
	title       TEXT NOT NULL,
	description TEXT NOT NULL,
	level       INTEGER NOT NULL,
	language    TEXT NOT NULL,
	tags        TEXT NOT NULL,          -- JSON array of strings
	teacher_id  TEXT NOT NULL,
	state       TEXT NOT NULL,
	error       TEXT NOT NULL,
	blob_key    TEXT NOT NULL,
	size_bytes  INTEGER NOT NULL,
	media       TEXT,                   -- JSON media.Info; NULL until probed
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
) STRICT;

-- Keyset pagination, newest first, optionally by state.
-- The upload sweeper asks whether a stored upload belongs to any video.
CREATE INDEX videos_blob_key ON videos (blob_key);
CREATE INDEX videos_created ON videos (created_at DESC, id DESC);
CREATE INDEX videos_state_created ON videos (state, created_at DESC, id DESC);

CREATE TABLE stages (
	video_id    TEXT NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	seq         INTEGER NOT NULL,       -- order of first start within the video
	state       TEXT NOT NULL,
	started_at  INTEGER,
	finished_at INTEGER,
	error       TEXT NOT NULL,
	attempts    INTEGER NOT NULL,
	PRIMARY KEY (video_id, name)
) STRICT;

CREATE TABLE decisions (
	seq            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
	video_id       TEXT NOT NULL REFERENCES videos (id),
	key            TEXT NOT NULL,
	actor          TEXT NOT NULL,
	outcome        TEXT NOT NULL,
	reason         TEXT NOT NULL,
	model_id       TEXT NOT NULL,
	model_sha256   TEXT NOT NULL,
	policy_version TEXT NOT NULL,
	sampler        TEXT,                -- JSON media.SamplerSettings
	segments       TEXT,                -- JSON, opaque
	scores         TEXT,                -- JSON, opaque
	created_at     INTEGER NOT NULL,
	UNIQUE (video_id, key)              -- what makes retried appends exactly-once
) STRICT;

-- The log is append-only, whatever code or hand touches the file.
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
BEGIN
	SELECT RAISE(ABORT, 'decisions are append-only');
END;

CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
BEGIN
	SELECT RAISE(ABORT, 'decisions are append-only');
END;

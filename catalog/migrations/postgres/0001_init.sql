-- Postgres twin of ../0001_init.sql: the same tables, columns and meaning.
-- Times are Unix microseconds (UTC) in BIGINT, as in SQLite. Keys collate
-- as "C" (bytewise), so orders and keyset cursors match SQLite's.

CREATE TABLE videos (
	id          TEXT COLLATE "C" PRIMARY KEY,
	sha256      TEXT NOT NULL,
	title       TEXT NOT NULL,
	description TEXT NOT NULL,
	level       BIGINT NOT NULL,
	language    TEXT NOT NULL,
	tags        TEXT NOT NULL,          -- JSON array of strings
	teacher_id  TEXT NOT NULL,
	state       TEXT NOT NULL,
	error       TEXT NOT NULL,
	blob_key    TEXT NOT NULL,
	size_bytes  BIGINT NOT NULL,
	media       TEXT,                   -- JSON media.Info; NULL until probed
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL
);

CREATE INDEX videos_blob_key ON videos (blob_key);
CREATE INDEX videos_created ON videos (created_at DESC, id DESC);
CREATE INDEX videos_state_created ON videos (state, created_at DESC, id DESC);

CREATE TABLE stages (
	video_id    TEXT COLLATE "C" NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
	name        TEXT COLLATE "C" NOT NULL,
	seq         BIGINT NOT NULL,
	state       TEXT NOT NULL,
	started_at  BIGINT,
	finished_at BIGINT,
	error       TEXT NOT NULL,
	attempts    BIGINT NOT NULL,
	PRIMARY KEY (video_id, name)
);

CREATE TABLE decisions (
	seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused
	video_id       TEXT COLLATE "C" NOT NULL REFERENCES videos (id),
	key            TEXT COLLATE "C" NOT NULL,
	actor          TEXT NOT NULL,
	outcome        TEXT NOT NULL,
	reason         TEXT NOT NULL,
	model_id       TEXT NOT NULL,
	model_sha256   TEXT NOT NULL,
	policy_version TEXT NOT NULL,
	sampler        TEXT,
	segments       TEXT,
	scores         TEXT,
	created_at     BIGINT NOT NULL,
	UNIQUE (video_id, key)
);

-- Append-only, whatever code or hand touches the database.
CREATE FUNCTION lessonflow_forbid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '%', TG_ARGV[0];
END;
$$;

CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
	FOR EACH ROW EXECUTE FUNCTION lessonflow_forbid('decisions are append-only');
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
	FOR EACH ROW EXECUTE FUNCTION lessonflow_forbid('decisions are append-only');
CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
	FOR EACH STATEMENT EXECUTE FUNCTION lessonflow_forbid('decisions are append-only');

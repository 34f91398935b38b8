-- Postgres twin of ../0002_watermark.sql. payload is the uint64 id stored
-- bit for bit in a signed BIGINT; never 0.

CREATE TABLE watermarks (
	payload    BIGINT NOT NULL UNIQUE CHECK (payload <> 0),
	video_id   TEXT COLLATE "C" NOT NULL UNIQUE REFERENCES videos (id),
	teacher_id TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TRIGGER watermarks_no_update BEFORE UPDATE ON watermarks
	FOR EACH ROW EXECUTE FUNCTION lessonflow_forbid('watermark records are permanent');
CREATE TRIGGER watermarks_no_delete BEFORE DELETE ON watermarks
	FOR EACH ROW EXECUTE FUNCTION lessonflow_forbid('watermark records are permanent');
CREATE TRIGGER watermarks_no_truncate BEFORE TRUNCATE ON watermarks
	FOR EACH STATEMENT EXECUTE FUNCTION lessonflow_forbid('watermark records are permanent');

CREATE TABLE renditions (
	video_id   TEXT COLLATE "C" PRIMARY KEY REFERENCES videos (id),
	blob_key   TEXT NOT NULL,
	sha256     TEXT NOT NULL,
	size_bytes BIGINT NOT NULL,
	payload    BIGINT NOT NULL REFERENCES watermarks (payload),
	frames     BIGINT NOT NULL,
	encode     TEXT NOT NULL,
	created_at BIGINT NOT NULL
);

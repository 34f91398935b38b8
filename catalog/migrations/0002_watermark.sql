-- Watermark registry and renditions. Times are Unix microseconds (UTC), as in 0001.

-- One registry record per video: the 64-bit id embedded in every frame of its
-- rendition. A leaked copy's detected id leads back here. payload is the
-- uint64 id stored bit for bit in SQLite's signed INTEGER; never 0.
-- Records are permanent: a copy leaked years ago must still be traceable.
CREATE TABLE watermarks (
	payload    INTEGER NOT NULL UNIQUE CHECK (payload <> 0),
	video_id   TEXT NOT NULL UNIQUE REFERENCES videos (id),
	teacher_id TEXT NOT NULL,
	key_id     TEXT NOT NULL,           -- which key of LESSONFLOW_WATERMARK_KEY marked it
	created_at INTEGER NOT NULL
) STRICT;

CREATE TRIGGER watermarks_no_update BEFORE UPDATE ON watermarks
BEGIN
	SELECT RAISE(ABORT, 'watermark records are permanent');
END;

CREATE TRIGGER watermarks_no_delete BEFORE DELETE ON watermarks
BEGIN
	SELECT RAISE(ABORT, 'watermark records are permanent');
END;

-- The marked rendition the app serves, one per video. A re-run overwrites it
-- (same blob key, same payload).
CREATE TABLE renditions (
	video_id   TEXT PRIMARY KEY REFERENCES videos (id),
	blob_key   TEXT NOT NULL,
	sha256     TEXT NOT NULL,
	size_bytes INTEGER NOT NULL,
	payload    INTEGER NOT NULL REFERENCES watermarks (payload),
	frames     INTEGER NOT NULL,
	encode     TEXT NOT NULL,           -- JSON media.EncodeOptions
	created_at INTEGER NOT NULL
) STRICT;

-- What recommendations read of a lesson, kept in one row per video so that a
-- look-up of a few dozen ids is one primary-key descent each instead of
-- three joined look-ups and a json_extract (pprof: ~15% of a request's CPU).
-- Triggers recompute the row in the same transaction as every write to its
-- sources, so it is exact at any snapshot, whichever process writes.
-- The state is deliberately NOT copied: Lessons reads it from videos itself
-- (through videos_id_state, a covering index SQLite keeps exact), so the
-- publication gate never depends on these triggers.

CREATE INDEX videos_id_state ON videos (id, state);

CREATE TABLE lesson_meta (
	id           TEXT PRIMARY KEY,        -- videos.id
	title        TEXT NOT NULL,
	language     TEXT NOT NULL,
	level        INTEGER NOT NULL,
	duration_ms  INTEGER NOT NULL,        -- media.duration_ms, 0 until probed
	published_at INTEGER,                 -- publications.published_at, NULL if never
	views        INTEGER NOT NULL,        -- lesson_stats, 0 without a row
	completes    INTEGER NOT NULL,
	likes        INTEGER NOT NULL,
	dislikes     INTEGER NOT NULL,
	skips        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The one definition of a row; every trigger below repeats it for its id.
INSERT INTO lesson_meta
SELECT v.id, v.title, v.language, v.level,
	CASE WHEN json_valid(v.media) THEN COALESCE(json_extract(v.media, '$.duration_ms'), 0) ELSE 0 END,
	p.published_at, COALESCE(s.views, 0), COALESCE(s.completes, 0), COALESCE(s.likes, 0),
	COALESCE(s.dislikes, 0), COALESCE(s.skips, 0)
FROM videos v LEFT JOIN publications p ON p.video_id = v.id LEFT JOIN lesson_stats s ON s.lesson_id = v.id;

CREATE TRIGGER lesson_meta_video_insert AFTER INSERT ON videos
BEGIN
	INSERT OR REPLACE INTO lesson_meta
	SELECT v.id, v.title, v.language, v.level,
		CASE WHEN json_valid(v.media) THEN COALESCE(json_extract(v.media, '$.duration_ms'), 0) ELSE 0 END,
		p.published_at, COALESCE(s.views, 0), COALESCE(s.completes, 0), COALESCE(s.likes, 0),
		COALESCE(s.dislikes, 0), COALESCE(s.skips, 0)
	FROM videos v LEFT JOIN publications p ON p.video_id = v.id LEFT JOIN lesson_stats s ON s.lesson_id = v.id
	WHERE v.id = NEW.id;
END;

-- State, error and timestamps are not copied: their updates cost nothing here.
CREATE TRIGGER lesson_meta_video_update AFTER UPDATE OF id, title, language, level, media ON videos
BEGIN
	DELETE FROM lesson_meta WHERE id = OLD.id;
	INSERT OR REPLACE INTO lesson_meta
	SELECT v.id, v.title, v.language, v.level,
		CASE WHEN json_valid(v.media) THEN COALESCE(json_extract(v.media, '$.duration_ms'), 0) ELSE 0 END,
		p.published_at, COALESCE(s.views, 0), COALESCE(s.completes, 0), COALESCE(s.likes, 0),
		COALESCE(s.dislikes, 0), COALESCE(s.skips, 0)
	FROM videos v LEFT JOIN publications p ON p.video_id = v.id LEFT JOIN lesson_stats s ON s.lesson_id = v.id
	WHERE v.id = NEW.id;
END;

CREATE TRIGGER lesson_meta_video_delete AFTER DELETE ON videos
BEGIN
	DELETE FROM lesson_meta WHERE id = OLD.id;
END;

CREATE TRIGGER lesson_meta_publication_insert AFTER INSERT ON publications
BEGIN
	UPDATE lesson_meta SET published_at = NEW.published_at WHERE id = NEW.video_id;
END;

CREATE TRIGGER lesson_meta_publication_update AFTER UPDATE ON publications
BEGIN
	UPDATE lesson_meta SET published_at = NULL WHERE id = OLD.video_id;
	UPDATE lesson_meta SET published_at = NEW.published_at WHERE id = NEW.video_id;
END;

CREATE TRIGGER lesson_meta_publication_delete AFTER DELETE ON publications
BEGIN
	UPDATE lesson_meta SET published_at = NULL WHERE id = OLD.video_id;
END;

CREATE TRIGGER lesson_meta_stats_insert AFTER INSERT ON lesson_stats
BEGIN
	UPDATE lesson_meta SET views = NEW.views, completes = NEW.completes, likes = NEW.likes,
		dislikes = NEW.dislikes, skips = NEW.skips WHERE id = NEW.lesson_id;
END;

CREATE TRIGGER lesson_meta_stats_update AFTER UPDATE ON lesson_stats
BEGIN
	UPDATE lesson_meta SET views = 0, completes = 0, likes = 0, dislikes = 0, skips = 0 WHERE id = OLD.lesson_id;
	UPDATE lesson_meta SET views = NEW.views, completes = NEW.completes, likes = NEW.likes,
		dislikes = NEW.dislikes, skips = NEW.skips WHERE id = NEW.lesson_id;
END;

CREATE TRIGGER lesson_meta_stats_delete AFTER DELETE ON lesson_stats
BEGIN
	UPDATE lesson_meta SET views = 0, completes = 0, likes = 0, dislikes = 0, skips = 0 WHERE id = OLD.lesson_id;
END;

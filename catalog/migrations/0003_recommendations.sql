-- Recommendations: user events, per-lesson popularity counts, publication times.
-- Times are Unix microseconds (UTC), as in 0001.

-- One row per event a user's app sent. The client's event_id, scoped to the
-- user, makes a retried batch a no-op: INSERT ... ON CONFLICT DO NOTHING.
CREATE TABLE user_events (
	user_id     TEXT NOT NULL,
	event_id    TEXT NOT NULL,
	lesson_id   TEXT NOT NULL,          -- a video id; checked against videos when recorded
	type        TEXT NOT NULL,          -- view, complete, like, dislike, skip
	at          INTEGER NOT NULL,       -- when it happened, on the client's clock
	watch_ms    INTEGER NOT NULL,
	rec_id      TEXT NOT NULL,          -- the recommendation it came from, '' if none
	received_at INTEGER NOT NULL,
	PRIMARY KEY (user_id, event_id)
) STRICT;

-- A user's history, newest first (profiles), and "has this user already
-- done this to this lesson" (popularity counts distinct users).
CREATE INDEX user_events_user_at ON user_events (user_id, at DESC);
CREATE INDEX user_events_user_lesson ON user_events (user_id, lesson_id, type);

-- Distinct users per lesson and event type, kept in the same transaction as
-- the events: a duplicate event or a repeated view by one user counts once.
CREATE TABLE lesson_stats (
	lesson_id TEXT PRIMARY KEY,
	views     INTEGER NOT NULL DEFAULT 0,
	completes INTEGER NOT NULL DEFAULT 0,
	likes     INTEGER NOT NULL DEFAULT 0,
	dislikes  INTEGER NOT NULL DEFAULT 0,
	skips     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- When a video was first published (watermarked and indexed). The video's
-- state stays the gate: a blocked video keeps its row but is not published.
CREATE TABLE publications (
	video_id     TEXT PRIMARY KEY REFERENCES videos (id),
	published_at INTEGER NOT NULL
) STRICT;
CREATE INDEX publications_at ON publications (published_at DESC);

-- Postgres twin of ../0003_recommendations.sql.

CREATE TABLE user_events (
	user_id     TEXT COLLATE "C" NOT NULL,
	event_id    TEXT COLLATE "C" NOT NULL,
	lesson_id   TEXT COLLATE "C" NOT NULL,
	type        TEXT NOT NULL,
	at          BIGINT NOT NULL,
	watch_ms    BIGINT NOT NULL,
	rec_id      TEXT NOT NULL,
	received_at BIGINT NOT NULL,
	PRIMARY KEY (user_id, event_id)
);

CREATE INDEX user_events_user_at ON user_events (user_id, at DESC);
CREATE INDEX user_events_user_lesson ON user_events (user_id, lesson_id, type);

CREATE TABLE lesson_stats (
	lesson_id TEXT COLLATE "C" PRIMARY KEY,
	views     BIGINT NOT NULL DEFAULT 0,
	completes BIGINT NOT NULL DEFAULT 0,
	likes     BIGINT NOT NULL DEFAULT 0,
	dislikes  BIGINT NOT NULL DEFAULT 0,
	skips     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE publications (
	video_id     TEXT COLLATE "C" PRIMARY KEY REFERENCES videos (id),
	published_at BIGINT NOT NULL
);
CREATE INDEX publications_at ON publications (published_at DESC);

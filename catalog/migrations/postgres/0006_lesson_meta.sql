-- Postgres side of ../0006_lesson_meta.sql. SQLite keeps lesson_meta as a
-- table maintained by triggers, for speed there; here it is a view over the
-- same joins, exact at every snapshot by construction. Unlike SQLite's
-- table it carries the state, so Lessons reads one relation.

CREATE VIEW lesson_meta AS
SELECT v.id, v.title, v.language, v.level, v.state,
	COALESCE(CAST(CAST(v.media AS jsonb) ->> 'duration_ms' AS BIGINT), 0) AS duration_ms,
	p.published_at, COALESCE(s.views, 0) AS views, COALESCE(s.completes, 0) AS completes,
	COALESCE(s.likes, 0) AS likes, COALESCE(s.dislikes, 0) AS dislikes, COALESCE(s.skips, 0) AS skips
FROM videos v LEFT JOIN publications p ON p.video_id = v.id LEFT JOIN lesson_stats s ON s.lesson_id = v.id;

package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recommend"
	"github.com/lessonflow/lessonflow/vectorstore"
)

// Limits of the events and recommendations endpoints.
const (
	// MaxEventBatch bounds the events of one POST (one transaction).
	MaxEventBatch = catalog.MaxEventBatch
	// maxEventsBody bounds the body of one POST: 500 events of ~300 bytes.
	maxEventsBody = 1 << 20
	// clockSkew is how far in the future an event's time may be: phones'
	// clocks drift, but an event from tomorrow is a bug.
	clockSkew = 5 * time.Minute
	// maxWatchSeconds bounds watch_seconds (a day).
	maxWatchSeconds = 24 * 3600
	// defaultRecLimit is the answer size without ?limit=.
	defaultRecLimit = 10
)

var (
	userIDRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	eventIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	recIDRe   = regexp.MustCompile(`^[A-Za-z0-9._-]{0,64}$`)
	// oldestEvent: anything earlier is a client bug (a zero or epoch time).
	oldestEvent = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
)

// eventJSON is one event as the app sends it.
type eventJSON struct {
	EventID      string   `json:"event_id"`
	LessonID     string   `json:"lesson_id"`
	Type         string   `json:"type"`
	At           *string  `json:"at"`
	WatchSeconds *float64 `json:"watch_seconds"`
	RecID        string   `json:"rec_id"`
}

type eventsBody struct {
	Events []eventJSON `json:"events"`
}

// DecodeEvents parses and validates a POST /v1/users/{id}/events body for
// userID. Any problem (malformed JSON, an unknown field, a bad or missing
// field, a time in the future, too many events) is a *ValidationError naming
// the event, and the whole batch is refused: nothing is written for a batch
// that does not decode. Whether each lesson exists is the store's business.
func DecodeEvents(r io.Reader, userID string, now time.Time) ([]catalog.Event, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var body eventsBody
	if err := dec.Decode(&body); err != nil {
		return nil, invalid("body", "is not a valid events batch: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid("body", "has data after the JSON object")
	}
	switch n := len(body.Events); {
	case body.Events == nil || n == 0:
		return nil, invalid("events", "is required: a non-empty array")
	case n > MaxEventBatch:
		return nil, invalid("events", "has %d events; at most %d per request", n, MaxEventBatch)
	}
	out := make([]catalog.Event, len(body.Events))
	for i, e := range body.Events {
		field := func(name string) string { return fmt.Sprintf("events[%d].%s", i, name) }
		if !eventIDRe.MatchString(e.EventID) {
			return nil, invalid(field("event_id"), "must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
		}
		if e.LessonID == "" || len(e.LessonID) > vectorstore.MaxIDLen {
			return nil, invalid(field("lesson_id"), "is required (a lesson id)")
		}
		t := catalog.EventType(e.Type)
		if !t.Valid() {
			return nil, invalid(field("type"), "must be one of view, complete, like, dislike, skip; got %q", truncate(e.Type, 20))
		}
		if e.At == nil {
			return nil, invalid(field("at"), "is required (RFC 3339 time)")
		}
		at, err := time.Parse(time.RFC3339Nano, *e.At)
		if err != nil {
			return nil, invalid(field("at"), "is not an RFC 3339 time: %q", truncate(*e.At, 40))
		}
		if at.After(now.Add(clockSkew)) {
			return nil, invalid(field("at"), "%s is in the future", at.UTC().Format(time.RFC3339))
		}
		if at.Before(oldestEvent) {
			return nil, invalid(field("at"), "%s is before 2020", at.UTC().Format(time.RFC3339))
		}
		var watch float64
		if e.WatchSeconds != nil {
			watch = *e.WatchSeconds
			if math.IsNaN(watch) || watch < 0 || watch > maxWatchSeconds {
				return nil, invalid(field("watch_seconds"), "must be from 0 to %d", maxWatchSeconds)
			}
		}
		if !recIDRe.MatchString(e.RecID) {
			return nil, invalid(field("rec_id"), "must be at most 64 characters of letters, digits, '.', '_' or '-'")
		}
		out[i] = catalog.Event{UserID: userID, ID: e.EventID, LessonID: e.LessonID, Type: t, At: at.UTC(),
			WatchSeconds: watch, RecID: e.RecID}
	}
	return out, nil
}

// jsonProblem describes a decoding error without echoing large input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be %s", te.Field, te.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	return truncate(err.Error(), 120)
}

// eventResult is the outcome of one event of a batch.
type eventResult struct {
	EventID string `json:"event_id"`
	Status  int    `json:"status"` // 201 stored, 200 already stored, 404 unknown lesson
	Result  string `json:"result"` // created, duplicate, not_found
	Message string `json:"message,omitempty"`
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user_id")
	if !userIDRe.MatchString(user) {
		writeError(w, http.StatusBadRequest, "invalid_argument", "user_id must be 1-64 characters of letters, digits, '.', '_' or '-'")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return
	}
	// Read the whole (bounded) body first: nothing is written unless all of it decodes.
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventsBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", maxEventsBody))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_argument", "could not read the body")
		return
	}
	events, err := DecodeEvents(bytes.NewReader(b), user, time.Now())
	var ve *ValidationError
	if errors.As(err, &ve) {
		writeError(w, http.StatusBadRequest, "invalid_argument", ve.Error())
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if s.Events == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "events are not configured on this server")
		return
	}
	outcomes, err := s.Events.RecordEvents(r.Context(), events)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	items := make([]eventResult, len(events))
	status := http.StatusOK
	for i, o := range outcomes {
		items[i].EventID = events[i].ID
		switch o {
		case catalog.EventCreated:
			items[i].Status, items[i].Result = http.StatusCreated, "created"
		case catalog.EventDuplicate:
			items[i].Status, items[i].Result = http.StatusOK, "duplicate"
		default:
			items[i].Status, items[i].Result = http.StatusNotFound, "not_found"
			items[i].Message = "no published lesson " + strconv.Quote(truncate(events[i].LessonID, 64))
			status = http.StatusMultiStatus
		}
	}
	writeJSON(w, status, listBody[eventResult]{Items: items})
}

// parseLevel reads ?name= as a level 1-6 (0 when absent).
func parseLevel(q map[string][]string, name string) (int, error) {
	raw := ""
	if v := q[name]; len(v) > 0 {
		raw = v[0]
	}
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 6 {
		return 0, invalid(name, "must be a whole number from 1 to 6, got %q", truncate(raw, 20))
	}
	return n, nil
}

// parseRecLimit reads ?limit= (1..recommend.MaxLimit).
func parseRecLimit(r *http.Request) (int, error) {
	raw := r.URL.Query().Get("limit")
	if raw == "" {
		return defaultRecLimit, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > recommend.MaxLimit {
		return 0, invalid("limit", "must be a whole number from 1 to %d, got %q", recommend.MaxLimit, truncate(raw, 20))
	}
	return n, nil
}

// recsBody is the answer of both recommendation endpoints.
type recsBody struct {
	Items []recommend.Item `json:"items"`
}

func (s *Server) getRecommendations(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user_id")
	if !userIDRe.MatchString(user) {
		writeError(w, http.StatusBadRequest, "invalid_argument", "user_id must be 1-64 characters of letters, digits, '.', '_' or '-'")
		return
	}
	if !checkParams(w, r, "limit", "language", "level_min", "level_max") {
		return
	}
	q := recommend.Query{UserID: user}
	var err error
	if q.Limit, err = parseRecLimit(r); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	params := r.URL.Query()
	if q.Language = params.Get("language"); q.Language != "" && (len(q.Language) > 35 || !languageRe.MatchString(q.Language)) {
		writeError(w, http.StatusBadRequest, "invalid_query", "language must be a BCP 47 tag such as en or pt-BR")
		return
	}
	if q.LevelMin, err = parseLevel(params, "level_min"); err == nil {
		q.LevelMax, err = parseLevel(params, "level_max")
	}
	if err == nil && q.LevelMin > 0 && q.LevelMax > 0 && q.LevelMin > q.LevelMax {
		err = invalid("level_min", "%d is above level_max %d", q.LevelMin, q.LevelMax)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	if s.Recs == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "recommendations are not configured on this server")
		return
	}
	items, err := s.Recs.Recommend(r.Context(), q)
	if errors.Is(err, recommend.ErrInvalid) {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, recsBody{Items: items})
}

func (s *Server) getSimilar(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !checkParams(w, r, "limit") {
		return
	}
	limit, err := parseRecLimit(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	if !videoIDRe.MatchString(id) {
		writeError(w, http.StatusNotFound, "not_found", "no published lesson "+strconv.Quote(truncate(id, 64)))
		return
	}
	if s.Recs == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "recommendations are not configured on this server")
		return
	}
	items, err := s.Recs.Similar(r.Context(), id, limit)
	switch {
	case errors.Is(err, recommend.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no published, indexed lesson "+id)
		return
	case errors.Is(err, recommend.ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, recsBody{Items: items})
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/media"
)

var videoIDRe = regexp.MustCompile(`^v[0-9a-f]{24}$`)

// videoView is a video as the API shows it: the catalog record and its
// latest decision.
type videoView struct {
	catalog.Video
	Decision *decisionView `json:"decision"`
}

// decisionView is the latest decision on a video.
type decisionView struct {
	Outcome       string                 `json:"outcome"`
	Reason        string                 `json:"reason"`
	Actor         string                 `json:"actor"`
	Segments      json.RawMessage        `json:"segments"`
	Scores        json.RawMessage        `json:"scores,omitempty"`
	ModelID       string                 `json:"model_id,omitempty"`
	ModelSHA256   string                 `json:"model_sha256,omitempty"`
	PolicyVersion string                 `json:"policy_version,omitempty"`
	Sampler       *media.SamplerSettings `json:"sampler,omitempty"`
	DecidedAt     time.Time              `json:"decided_at"`
}

func view(v catalog.Video, d *catalog.Decision) videoView {
	out := videoView{Video: v}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Stages == nil {
		out.Stages = []catalog.Stage{}
	}
	if d != nil {
		segs := d.Segments
		if len(segs) == 0 {
			segs = json.RawMessage("[]")
		}
		out.Decision = &decisionView{
			Outcome: d.Outcome, Reason: d.Reason, Actor: d.Actor, Segments: segs, Scores: d.Scores,
			ModelID: d.ModelID, ModelSHA256: d.ModelSHA256, PolicyVersion: d.PolicyVersion,
			Sampler: d.Sampler, DecidedAt: d.CreatedAt,
		}
	}
	return out
}

// videoFor answers 404 for an unknown video.
func (s *Server) videoFor(w http.ResponseWriter, r *http.Request) (catalog.Video, bool) {
	return lookup(s, w, r, "video", videoIDRe, s.Catalog.GetVideo)
}

// lookup reads the record that the path's {id} names with get. An id not of
// idRe's form answers 404 without a lookup, as does one get does not find
// (catalog.ErrNotFound); what names the record in the message.
func lookup[T any](s *Server, w http.ResponseWriter, r *http.Request, what string, idRe *regexp.Regexp,
	get func(ctx context.Context, id string) (T, error)) (T, bool) {
	var zero T
	id := r.PathValue("id")
	if !idRe.MatchString(id) {
		writeError(w, http.StatusNotFound, "not_found", "no "+what+" "+strconv.Quote(truncate(id, 64)))
		return zero, false
	}
	v, err := get(r.Context(), id)
	if errors.Is(err, catalog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no "+what+" "+id)
		return zero, false
	}
	if err != nil {
		s.internalError(w, r, err)
		return zero, false
	}
	return v, true
}

func (s *Server) getVideo(w http.ResponseWriter, r *http.Request) {
	v, ok := s.videoFor(w, r)
	if !ok {
		return
	}
	ds, err := s.Catalog.Decisions(r.Context(), v.ID)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	var last *catalog.Decision
	if len(ds) > 0 {
		last = &ds[len(ds)-1]
	}
	writeJSON(w, http.StatusOK, view(v, last))
}

// listBody is every list answer.
type listBody[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

var knownStates = []catalog.State{
	catalog.StateProcessing, catalog.StateRejectedInvalid, catalog.StateNeedsReview,
	catalog.StateApproved, catalog.StateBlocked, catalog.StateFailed, catalog.StatePublished,
}

// parseLimit reads ?limit= (1..200, default def).
func parseLimit(r *http.Request, def int) (int, error) {
	raw := r.URL.Query().Get("limit")
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 200 {
		return 0, invalid("limit", "must be a whole number from 1 to 200, got %q", truncate(raw, 20))
	}
	return n, nil
}

// checkParams answers 400 for a query parameter not in allowed.
func checkParams(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for name := range r.URL.Query() {
		if !contains(allowed, name) {
			writeError(w, http.StatusBadRequest, "invalid_query", "unknown query parameter "+strconv.Quote(truncate(name, 40)))
			return false
		}
	}
	return true
}

func (s *Server) listVideos(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "state", "limit", "cursor") {
		return
	}
	q := r.URL.Query()
	limit, err := parseLimit(r, 50)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	state := catalog.State(q.Get("state"))
	if state != "" && !contains(statesAsStrings(), string(state)) {
		writeError(w, http.StatusBadRequest, "invalid_query", "state must be one of "+joinStates())
		return
	}
	vs, next, err := s.Catalog.ListVideos(r.Context(), catalog.ListQuery{State: state, Limit: limit, Cursor: q.Get("cursor")})
	if s.listFailed(w, r, err) {
		return
	}
	items := make([]videoView, 0, len(vs))
	for _, v := range vs {
		items = append(items, view(v, nil))
	}
	writeJSON(w, http.StatusOK, listBody[videoView]{Items: items, NextCursor: next})
}

// listFailed answers a list query's storage error: 400 for a cursor the API
// did not issue, 500 for anything else. It reports whether it answered.
func (s *Server) listFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, catalog.ErrBadCursor):
		writeError(w, http.StatusBadRequest, "invalid_query", "cursor is not one this API issued")
	default:
		s.internalError(w, r, err)
	}
	return true
}

func statesAsStrings() []string {
	out := make([]string, len(knownStates))
	for i, s := range knownStates {
		out[i] = string(s)
	}
	return out
}

func joinStates() string { return strings.Join(statesAsStrings(), ", ") }

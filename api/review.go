package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/disintegration/imaging"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/lessonflow/lessonflow/blob"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/review"
	"github.com/lessonflow/lessonflow/workflows"
)

// Review API limits.
const (
	maxReviewBody      = 16 << 10
	maxReportReason    = 1000
	maxAppealStatement = 5000
	// DefaultEvidenceTTL is how long a signed evidence URL works.
	DefaultEvidenceTTL = 10 * time.Minute
	// evidenceBlurSigma blurs a 480 px frame past recognition of detail
	// while keeping the scene's layout and colours.
	evidenceBlurSigma = 14
	// updateTimeout bounds how long a claim or decision waits for the
	// workflow (a worker must pick up the Update).
	updateTimeout = 30 * time.Second
)

var reviewItemIDRe = regexp.MustCompile(`^ri_[0-9a-f]{20}$`)

// reviewStore is the catalog's review queue; nil when the backend keeps none.
func (s *Server) reviewStore() catalog.ReviewStore {
	if s.Reviews != nil {
		return s.Reviews
	}
	rs, _ := s.Catalog.(catalog.ReviewStore)
	return rs
}

// evidenceKey is the signing key of evidence URLs: the configured one, else
// one made at start (URLs then work against this process only).
func (s *Server) evidenceKey() []byte {
	s.evidenceOnce.Do(func() {
		if len(s.EvidenceKey) >= review.MinSigningKey {
			s.evidenceSigningKey = s.EvidenceKey
			return
		}
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		s.evidenceSigningKey = k
	})
	return s.evidenceSigningKey
}

// ReviewerID names the holder of an unnamed key without revealing it: "rk_"
// and the first hex digits of the key's sha256. Leases and decisions are by
// account, so each reviewer needs a key of their own (or a named one).
func ReviewerID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "rk_" + hex.EncodeToString(sum[:6])
}

// Account is the answer of GET /v1/review/me.
type Account struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	Named bool   `json:"named"`
}

// getMe tells the reviewer page who it is signed in as, to recognise its
// own claims.
func (s *Server) getMe(w http.ResponseWriter, r *http.Request) {
	tok, _ := bearer(r)
	h := sha256.Sum256([]byte(tok))
	_, named := s.nameHashes[h]
	writeJSON(w, http.StatusOK, Account{ID: s.account(r), Role: s.keyHashes[h], Named: named})
}

// account is who made an authorized request: the account its key names
// (Server.Names), else ReviewerID of the key.
func (s *Server) account(r *http.Request) string {
	tok, _ := bearer(r)
	if name, ok := s.nameHashes[sha256.Sum256([]byte(tok))]; ok {
		return name
	}
	return ReviewerID(tok)
}

// decodeBody reads a small JSON object strictly: unknown fields and
// trailing data are errors.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReviewBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("data after the JSON object")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", maxReviewBody))
		return false
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "invalid_body", "empty body: send a JSON object")
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid_body", "body is not the expected JSON object: "+truncate(err.Error(), 160))
		return false
	}
	return true
}

// itemView signs the evidence thumbnails for the reviewer asking and hides
// blob keys.
func (s *Server) itemView(it review.Item, reviewer string, now time.Time) review.Item {
	ttl := s.EvidenceTTL
	if ttl <= 0 {
		ttl = DefaultEvidenceTTL
	}
	segs := make([]review.Segment, len(it.Evidence.Segments))
	for i, seg := range it.Evidence.Segments {
		if seg.ThumbKey != "" {
			exp := now.Add(ttl).Unix()
			if tok, err := review.SignEvidence(s.evidenceKey(), review.EvidenceClaims{Key: seg.ThumbKey, Reviewer: reviewer, Expires: exp}); err == nil {
				seg.ThumbURL = "/v1/review/evidence/" + tok
			}
			if tok, err := review.SignEvidence(s.evidenceKey(), review.EvidenceClaims{Key: seg.ThumbKey, Sharp: true, Reviewer: reviewer, Expires: exp}); err == nil {
				seg.SharpURL = "/v1/review/evidence/" + tok
			}
		}
		seg.ThumbKey = ""
		segs[i] = seg
	}
	it.Evidence.Segments = segs
	return it
}

func (s *Server) listReviewItems(w http.ResponseWriter, r *http.Request) {
	rs := s.reviewStore()
	if rs == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this catalog backend keeps no review queue")
		return
	}
	if !checkParams(w, r, "state", "limit", "cursor", "video_id") {
		return
	}
	q := r.URL.Query()
	limit, err := parseLimit(r, 50)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	state := review.State(q.Get("state"))
	if state != "" && !state.Valid() {
		writeError(w, http.StatusBadRequest, "invalid_query", "state must be one of pending, claimed, decided, escalated")
		return
	}
	vid := q.Get("video_id")
	if vid != "" && !videoIDRe.MatchString(vid) {
		writeError(w, http.StatusBadRequest, "invalid_query", "video_id is not a video id")
		return
	}
	items, next, err := rs.ListReviewItems(r.Context(), catalog.ReviewQuery{State: state, VideoID: vid, Limit: limit, Cursor: q.Get("cursor")})
	if s.listFailed(w, r, err) {
		return
	}
	reviewer, now := s.account(r), time.Now()
	for i := range items {
		items[i] = s.itemView(items[i], reviewer, now)
	}
	writeJSON(w, http.StatusOK, listBody[review.Item]{Items: items, NextCursor: next})
}

// loadItem answers 404 for an unknown id.
func (s *Server) loadItem(w http.ResponseWriter, r *http.Request) (review.Item, bool) {
	rs := s.reviewStore()
	if rs == nil {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this catalog backend keeps no review queue")
		return review.Item{}, false
	}
	return lookup(s, w, r, "review item", reviewItemIDRe, rs.GetReviewItem)
}

func (s *Server) getReviewItem(w http.ResponseWriter, r *http.Request) {
	it, ok := s.loadItem(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.itemView(it, s.account(r), time.Now()))
}

// update sends an Update to the item's workflow run and waits for its result.
func (s *Server) update(ctx context.Context, it review.Item, name string, arg, out any) error {
	ctx, cancel := context.WithTimeout(ctx, updateTimeout)
	defer cancel()
	h, err := s.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: it.WorkflowID, RunID: it.RunID, UpdateName: name, Args: []any{arg},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return err
	}
	return h.Get(ctx, out)
}

// updateError maps an Update's failure: validator rejections by type, a
// finished workflow as "already decided".
func (s *Server) updateError(w http.ResponseWriter, r *http.Request, it review.Item, err error) {
	var appErr *temporal.ApplicationError
	var notFound *serviceerror.NotFound
	var unavailable *serviceerror.Unavailable
	var timedOut *client.WorkflowUpdateServiceTimeoutOrCanceledError
	switch {
	case errors.As(err, &appErr):
		switch appErr.Type() {
		case workflows.RejectInvalid:
			writeError(w, http.StatusBadRequest, "invalid_decision", appErr.Message())
		case workflows.RejectNotHolder:
			writeError(w, http.StatusConflict, "not_lease_holder", appErr.Message())
		case workflows.RejectStale:
			writeError(w, http.StatusConflict, "stale_version", appErr.Message())
		case workflows.RejectClaimed:
			writeError(w, http.StatusConflict, "claimed", appErr.Message())
		case workflows.RejectDecided:
			writeError(w, http.StatusConflict, "already_decided", appErr.Message())
		case workflows.RejectExcluded:
			writeError(w, http.StatusConflict, "reviewer_excluded", appErr.Message())
		case workflows.RejectNotClaimed:
			writeError(w, http.StatusConflict, "not_claimed", appErr.Message())
		default:
			s.internalError(w, r, err)
		}
	case errors.As(err, &notFound), strings.Contains(err.Error(), "workflow execution already completed"):
		writeError(w, http.StatusConflict, "already_decided", "review item "+it.ID+" is closed")
	case errors.As(err, &unavailable), errors.As(err, &timedOut), errors.Is(err, context.DeadlineExceeded):
		// The workflow service or its worker did not answer in time (e.g.
		// Temporal is down). Retrying is safe: the item's version makes a
		// decision that did go through answer 409.
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the workflow service did not answer in time; retry")
	default:
		s.internalError(w, r, err)
	}
}

func (s *Server) claimReviewItem(w http.ResponseWriter, r *http.Request) {
	s.leaseUpdate(w, r, workflows.UpdateClaim)
}

func (s *Server) releaseReviewItem(w http.ResponseWriter, r *http.Request) {
	s.leaseUpdate(w, r, workflows.UpdateRelease)
}

func (s *Server) leaseUpdate(w http.ResponseWriter, r *http.Request, name string) {
	it, ok := s.loadItem(w, r)
	if !ok {
		return
	}
	if it.State == review.StateDecided {
		writeError(w, http.StatusConflict, "already_decided", "review item "+it.ID+" is decided")
		return
	}
	reviewer := s.account(r)
	var arg any = workflows.ClaimRequest{Reviewer: reviewer}
	if name == workflows.UpdateRelease {
		arg = workflows.ReleaseRequest{Reviewer: reviewer}
	}
	var out review.Item
	if err := s.update(r.Context(), it, name, arg, &out); err != nil {
		s.updateError(w, r, it, err)
		return
	}
	writeJSON(w, http.StatusOK, s.itemView(out, reviewer, time.Now()))
}

// decisionBody is the answer to a decision.
type decisionBody struct {
	Item        review.Item    `json:"item"`
	Outcome     review.Outcome `json:"outcome"`
	DecisionSeq int64          `json:"decision_seq"`
}

func (s *Server) decideReviewItem(w http.ResponseWriter, r *http.Request) {
	it, ok := s.loadItem(w, r)
	if !ok {
		return
	}
	var req review.Request
	if !decodeBody(w, r, &req) {
		return
	}
	if err := req.Validate(it.Kind); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_decision", strings.TrimPrefix(err.Error(), review.ErrInvalid.Error()+": "))
		return
	}
	if !utf8.ValidString(req.Reason) {
		writeError(w, http.StatusBadRequest, "invalid_decision", "reason is not UTF-8")
		return
	}
	if it.State == review.StateDecided {
		writeError(w, http.StatusConflict, "already_decided", "review item "+it.ID+" is decided")
		return
	}
	reviewer := s.account(r)
	var out workflows.DecideResult
	if err := s.update(r.Context(), it, workflows.UpdateDecide, workflows.DecideRequest{Reviewer: reviewer, Request: req}, &out); err != nil {
		s.updateError(w, r, it, err)
		return
	}
	writeJSON(w, http.StatusOK, decisionBody{Item: s.itemView(out.Item, reviewer, time.Now()), Outcome: out.Outcome, DecisionSeq: out.DecisionSeq})
}

// getEvidence serves one thumbnail, blurred unless the token says sharp.
// The signed token is the credential (an <img> cannot send a bearer key);
// it is only ever issued to reviewers, names one blob, and expires.
func (s *Server) getEvidence(w http.ResponseWriter, r *http.Request) {
	claims, err := review.VerifyEvidence(s.evidenceKey(), r.PathValue("token"), time.Now())
	if err != nil {
		writeError(w, http.StatusForbidden, "bad_token", strings.TrimPrefix(err.Error(), review.ErrBadToken.Error()+": ")+": ask for the item again for fresh URLs")
		return
	}
	if !strings.HasPrefix(claims.Key, "evidence/") {
		writeError(w, http.StatusForbidden, "bad_token", "not an evidence key")
		return
	}
	b, err := blob.GetBytes(r.Context(), s.Blobs, claims.Key, 16<<20)
	if errors.Is(err, blob.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "evidence is gone")
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if !claims.Sharp {
		img, _, err := image.Decode(bytes.NewReader(b))
		if err != nil {
			s.internalError(w, r, fmt.Errorf("evidence %s: %w", claims.Key, err))
			return
		}
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, imaging.Blur(img, evidenceBlurSigma), &jpeg.Options{Quality: 80}); err != nil {
			s.internalError(w, r, err)
			return
		}
		b = buf.Bytes()
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

func (s *Server) getDecisions(w http.ResponseWriter, r *http.Request) {
	v, ok := s.videoFor(w, r)
	if !ok {
		return
	}
	if !checkParams(w, r, "limit", "cursor") {
		return
	}
	limit, err := parseLimit(r, catalog.DefaultLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_query", err.Error())
		return
	}
	cursor := r.URL.Query().Get("cursor")
	pager, ok := s.Catalog.(catalog.DecisionPager)
	if !ok {
		// A backend without pages answers the whole log at once.
		if cursor != "" {
			writeError(w, http.StatusBadRequest, "invalid_query", "cursor is not one this API issued")
			return
		}
		ds, err := s.Catalog.Decisions(r.Context(), v.ID)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, listBody[catalog.Decision]{Items: ds})
		return
	}
	ds, next, err := pager.DecisionsPage(r.Context(), catalog.DecisionQuery{VideoID: v.ID, Limit: limit, Cursor: cursor})
	if s.listFailed(w, r, err) {
		return
	}
	writeJSON(w, http.StatusOK, listBody[catalog.Decision]{Items: ds, NextCursor: next})
}

// reportRequest is a user report, sent by the app.
type reportRequest struct {
	Reason   string `json:"reason"`
	Reporter string `json:"reporter"` // the app's user id, optional
}

// queuedBody answers a report or an appeal.
type queuedBody struct {
	ItemID     string `json:"item_id"`
	VideoID    string `json:"video_id"`
	WorkflowID string `json:"workflow_id"`
	ItemURL    string `json:"item_url"`
}

func checkText(field, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return invalid(field, "is required")
	case len(s) > max:
		return invalid(field, "is longer than %d bytes", max)
	case !utf8.ValidString(s):
		return invalid(field, "is not UTF-8")
	}
	return nil
}

func (s *Server) reportVideo(w http.ResponseWriter, r *http.Request) {
	v, ok := s.videoFor(w, r)
	if !ok {
		return
	}
	var req reportRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := errors.Join(checkText("reason", req.Reason, maxReportReason, true), checkText("reporter", req.Reporter, 200, false)); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_report", err.Error())
		return
	}
	// Published, or already taken offline by reports (later reports join that review).
	offline, err := s.offlineForReports(r.Context(), v)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if v.State != catalog.StatePublished && !offline {
		writeError(w, http.StatusConflict, "not_published", "only a published video can be reported; this one is "+string(v.State))
		return
	}
	rep := review.Report{Reason: strings.TrimSpace(req.Reason), Reporter: req.Reporter, ReportedAt: time.Now().UTC()}
	wid := workflows.ReviewWorkflowID(review.KindReport, v.ID, "")
	// One open report review per video: the first report starts it, later
	// ones join it (and may take the video offline, see ReportsToUnpublish).
	run, err := s.Temporal.SignalWithStartWorkflow(r.Context(), wid, workflows.SignalReport, rep, client.StartWorkflowOptions{
		ID: wid, TaskQueue: s.TaskQueue, WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	}, workflows.ReviewWorkflowName, workflows.ReviewInput{VideoID: v.ID, Kind: review.KindReport, Reason: "reported: " + rep.Reason})
	if err != nil {
		s.internalError(w, r, fmt.Errorf("report %s: %w", v.ID, err))
		return
	}
	id := review.ItemID(wid, run.GetRunID())
	writeJSON(w, http.StatusAccepted, queuedBody{ItemID: id, VideoID: v.ID, WorkflowID: wid, ItemURL: "/v1/review/items/" + id})
}

// offlineForReports reports whether reports took the video offline and no
// decision has come since.
func (s *Server) offlineForReports(ctx context.Context, v catalog.Video) (bool, error) {
	if v.State != catalog.StateNeedsReview {
		return false, nil
	}
	ds, err := s.Catalog.Decisions(ctx, v.ID)
	if err != nil {
		return false, err
	}
	for i := len(ds) - 1; i >= 0; i-- {
		switch review.Outcome(ds[i].Outcome) {
		case review.OutcomeBlockProposed, review.OutcomeEscalated:
			continue // the review is still open
		}
		return ds[i].Actor == "system:reports", nil
	}
	return false, nil
}

// appealRequest is a teacher's appeal of a block, sent by the app.
type appealRequest struct {
	TeacherID string `json:"teacher_id"`
	Statement string `json:"statement"`
}

func (s *Server) appealVideo(w http.ResponseWriter, r *http.Request) {
	v, ok := s.videoFor(w, r)
	if !ok {
		return
	}
	var req appealRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if err := errors.Join(checkText("statement", req.Statement, maxAppealStatement, true), checkText("teacher_id", req.TeacherID, 200, true)); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_appeal", err.Error())
		return
	}
	if v.TeacherID != "" && req.TeacherID != v.TeacherID {
		writeError(w, http.StatusForbidden, "not_teacher", "only the video's teacher may appeal")
		return
	}
	if v.State != catalog.StateBlocked {
		writeError(w, http.StatusConflict, "not_blocked", "only a blocked video can be appealed; this one is "+string(v.State))
		return
	}
	wid := workflows.ReviewWorkflowID(review.KindAppeal, v.ID, "")
	run, err := s.Temporal.ExecuteWorkflow(r.Context(), client.StartWorkflowOptions{
		ID: wid, TaskQueue: s.TaskQueue,
		WorkflowIDReusePolicy:    enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this the SDK hands back the running appeal as if it were new.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.ReviewWorkflowName, workflows.ReviewInput{
		VideoID: v.ID, Kind: review.KindAppeal, Reason: "appeal by the teacher", Statement: strings.TrimSpace(req.Statement),
	})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		writeError(w, http.StatusConflict, "appeal_open", "an appeal of this video is already in review")
		return
	}
	if err != nil {
		s.internalError(w, r, fmt.Errorf("appeal %s: %w", v.ID, err))
		return
	}
	id := review.ItemID(wid, run.GetRunID())
	writeJSON(w, http.StatusAccepted, queuedBody{ItemID: id, VideoID: v.ID, WorkflowID: wid, ItemURL: "/v1/review/items/" + id})
}

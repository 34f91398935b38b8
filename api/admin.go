package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"gopkg.in/yaml.v3"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/models"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recheck"
	"github.com/lessonflow/lessonflow/workflows"
)

// maxRecheckBody bounds a POST /v1/admin/rechecks body: a policy text and a
// few settings.
const maxRecheckBody = recheck.MaxPolicyBytes + 4<<10

// recheckRequest starts a re-check batch. Exactly one of Policy (a built-in
// policy name or a file path the server can read) and PolicyYAML (the text).
type recheckRequest struct {
	Policy     string          `json:"policy"`
	PolicyYAML string          `json:"policy_yaml"`
	States     []catalog.State `json:"states"`
	PageSize   int             `json:"page_size"`
	RunSize    int             `json:"run_size"`
}

// recheckView is a batch as GET /v1/admin/rechecks/{id} shows it.
type recheckView struct {
	ID            string           `json:"id"`
	State         string           `json:"state"` // running, completed, failed
	PolicyVersion string           `json:"policy_version"`
	PolicySHA256  string           `json:"policy_sha256"`
	ModelID       string           `json:"model_id"`
	States        []catalog.State  `json:"states"`
	RequestedBy   string           `json:"requested_by"`
	Error         string           `json:"error"`
	CreatedAt     *time.Time       `json:"created_at"`
	FinishedAt    *time.Time       `json:"finished_at"`
	Progress      recheck.Progress `json:"progress"`
	ResultsURL    string           `json:"results_url"`
}

// rechecks is the catalog's re-check part; nil when the backend keeps none.
func (s *Server) rechecks() catalog.RecheckStore {
	rs, _ := s.Catalog.(catalog.RecheckStore)
	return rs
}

func (s *Server) startRecheck(w http.ResponseWriter, r *http.Request) {
	if s.rechecks() == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "this catalog backend keeps no re-check batches")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRecheckBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", maxRecheckBody))
		return
	}
	var req recheckRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		msg := "body must be one JSON object"
		if err != nil {
			msg += ": " + err.Error()
		}
		writeError(w, http.StatusBadRequest, "invalid_body", msg)
		return
	}
	text, code, msg := recheckPolicyText(req)
	if code != 0 {
		writeError(w, code, "invalid_policy", msg)
		return
	}
	states, err := recheck.CheckStates(req.States)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_states", err.Error())
		return
	}
	if req.PageSize == 0 {
		req.PageSize = recheck.DefaultPageSize
	}
	if req.RunSize == 0 {
		req.RunSize = recheck.DefaultRunSize
	}
	if req.PageSize < 1 || req.PageSize > recheck.MaxPageSize {
		writeError(w, http.StatusBadRequest, "invalid_page_size", fmt.Sprintf("page_size must be 1-%d", recheck.MaxPageSize))
		return
	}
	if req.RunSize < req.PageSize || req.RunSize > recheck.MaxRunSize {
		writeError(w, http.StatusBadRequest, "invalid_run_size", fmt.Sprintf("run_size must be from page_size (%d) to %d", req.PageSize, recheck.MaxRunSize))
		return
	}
	p, err := recheck.ParsePolicy(text)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_policy", err.Error())
		return
	}
	if err := checkPolicyModel(p); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_policy", err.Error())
		return
	}
	// The policy is stored by content before the workflow starts, so a crash
	// in between leaves at most an object that the next request re-uses.
	ref, _, err := recheck.StorePolicy(r.Context(), s.Blobs, text)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	id := recheck.NewBatchID()
	_, err = s.Temporal.ExecuteWorkflow(r.Context(), client.StartWorkflowOptions{
		ID: recheck.WorkflowID(id), TaskQueue: s.TaskQueue,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, recheck.WorkflowName, recheck.Input{
		BatchID: id, Policy: ref, States: states, RequestedBy: s.account(r),
		PageSize: req.PageSize, RunSize: req.RunSize,
	})
	if err != nil {
		s.Logger.Error("start re-check", "batch", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "temporal_unavailable", "could not start the re-check: "+err.Error())
		return
	}
	s.Logger.Info("re-check started", "batch", id, "policy", ref.Version, "by", s.account(r))
	writeJSON(w, http.StatusAccepted, map[string]any{
		"id": id, "state": catalog.RecheckRunning, "policy_version": ref.Version, "policy_sha256": ref.SHA256,
		"states": states, "status_url": "/v1/admin/rechecks/" + id,
	})
}

// recheckPolicyText resolves the request's policy to its text, or says why
// not (an HTTP status and message).
func recheckPolicyText(req recheckRequest) ([]byte, int, string) {
	switch {
	case req.Policy != "" && req.PolicyYAML != "":
		return nil, http.StatusBadRequest, "give policy (a name or server path) or policy_yaml, not both"
	case req.PolicyYAML != "":
		return []byte(req.PolicyYAML), 0, ""
	case req.Policy == "":
		return nil, http.StatusBadRequest, "policy (a built-in name or a server path) or policy_yaml is required"
	}
	return policySource(req.Policy)
}

// policySource reads a built-in policy (as YAML of its settings) or a YAML
// file on the server (as written, comments and all). Only .yaml and .yml
// paths are read, so the answer can never quote another file.
func policySource(nameOrPath string) ([]byte, int, string) {
	isPath := strings.ContainsAny(nameOrPath, "/\\")
	ext := strings.ToLower(filepath.Ext(nameOrPath))
	if isPath && ext != ".yaml" && ext != ".yml" {
		return nil, http.StatusBadRequest, "policy path must name a .yaml or .yml file"
	}
	p, err := moderation.LoadPolicy(nameOrPath)
	if err != nil {
		return nil, http.StatusBadRequest, err.Error()
	}
	if isPath || ext != "" {
		text, err := os.ReadFile(nameOrPath)
		if err != nil {
			return nil, http.StatusBadRequest, "read policy: " + err.Error()
		}
		return text, 0, ""
	}
	text, err := yaml.Marshal(p)
	if err != nil {
		return nil, http.StatusInternalServerError, "encode policy: " + err.Error()
	}
	return text, 0, ""
}

// checkPolicyModel refuses a policy for a model we do not ship, or whose
// labels are not that model's.
func checkPolicyModel(p *moderation.Policy) error {
	m, err := models.LoadManifest(p.Model)
	if err != nil {
		return fmt.Errorf("policy %s: model %q: %v", p.Version, p.Model, err)
	}
	if !slices.Equal(m.Labels, p.Labels) {
		return fmt.Errorf("policy %s: labels %v are not model %s's %v", p.Version, p.Labels, p.Model, m.Labels)
	}
	return nil
}

func (s *Server) getRecheck(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rs := s.rechecks()
	if !recheck.ValidBatchID(id) || rs == nil {
		writeError(w, http.StatusNotFound, "not_found", "no re-check "+strconv.Quote(truncate(id, 64)))
		return
	}
	v, found, err := s.recheckStatus(r.Context(), rs, id)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "not_found", "no re-check "+id)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// recheckStatus merges the batch record, the workflow's progress query and
// the workflow's status. The record is missing until the workflow's first
// activity ran (or if the batch failed before it); the workflow may be gone
// once its history is past retention.
func (s *Server) recheckStatus(ctx context.Context, rs catalog.RecheckStore, id string) (recheckView, bool, error) {
	v := recheckView{ID: id, State: catalog.RecheckRunning, States: []catalog.State{}, ResultsURL: "/v1/admin/rechecks/" + id + "/results"}
	b, err := rs.GetRecheckBatch(ctx, id)
	found := err == nil
	switch {
	case err == nil:
		v.State, v.PolicyVersion, v.PolicySHA256, v.ModelID = b.State, b.PolicyVersion, b.PolicySHA256, b.ModelID
		v.States, v.RequestedBy, v.Error, v.FinishedAt = b.States, b.RequestedBy, b.Error, b.FinishedAt
		v.CreatedAt = &b.CreatedAt
	case !errors.Is(err, catalog.ErrNotFound):
		return v, false, err
	}
	wfID := recheck.WorkflowID(id)
	desc, err := s.Temporal.DescribeWorkflowExecution(ctx, wfID, "")
	var notFound *serviceerror.NotFound
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		s.Logger.Warn("describe re-check workflow", "batch", id, "error", err)
	default:
		found = true
		switch st := desc.GetWorkflowExecutionInfo().GetStatus(); st {
		case enums.WORKFLOW_EXECUTION_STATUS_RUNNING, enums.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW,
			enums.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		default:
			if v.State == catalog.RecheckRunning {
				// Ended without recording it: terminated, timed out, cancelled.
				v.State = catalog.RecheckFailed
				if v.Error == "" {
					v.Error = "the batch workflow ended: " + strings.ToLower(strings.TrimPrefix(st.String(), "WorkflowExecutionStatus"))
				}
			}
		}
		if v.CreatedAt == nil {
			t := desc.GetWorkflowExecutionInfo().GetStartTime().AsTime().UTC()
			v.CreatedAt = &t
		}
	}
	if !found {
		return v, false, nil
	}
	q, err := s.Temporal.QueryWorkflow(ctx, wfID, "", recheck.QueryProgress)
	if err == nil {
		err = q.Get(&v.Progress)
	}
	if err != nil {
		// History gone or the workers down: the recorded counts still hold.
		v.Progress = recheck.Progress{BatchID: id, Done: v.State != catalog.RecheckRunning, Failed: v.Error}
		if c, cerr := rs.RecheckCounts(ctx, id); cerr == nil {
			v.Progress.Processed, v.Progress.Changed, v.Progress.Errors, v.Progress.SentToReview = c.Processed, c.Changed, c.Errors, c.SentToReview
		}
	}
	return v, true, nil
}

func (s *Server) listRecheckResults(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rs := s.rechecks()
	if !recheck.ValidBatchID(id) || rs == nil {
		writeError(w, http.StatusNotFound, "not_found", "no re-check "+strconv.Quote(truncate(id, 64)))
		return
	}
	if !checkParams(w, r, "changed", "limit", "cursor") {
		return
	}
	q := catalog.RecheckResultQuery{BatchID: id, Cursor: r.URL.Query().Get("cursor")}
	switch c := r.URL.Query().Get("changed"); c {
	case "", "false":
	case "true":
		q.ChangedOnly = true
	default:
		writeError(w, http.StatusBadRequest, "invalid_changed", "changed must be true or false")
		return
	}
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > catalog.MaxLimit {
			writeError(w, http.StatusBadRequest, "invalid_limit", fmt.Sprintf("limit must be 1-%d", catalog.MaxLimit))
			return
		}
		q.Limit = n
	}
	items, next, err := rs.RecheckResults(r.Context(), q)
	switch {
	case errors.Is(err, catalog.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no re-check "+id+" (or it has not recorded anything yet)")
		return
	case s.listFailed(w, r, err):
		return
	}
	for i := range items {
		if len(items[i].Segments) == 0 {
			items[i].Segments = json.RawMessage("[]")
		}
		if len(items[i].Scores) == 0 {
			items[i].Scores = json.RawMessage("{}")
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

// retryVideo runs the pipeline again for a video that failed, typically
// after the cause was fixed (a missing watermark key, an outage that
// outlasted the retries). Every stage is idempotent, so the new run
// re-applies a decision already made, keeps the watermark id and upserts the
// vector. Only a failed pipeline run may be followed by a new one
// (ALLOW_DUPLICATE_FAILED_ONLY); the state goes to processing first, so the
// new run's own outcome is never overwritten, and back to failed if the run
// cannot start.
//
// The failed run records the failure in the catalog before it closes, and
// closing needs a worker (a workflow task, which waits out its timeout when
// the worker died in between). A retry in that gap must not take the open
// run for the new one (it would fail again and leave the video processing
// for good), so it waits up to retryCloseWait for the run to close and then
// starts with conflict policy FAIL.
func (s *Server) retryVideo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	v, err := s.Catalog.GetVideo(ctx, id)
	if errors.Is(err, catalog.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no video "+id)
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if v.State != catalog.StateFailed {
		writeError(w, http.StatusConflict, "not_failed", fmt.Sprintf("video %s is %s: only a failed video can be retried", id, v.State))
		return
	}
	switch err := s.awaitRunClosed(ctx, workflows.WorkflowID(id), retryCloseWait); {
	case errors.Is(err, errRunOpen):
		writeError(w, http.StatusConflict, "still_running", fmt.Sprintf("the last pipeline run of %s has not closed within %s; retry later", id, retryCloseWait))
		return
	case err != nil:
		s.Logger.Error("retry pipeline: describe the last run", "video", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the workflow service is unavailable; retry")
		return
	}
	if err := s.Catalog.SetState(ctx, id, catalog.StateProcessing, ""); err != nil {
		s.internalError(w, r, err)
		return
	}
	err = s.startPipelineRun(ctx, v, enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY, enums.WORKFLOW_ID_CONFLICT_POLICY_FAIL)
	if err != nil {
		restore := context.WithoutCancel(ctx)
		if serr := s.Catalog.SetState(restore, id, catalog.StateFailed, v.Error); serr != nil {
			s.Logger.Error("restore failed state", "video", id, "error", serr)
		}
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) { // the last run did not fail, or another retry's run is open
			writeError(w, http.StatusConflict, "not_retryable", "the pipeline of "+id+" did not fail, or a retry is already running")
			return
		}
		s.Logger.Error("retry pipeline", "video", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the workflow service is unavailable; retry")
		return
	}
	s.Logger.Info("pipeline retried", "video", id, "previous_error", v.Error)
	body := createdBody{ID: id, StatusURL: "/v1/videos/" + id, State: string(catalog.StateProcessing)}
	w.Header().Set("Location", body.StatusURL)
	writeJSON(w, http.StatusAccepted, body)
}

// retryCloseWait bounds how long a retry waits for the failed run to close:
// a workflow task timeout (10 s) after a worker's death, with room to spare.
const retryCloseWait = 30 * time.Second

var errRunOpen = errors.New("the workflow run is still open")

// awaitRunClosed polls the latest run of workflow id until it is closed (or
// there is none), at most wait.
func (s *Server) awaitRunClosed(ctx context.Context, id string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		d, err := s.Temporal.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		switch {
		case errors.As(err, &nf):
			return nil
		case err != nil:
			return err
		case d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING:
			return nil
		case time.Now().After(deadline):
			return errRunOpen
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/review"
	"github.com/lessonflow/lessonflow/webhook"
	"github.com/lessonflow/lessonflow/workflows"
)

// audienceStore reports a fixed audience: the one input of the review
// workflow that only the events API can produce otherwise.
type audienceStore struct {
	catalog.ReviewStore
	n int
}

func (s audienceStore) Audience(context.Context, string) (int, error) { return s.n, nil }

// hookRecorder is a webhook receiver that verifies signatures and keeps
// each delivery's id and event.
type hookRecorder struct {
	mu     sync.Mutex
	events []webhook.Event
	ids    []string
}

func (h *hookRecorder) got() ([]webhook.Event, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhook.Event(nil), h.events...), append([]string(nil), h.ids...)
}

// reviewDeps are the review workflow's real dependencies: a SQLite catalog
// with a video in needs_review whose model decision flagged one segment, a
// stored frame for its thumbnail, file blobs, a sqlite-vec store and a
// signed webhook to a local receiver.
func reviewDeps(t *testing.T, settings activities.ReviewSettings, audience int) (*activities.Activities, *hookRecorder, string) {
	t.Helper()
	ctx := context.Background()
	cat, blobs, vecs := testStores(t, "test", 4)
	secret := []byte("review-test-secret")
	rec := &hookRecorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header.Get("X-LessonFlow-Signature"), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.events, rec.ids = append(rec.events, ev), append(rec.ids, r.Header.Get("X-LessonFlow-Delivery"))
		rec.mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	v, _, err := cat.CreateVideo(ctx, catalog.Video{ID: "vreview01", SHA256: "00", Title: "Fractions", TeacherID: "t1",
		Language: "en", Level: 1, State: catalog.StateNeedsReview, BlobKey: "uploads/vreview01"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.SetState(ctx, v.ID, catalog.StateNeedsReview, "model asked for review"); err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 32, 18))
	for i := range img.Pix {
		img.Pix[i] = 200
	}
	img.Set(3, 3, color.Black)
	if err := jpeg.Encode(&jpg, img, nil); err != nil {
		t.Fatal(err)
	}
	frameKey := "frames/" + v.ID + "/coarse/000003.jpg"
	if _, err := blobs.Put(ctx, frameKey, bytes.NewReader(jpg.Bytes())); err != nil {
		t.Fatal(err)
	}
	manifest, _ := json.Marshal(map[string]any{"video_id": v.ID, "frames": []map[string]any{
		{"index": 3, "pts_ms": 3000, "key": frameKey, "width": 32, "height": 18}}})
	if _, err := blobs.Put(ctx, "frames/"+v.ID+"/coarse.json", bytes.NewReader(manifest)); err != nil {
		t.Fatal(err)
	}
	segs, _ := json.Marshal([]moderation.Segment{{Signal: "drawing", Action: "review", StartMS: 2000, EndMS: 4000, MaxScore: 0.8, PeakScore: 0.7}})
	if _, _, err := cat.AppendDecision(ctx, catalog.Decision{VideoID: v.ID, Key: "model:" + v.ID, Actor: "model:test",
		Outcome: string(catalog.StateNeedsReview), Reason: "drawing 0.70", ModelID: "test", PolicyVersion: "test/1", Segments: segs}); err != nil {
		t.Fatal(err)
	}
	a := &activities.Activities{Catalog: cat, Blobs: blobs, Vectors: vecs, Review: settings,
		Webhook: &webhook.Sender{URL: srv.URL, Secret: secret}}
	if audience > 0 {
		a.Reviews = audienceStore{ReviewStore: cat, n: audience}
	}
	return a, rec, v.ID
}

func reviewEnv(a *activities.Activities) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.Review, workflow.RegisterOptions{Name: workflows.ReviewWorkflowName})
	env.RegisterActivity(a)
	return env
}

// updateResult is how one Update ended: rejected by the validator (with
// its error type), or completed with a value or an error.
type updateResult struct {
	rejected, completed bool
	errType             string
	value               any
	err                 error
}

// update sends an Update at a moment of the workflow's (fast-forwarded)
// clock and records how it ended.
func update(env *testsuite.TestWorkflowEnvironment, at time.Duration, name string, arg any) *updateResult {
	r := &updateResult{}
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnReject: func(err error) {
				r.rejected, r.err = true, err
				var appErr *temporal.ApplicationError
				if errors.As(err, &appErr) {
					r.errType = appErr.Type()
				}
			},
			OnAccept:   func() {},
			OnComplete: func(v any, err error) { r.completed, r.value, r.err = true, v, err },
		}, arg)
	}, at)
	return r
}

func decide(reviewer, decision string, version int64) workflows.DecideRequest {
	req := review.Request{Decision: decision, Version: version}
	if decision == "block" {
		req.ReasonCode, req.Reason = "off_topic", "not a lesson"
	}
	return workflows.DecideRequest{Reviewer: reviewer, Request: req}
}

// at reads the item's projection at a moment of the workflow's clock.
func at(env *testsuite.TestWorkflowEnvironment, d time.Duration, a *activities.Activities, videoID string, into *review.Item) {
	env.RegisterDelayedCallback(func() {
		items, _, err := a.Catalog.(catalog.ReviewStore).ListReviewItems(context.Background(), catalog.ReviewQuery{VideoID: videoID, Limit: 10})
		if err == nil && len(items) == 1 {
			*into = items[0]
		}
	}, d)
}

func TestReviewWorkflowLeaseExpiryAndRejections(t *testing.T) {
	a, hooks, vid := reviewDeps(t, activities.ReviewSettings{Lease: 15 * time.Minute, Deadline: 24 * time.Hour, SecondOpinionAudience: 1000}, 0)
	env := reviewEnv(a)
	var claimed, requeued review.Item
	claim := update(env, time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "alice"})
	at(env, time.Minute+time.Second, a, vid, &claimed)
	intruder := update(env, 2*time.Minute, workflows.UpdateDecide, decide("bob", "approve", 0))
	stale := update(env, 3*time.Minute, workflows.UpdateDecide, decide("alice", "approve", 1))
	// The lease (15 m from minute 1) expires at minute 16: the timer puts
	// the item back in the queue, and alice's late decision is refused.
	at(env, 17*time.Minute, a, vid, &requeued)
	late := update(env, 18*time.Minute, workflows.UpdateDecide, decide("alice", "approve", 0))
	reclaim := update(env, 19*time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "bob"})
	approve := update(env, 20*time.Minute, workflows.UpdateDecide, decide("bob", "approve", 0))
	twice := update(env, 20*time.Minute, workflows.UpdateDecide, decide("bob", "approve", 0))

	env.ExecuteWorkflow(workflows.ReviewWorkflowName, workflows.ReviewInput{VideoID: vid, Kind: review.KindModel, Reason: "drawing 0.70"})
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow: completed %v, error %v", env.IsWorkflowCompleted(), env.GetWorkflowError())
	}
	var res workflows.ReviewResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != review.OutcomeApproved || res.VideoState != string(catalog.StateApproved) {
		t.Fatalf("result %+v", res)
	}
	if !claim.completed || claim.err != nil {
		t.Fatalf("claim: %+v", claim)
	}
	if claimed.State != review.StateClaimed || claimed.ClaimedBy != "alice" || claimed.Version != 2 || claimed.LeaseExpiresAt == nil {
		t.Fatalf("after claim, projection %+v", claimed)
	}
	if len(claimed.Evidence.Segments) != 1 || claimed.Evidence.Segments[0].ThumbKey == "" || claimed.Evidence.PolicyVersion != "test/1" {
		t.Fatalf("evidence %+v", claimed.Evidence)
	}
	for name, r := range map[string]*updateResult{"non-holder": intruder, "after lease expiry": late} {
		if !r.rejected || r.errType != workflows.RejectNotHolder {
			t.Errorf("decision by %s: %+v, want rejected %s", name, r, workflows.RejectNotHolder)
		}
	}
	if !stale.rejected || stale.errType != workflows.RejectStale {
		t.Errorf("stale version: %+v", stale)
	}
	if requeued.State != review.StatePending || requeued.ClaimedBy != "" || requeued.LeaseExpiresAt != nil {
		t.Errorf("after lease expiry, projection %+v", requeued)
	}
	if !reclaim.completed || reclaim.err != nil || !approve.completed || approve.err != nil {
		t.Fatalf("reclaim %+v approve %+v", reclaim, approve)
	}
	if !twice.rejected || twice.errType != workflows.RejectDecided {
		t.Errorf("second decision accepted: %+v", twice)
	}
	ctx := context.Background()
	v, _ := a.Catalog.GetVideo(ctx, vid)
	ds, _ := a.Catalog.Decisions(ctx, vid)
	if v.State != catalog.StateApproved || len(ds) != 2 || ds[1].Actor != "reviewer:bob" || ds[1].Outcome != string(review.OutcomeApproved) {
		t.Fatalf("video %s, decisions %+v", v.State, ds)
	}
	events, ids := hooks.got()
	if len(events) != 1 || events[0].Type != webhook.TypeDecision || events[0].Outcome != string(review.OutcomeApproved) ||
		ids[0] != events[0].ID || events[0].DecisionSeq != ds[1].Seq {
		t.Fatalf("webhook events %+v ids %v", events, ids)
	}
}

func TestReviewWorkflowDeadlineEscalates(t *testing.T) {
	a, hooks, vid := reviewDeps(t, activities.ReviewSettings{Lease: 15 * time.Minute, Deadline: time.Hour, SecondOpinionAudience: 1000}, 0)
	env := reviewEnv(a)
	var before, after review.Item
	at(env, 59*time.Minute, a, vid, &before)
	at(env, 61*time.Minute, a, vid, &after)
	var midState catalog.State
	env.RegisterDelayedCallback(func() {
		v, _ := a.Catalog.GetVideo(context.Background(), vid)
		midState = v.State
	}, 62*time.Minute)
	update(env, 63*time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "alice"})
	block := update(env, 64*time.Minute, workflows.UpdateDecide, decide("alice", "block", 0))

	env.ExecuteWorkflow(workflows.ReviewWorkflowName, workflows.ReviewInput{VideoID: vid, Kind: review.KindModel, Reason: "drawing 0.70"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if before.State != review.StatePending || before.Escalated {
		t.Fatalf("before the deadline: %+v", before)
	}
	if after.State != review.StateEscalated || !after.Escalated || after.Priority < before.Priority+99 {
		t.Fatalf("after the deadline: state %s escalated %v priority %.1f (before %.1f)", after.State, after.Escalated, after.Priority, before.Priority)
	}
	if midState != catalog.StateNeedsReview {
		t.Fatalf("video while escalated: %s", midState)
	}
	if !block.completed || block.err != nil {
		t.Fatalf("block: %+v", block)
	}
	v, _ := a.Catalog.GetVideo(context.Background(), vid)
	if v.State != catalog.StateBlocked {
		t.Fatalf("video %s", v.State)
	}
	events, _ := hooks.got()
	if len(events) != 2 || events[0].Type != webhook.TypeEscalation || events[0].Actor != "system:deadline" ||
		events[1].Type != webhook.TypeDecision || events[1].Outcome != string(review.OutcomeBlocked) || events[0].ID == events[1].ID {
		t.Fatalf("webhook events %+v", events)
	}
}

func TestReviewWorkflowSecondOpinion(t *testing.T) {
	a, hooks, vid := reviewDeps(t, activities.ReviewSettings{Lease: 15 * time.Minute, Deadline: 24 * time.Hour, SecondOpinionAudience: 1000}, 5000)
	env := reviewEnv(a)
	update(env, time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "alice"})
	first := update(env, 2*time.Minute, workflows.UpdateDecide, decide("alice", "block", 0))
	var proposed review.Item
	at(env, 3*time.Minute, a, vid, &proposed)
	var stillNeedsReview catalog.State
	env.RegisterDelayedCallback(func() {
		v, _ := a.Catalog.GetVideo(context.Background(), vid)
		stillNeedsReview = v.State
	}, 3*time.Minute)
	again := update(env, 4*time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "alice"})
	update(env, 5*time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "bob"})
	second := update(env, 6*time.Minute, workflows.UpdateDecide, decide("bob", "block", 0))

	env.ExecuteWorkflow(workflows.ReviewWorkflowName, workflows.ReviewInput{VideoID: vid, Kind: review.KindModel, Reason: "drawing 0.70"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res workflows.ReviewResult
	_ = env.GetWorkflowResult(&res)
	if res.Outcome != review.OutcomeBlocked {
		t.Fatalf("result %+v", res)
	}
	fr, ok := first.value.(workflows.DecideResult)
	if !first.completed || first.err != nil || !ok || fr.Outcome != review.OutcomeBlockProposed {
		t.Fatalf("first block with audience 5000: %+v", first)
	}
	if proposed.State != review.StatePending || !proposed.SecondOpinion || len(proposed.Opinions) != 1 || stillNeedsReview != catalog.StateNeedsReview {
		t.Fatalf("after the first block: item %+v, video %s", proposed, stillNeedsReview)
	}
	if !again.rejected || again.errType != workflows.RejectExcluded {
		t.Fatalf("first reviewer claiming again: %+v", again)
	}
	if !second.completed || second.err != nil {
		t.Fatalf("second block: %+v", second)
	}
	ds, _ := a.Catalog.Decisions(context.Background(), vid)
	v, _ := a.Catalog.GetVideo(context.Background(), vid)
	if v.State != catalog.StateBlocked || len(ds) != 3 || ds[1].Actor != "reviewer:alice" || ds[2].Actor != "reviewer:bob" ||
		ds[2].Outcome != string(review.OutcomeBlocked) {
		t.Fatalf("video %s decisions %+v", v.State, ds)
	}
	if events, _ := hooks.got(); len(events) != 2 {
		t.Fatalf("webhook events %+v", events)
	}
}

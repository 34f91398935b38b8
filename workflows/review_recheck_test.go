package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/recheck"
	"github.com/lessonflow/lessonflow/review"
	"github.com/lessonflow/lessonflow/workflows"
)

// TestReviewRecheckItemShowsTheBatchEvidence: a recheck item's evidence is
// its batch's verdict (segments, policy, model) with thumbnails from the
// frames the batch sampled again, not the video's old model decision; and
// while it is open, OpenRecheckReview names it so another batch does not
// queue the video twice.
func TestReviewRecheckItemShowsTheBatchEvidence(t *testing.T) {
	a, _, vid := reviewDeps(t, activities.ReviewSettings{Lease: 15 * time.Minute, Deadline: 24 * time.Hour}, 0)
	ctx := context.Background()
	cat := a.Catalog.(*catalog.SQLite)
	const batch = "rc0123456789abcdef0123"
	if err := cat.SetState(ctx, vid, catalog.StatePublished, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cat.CreateRecheckBatch(ctx, catalog.RecheckBatch{ID: batch, PolicyVersion: "drawing/2", PolicySHA256: "ab",
		PolicyKey: "rechecks/policies/ab.yaml", ModelID: "test2", States: []catalog.State{catalog.StatePublished}}); err != nil {
		t.Fatal(err)
	}
	segs, _ := json.Marshal([]moderation.Segment{{Signal: "drawing", Action: "block", StartMS: 7200, EndMS: 9800, MaxScore: 0.9, PeakScore: 0.85}})
	if _, _, err := cat.RecordRecheckResult(ctx, catalog.RecheckResult{BatchID: batch, VideoID: vid, VideoState: catalog.StatePublished,
		OldOutcome: "approved", NewOutcome: "blocked", NewReason: "drawing 0.85", ModelID: "test2", PolicyVersion: "drawing/2",
		Changed: true, Frames: catalog.FramesResampled, Segments: segs}); err != nil {
		t.Fatal(err)
	}
	// The batch's dense frame at 8.5 s (a distinct image) and its manifest.
	shadowFrame := []byte("\xff\xd8 not the stored frame \xff\xd9")
	key := recheck.ShadowPrefix(batch, vid) + "dense/000017.jpg"
	if _, err := a.Blobs.Put(ctx, key, bytes.NewReader(shadowFrame)); err != nil {
		t.Fatal(err)
	}
	m, _ := json.Marshal(map[string]any{"video_id": vid, "dense": true, "frames": []map[string]any{{"index": 17, "pts_ms": 8500, "key": key}}})
	if _, err := a.Blobs.Put(ctx, recheck.ShadowPrefix(batch, vid)+"dense.json", bytes.NewReader(m)); err != nil {
		t.Fatal(err)
	}

	env := reviewEnv(a)
	var item review.Item
	at(env, time.Minute, a, vid, &item)
	var openWhilePending, openAfter string
	env.RegisterDelayedCallback(func() { openWhilePending, _ = a.OpenRecheckReview(ctx, vid) }, time.Minute)
	update(env, 2*time.Minute, workflows.UpdateClaim, workflows.ClaimRequest{Reviewer: "alice"})
	update(env, 3*time.Minute, workflows.UpdateDecide, decide("alice", "approve", 0))
	env.ExecuteWorkflow(workflows.ReviewWorkflowName, workflows.ReviewInput{VideoID: vid, Kind: review.KindRecheck,
		Reason: "re-check: blocked", Diff: "drawing 7.2-9.8 s", BatchID: batch})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	openAfter, _ = a.OpenRecheckReview(ctx, vid)

	ev := item.Evidence
	if item.Kind != review.KindRecheck || ev.PolicyVersion != "drawing/2" || ev.ModelID != "test2" || len(ev.Segments) != 1 {
		t.Fatalf("recheck item evidence %+v", item)
	}
	s := ev.Segments[0]
	if s.Signal != "drawing" || s.StartMS != 7200 || s.ThumbAtMS != 8500 || s.ThumbKey == "" {
		t.Fatalf("segment %+v: want the batch's drawing segment with its re-sampled frame", s)
	}
	rc, err := a.Blobs.Get(ctx, s.ThumbKey)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, shadowFrame) {
		t.Fatalf("thumbnail is not the batch's frame: %q", got)
	}
	if openWhilePending != item.ID || openAfter != "" {
		t.Fatalf("open recheck review: %q while pending (item %s), %q after the decision", openWhilePending, item.ID, openAfter)
	}
}

// TestRecheckDoesNotQueueAVideoTwice: a changed verdict for a video that
// another batch's review already holds starts no second review; the
// batch's result names the open item.
func TestRecheckDoesNotQueueAVideoTwice(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.Recheck, workflow.RegisterOptions{Name: workflows.RecheckWorkflowName})
	started := 0
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.ReviewInput) (workflows.ReviewResult, error) {
		started++
		return workflows.ReviewResult{}, nil
	}, workflow.RegisterOptions{Name: workflows.ReviewWorkflowName})
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.OnActivity(a.BeginRecheck, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.ListRecheckPage, mock.Anything, mock.Anything).Return(activities.RecheckPage{VideoIDs: []string{"v1", "v2"}}, nil).Once()
	env.OnActivity(a.RecheckVideo, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.RecheckVideoInput) (activities.RecheckVideoResult, error) {
			return activities.RecheckVideoResult{VideoID: in.VideoID, Recorded: true, Changed: true, NeedsReview: true, Reason: "re-check: blocked"}, nil
		})
	env.OnActivity(a.OpenRecheckReview, mock.Anything, "v1").Return("ri_other_batch", nil).Once()
	env.OnActivity(a.OpenRecheckReview, mock.Anything, "v2").Return("", nil).Once()
	env.OnActivity(a.RecordRecheckReview, mock.Anything, activities.RecheckReviewInput{BatchID: "rc0123456789abcdef0123", VideoID: "v1", ItemID: "ri_other_batch"}).
		Return(nil).Once()
	env.OnActivity(a.RecordRecheckReview, mock.Anything, mock.MatchedBy(func(in activities.RecheckReviewInput) bool {
		return in.VideoID == "v2" && in.ItemID != "ri_other_batch"
	})).Return(nil).Once()
	env.OnActivity(a.RecheckCounts, mock.Anything, mock.Anything).Return(catalog.RecheckCounts{Processed: 2, Changed: 2, SentToReview: 2}, nil)
	env.OnActivity(a.FinishRecheck, mock.Anything, mock.Anything).Return(nil).Once()

	in := recheckInput(catalog.StatePublished)
	in.PageSize, in.RunSize = 2, 10
	env.ExecuteWorkflow(workflows.RecheckWorkflowName, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if started != 1 {
		t.Fatalf("%d reviews started, want 1 (v2 only)", started)
	}
	env.AssertExpectations(t)
}

package workflows_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recheck"
	"github.com/lessonflow/lessonflow/review"
	"github.com/lessonflow/lessonflow/workflows"
)

// recheckEnv runs the batch workflow with its activities mocked: these
// tests are about the orchestration (paging, continue-as-new, review
// hand-off, failures); the integration test runs the real thing.
func recheckEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *activities.Activities, *[]string) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.Recheck, workflow.RegisterOptions{Name: workflows.RecheckWorkflowName})
	var mu sync.Mutex
	var reviews []string
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.ReviewInput) (workflows.ReviewResult, error) {
		mu.Lock()
		reviews = append(reviews, workflow.GetInfo(ctx).WorkflowExecution.ID+" "+string(in.Kind)+" "+in.Reason)
		mu.Unlock()
		return workflows.ReviewResult{}, nil
	}, workflow.RegisterOptions{Name: workflows.ReviewWorkflowName})
	a := &activities.Activities{}
	env.RegisterActivity(a)
	env.OnActivity(a.OpenRecheckReview, mock.Anything, mock.Anything).Return("", nil).Maybe()
	return env, a, &reviews
}

func recheckInput(states ...catalog.State) workflows.RecheckInput {
	return workflows.RecheckInput{BatchID: "rc0123456789abcdef0123", Policy: recheck.PolicyRef{Key: "k", SHA256: "s", Version: "p/1"},
		States: states, PageSize: 1, RunSize: 1}
}

func TestRecheckContinuesAsNewAndSendsChangesToReview(t *testing.T) {
	env, a, reviews := recheckEnv(t)
	env.OnActivity(a.BeginRecheck, mock.Anything, mock.Anything).Return(nil).Once()
	env.OnActivity(a.ListRecheckPage, mock.Anything, activities.RecheckPageInput{State: catalog.StatePublished, Limit: 1}).
		Return(activities.RecheckPage{VideoIDs: []string{"v1"}, Next: "c1"}, nil).Once()
	env.OnActivity(a.RecheckVideo, mock.Anything, mock.Anything).
		Return(activities.RecheckVideoResult{VideoID: "v1", Recorded: true, Changed: true, NeedsReview: true, Reason: "re-check: blocked"}, nil).Once()
	env.OnActivity(a.RecordRecheckReview, mock.Anything, mock.MatchedBy(func(in activities.RecheckReviewInput) bool {
		// The item id derives from the review child's workflow and run ids.
		return in.VideoID == "v1" && len(in.ItemID) == len(review.ItemID("w", "r"))
	})).Return(nil).Once()
	env.OnActivity(a.RecheckCounts, mock.Anything, "rc0123456789abcdef0123").
		Return(catalog.RecheckCounts{Processed: 1, Changed: 1, SentToReview: 1}, nil).Once()

	env.ExecuteWorkflow(workflows.RecheckWorkflowName, recheckInput(catalog.StatePublished, catalog.StateBlocked))
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new after one video", err)
	}
	var next workflows.RecheckInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	p := next.Progress
	if p.Runs != 1 || p.Cursor != "c1" || p.StateIndex != 0 || p.Processed != 1 || p.SentToReview != 1 || p.Done {
		t.Fatalf("carried progress %+v", p)
	}
	if len(*reviews) != 1 || (*reviews)[0] != "review-recheck-v1-rc0123456789abcdef0123 recheck re-check: blocked" {
		t.Fatalf("reviews started: %q", *reviews)
	}
	env.AssertExpectations(t)
}

func TestRecheckSecondRunFinishes(t *testing.T) {
	env, a, reviews := recheckEnv(t)
	// A continued run: no BeginRecheck again. v2 fails after its retries and
	// is skipped; v3 is unchanged; the blocked state has no videos.
	env.OnActivity(a.ListRecheckPage, mock.Anything, activities.RecheckPageInput{State: catalog.StatePublished, Cursor: "c1", Limit: 2}).
		Return(activities.RecheckPage{VideoIDs: []string{"v2", "v3"}}, nil).Once()
	env.OnActivity(a.ListRecheckPage, mock.Anything, activities.RecheckPageInput{State: catalog.StateBlocked, Limit: 2}).
		Return(activities.RecheckPage{}, nil).Once()
	env.OnActivity(a.RecheckVideo, mock.Anything, mock.MatchedBy(func(in activities.RecheckVideoInput) bool { return in.VideoID == "v2" })).
		Return(activities.RecheckVideoResult{}, errors.New("ffmpeg crashed"))
	env.OnActivity(a.RecheckVideo, mock.Anything, mock.MatchedBy(func(in activities.RecheckVideoInput) bool { return in.VideoID == "v3" })).
		Return(activities.RecheckVideoResult{VideoID: "v3", Recorded: true}, nil).Once()
	env.OnActivity(a.RecheckCounts, mock.Anything, mock.Anything).Return(catalog.RecheckCounts{Processed: 2, Changed: 1, SentToReview: 1}, nil)
	env.OnActivity(a.FinishRecheck, mock.Anything, activities.FinishRecheckInput{BatchID: "rc0123456789abcdef0123", State: catalog.RecheckCompleted}).
		Return(nil).Once()

	in := recheckInput(catalog.StatePublished, catalog.StateBlocked)
	in.PageSize, in.RunSize = 2, 10
	in.Progress = recheck.Progress{Runs: 1, Cursor: "c1", Processed: 1, Changed: 1, SentToReview: 1}
	env.ExecuteWorkflow(workflows.RecheckWorkflowName, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var p recheck.Progress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if !p.Done || p.Runs != 2 || p.Skipped != 1 || p.Processed != 2 || p.StateIndex != 2 {
		t.Fatalf("final progress %+v", p)
	}
	if len(*reviews) != 0 {
		t.Fatalf("unchanged videos went to review: %q", *reviews)
	}
	env.AssertExpectations(t)
}

func TestRecheckPolicyTheWorkerCannotApplyFails(t *testing.T) {
	env, a, _ := recheckEnv(t)
	env.OnActivity(a.BeginRecheck, mock.Anything, mock.Anything).
		Return(temporal.NewNonRetryableApplicationError("policy p/1 is for model x, this worker runs y", activities.ErrRecheckPolicy, nil)).Once()
	env.OnActivity(a.FinishRecheck, mock.Anything, mock.MatchedBy(func(in activities.FinishRecheckInput) bool {
		return in.State == catalog.RecheckFailed && in.Error == "policy p/1 is for model x, this worker runs y"
	})).Return(nil).Once()
	env.ExecuteWorkflow(workflows.RecheckWorkflowName, recheckInput(catalog.StatePublished))
	if err := env.GetWorkflowError(); err == nil {
		t.Fatal("a batch whose policy cannot be applied must fail")
	}
	env.AssertExpectations(t)
}

package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/workflows"
)

// TestBackfillPagesAndContinuesAsNew: the back-fill walks the pages with
// one fixed cut-off time, publishes each page's videos under their pipeline
// ids, leaves a video alone while a stage of it may be running but not once
// the mark is older than any attempt, counts outcomes, and continues as new
// with its cursor and counts after a run's pages (the integration test runs
// the real stages).
func TestBackfillPagesAndContinuesAsNew(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(workflows.Backfill, workflow.RegisterOptions{Name: workflows.BackfillWorkflowName})
	var mu sync.Mutex // children run concurrently, in no set order
	var children []string
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.PublishInput) (workflows.VideoResult, error) {
		mu.Lock()
		children = append(children, workflow.GetInfo(ctx).WorkflowExecution.ID)
		mu.Unlock()
		switch in.Video.VideoID {
		case "v3":
			return workflows.VideoResult{}, errors.New("watermark failed")
		case "v4":
			return workflows.VideoResult{State: "blocked"}, nil
		}
		return workflows.VideoResult{State: "published"}, nil
	}, workflow.RegisterOptions{Name: workflows.PublishWorkflowName})
	a := &activities.Activities{}
	env.RegisterActivity(a)
	var cutoffs []time.Time
	start := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	env.OnActivity(a.ApprovedPage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in activities.BackfillPageInput) (activities.BackfillPage, error) {
			n := 0
			if in.Cursor != "" {
				fmt.Sscanf(in.Cursor, "c%d", &n)
			}
			cutoffs = append(cutoffs, in.UpdatedBefore)
			id := fmt.Sprintf("v%d", n)
			page := activities.BackfillPage{Videos: []activities.BackfillVideo{{VideoID: id, BlobKey: "uploads/" + id}},
				Running: []activities.RunningVideo{running("b"+id, in.UpdatedBefore)}, Next: fmt.Sprintf("c%d", n+1)}
			if n == 0 { // marked running by an attempt that ended hours ago
				page.Running = append(page.Running, running("stale", start.Add(-3*time.Hour)))
			}
			return page, nil
		})
	env.SetStartTime(start)
	env.ExecuteWorkflow(workflows.BackfillWorkflowName, workflows.BackfillInput{MinAge: time.Hour})
	var can *workflow.ContinueAsNewError
	if err := env.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
	var next workflows.BackfillInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	pages := len(cutoffs)
	r := next.Result
	if pages < 2 || next.Cursor != fmt.Sprintf("c%d", pages) || !next.Before.Equal(start.Add(-time.Hour)) || next.MinAge != time.Hour {
		t.Fatalf("after %d pages carried %+v", pages, next)
	}
	if r.Published != pages-1 || r.Stale != 1 || r.Failed != 1 || r.NotPublished != 1 || r.Busy != pages || len(r.FailedIDs) != 1 || r.FailedIDs[0] != "v3" || r.BusyIDs[0] != "bv0" {
		t.Fatalf("after %d pages counted %+v", pages, r)
	}
	for i, c := range cutoffs {
		if !c.Equal(start.Add(-time.Hour)) {
			t.Fatalf("page %d cut off at %s", i, c)
		}
	}
	if len(children) != pages+1 || !slices.Contains(children, workflows.WorkflowID("v0")) || !slices.Contains(children, workflows.WorkflowID("stale")) {
		t.Fatalf("children %v", children)
	}
}

// running is a page's video with a stage marked running since started
// (a 4-s video: its watermark attempt lasts at most about 30 minutes).
func running(id string, started time.Time) activities.RunningVideo {
	return activities.RunningVideo{BackfillVideo: activities.BackfillVideo{VideoID: id, Media: media.Info{DurationMS: 4000}},
		Stage: activities.StageWatermark, StartedAt: started}
}

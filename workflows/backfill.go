package workflows

import (
	"errors"
	"time"

	enums "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/media"
)

// Registered names of the back-fill workflows.
const (
	BackfillWorkflowName = "Backfill"
	PublishWorkflowName  = "Publish"
)

// BackfillWorkflowID names the one back-fill run at a time.
const BackfillWorkflowID = "backfill-approved"

// PublishInput runs the post-approval stages of one approved video.
type PublishInput struct {
	Video VideoInput `json:"video"`
	Media media.Info `json:"media"`
}

// Publish runs the stages after approval (watermark, embed, index,
// publish) for a video that is approved already. The back-fill starts it
// under the video's pipeline id (WorkflowID), so it never runs beside the
// video's own pipeline.
func Publish(ctx workflow.Context, in PublishInput) (VideoResult, error) {
	return afterApproval(ctx, in.Video, in.Media, VideoResult{State: "approved"})
}

// BackfillInput starts or resumes (continue-as-new) a back-fill.
type BackfillInput struct {
	// MinAge: videos updated more recently are skipped; a reviewer's
	// approval starts its own post-approval run within moments.
	MinAge time.Duration `json:"min_age"`
	// Before is fixed by the first run, so a continued run skips the same.
	Before time.Time      `json:"before,omitempty"`
	Cursor string         `json:"cursor,omitempty"`
	Result BackfillResult `json:"result"`
}

// BackfillResult counts what a back-fill did; the id lists are capped at
// backfillListed each, to name what an operator should look at.
type BackfillResult struct {
	Published    int      `json:"published"`
	NotPublished int      `json:"not_published"` // left approved meanwhile (e.g. blocked by a review)
	Failed       int      `json:"failed"`        // the video is failed, with the reason in the catalog
	Busy         int      `json:"busy"`          // another run holds it: a running stage or its pipeline open
	Stale        int      `json:"stale"`         // of Published: a stage was marked running, by an attempt that could no longer be alive
	Recent       int      `json:"recent"`        // updated within MinAge
	Unprobed     int      `json:"unprobed"`
	FailedIDs    []string `json:"failed_ids,omitempty"`
	BusyIDs      []string `json:"busy_ids,omitempty"`
}

const (
	backfillPage        = 20 // videos published at once, bounded further by the workers' concurrency
	backfillPagesPerRun = 25 // then continue-as-new, to bound history
	backfillListed      = 50
)

// Backfill publishes every video left in state approved: videos approved
// before the watermark and index stages existed stay approved, and nothing
// else would ever mark, index or publish them. It walks the catalog's
// approved videos page by page and runs Publish for each as a child
// workflow with the video's pipeline id; a video whose id is held by an
// open run, or which has a stage running (unless the mark is older than
// any attempt can last: staleStage), is counted busy and left alone.
// Every stage is idempotent, so running it again, or a crash halfway,
// never duplicates a registry record, rendition or vector.
func Backfill(ctx workflow.Context, in BackfillInput) (BackfillResult, error) {
	var a *activities.Activities
	res := in.Result
	if in.Before.IsZero() {
		in.Before = workflow.Now(ctx).Add(-in.MinAge)
	}
	pageCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	cursor := in.Cursor
	for range backfillPagesPerRun {
		var page activities.BackfillPage
		err := workflow.ExecuteActivity(pageCtx, a.ApprovedPage, activities.BackfillPageInput{
			Cursor: cursor, Limit: backfillPage, UpdatedBefore: in.Before,
		}).Get(ctx, &page)
		if err != nil {
			return res, err
		}
		res.Recent += len(page.Recent)
		res.Unprobed += len(page.Unprobed)
		videos := page.Videos
		stale := map[string]bool{}
		now := workflow.Now(ctx)
		for _, r := range page.Running {
			if now.Sub(r.StartedAt) > staleStage(r.Media) {
				// A terminated run left the mark: its stages run again.
				stale[r.VideoID] = true
				videos = append(videos, r.BackfillVideo)
				continue
			}
			res.Busy++
			res.BusyIDs = appendCapped(res.BusyIDs, r.VideoID)
		}
		runs := make([]workflow.ChildWorkflowFuture, len(videos))
		for i, v := range videos {
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID: WorkflowID(v.VideoID),
				// A closed pipeline run may be followed; an open one holds the video.
				WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
				// A stopped back-fill lets a started video finish.
				ParentClosePolicy: enums.PARENT_CLOSE_POLICY_ABANDON,
			})
			runs[i] = workflow.ExecuteChildWorkflow(cctx, PublishWorkflowName, PublishInput{
				Video: VideoInput{VideoID: v.VideoID, BlobKey: v.BlobKey, SHA256: v.SHA256}, Media: v.Media,
			})
		}
		for i, run := range runs {
			id := videos[i].VideoID
			var out VideoResult
			err := run.Get(ctx, &out)
			var started *temporal.ChildWorkflowExecutionAlreadyStartedError
			switch {
			case errors.As(err, &started):
				res.Busy++
				res.BusyIDs = appendCapped(res.BusyIDs, id)
			case err != nil:
				// Publish failed the video in the catalog (fail) with the reason.
				res.Failed++
				res.FailedIDs = appendCapped(res.FailedIDs, id)
			case out.State == "published":
				res.Published++
				if stale[id] {
					res.Stale++
				}
			default:
				res.NotPublished++
			}
		}
		workflow.GetLogger(ctx).Info("back-fill page done", "videos", len(videos), "published", res.Published, "busy", res.Busy)
		if page.Next == "" {
			return res, nil
		}
		cursor = page.Next
	}
	return res, workflow.NewContinueAsNewError(ctx, BackfillWorkflowName, BackfillInput{
		MinAge: in.MinAge, Before: in.Before, Cursor: cursor, Result: res,
	})
}

// staleStage is how long a stage can stay marked running while an attempt
// is alive: every attempt marks its start again, and none outlives the
// longest start-to-close of any stage (the watermark's, or sampling's 2 h,
// which a stale mark may come from), plus the retry backoff.
func staleStage(info media.Info) time.Duration {
	return max(2*time.Hour, watermarkTimeout(info)) + 10*time.Minute
}

func appendCapped(ids []string, more ...string) []string {
	for _, id := range more {
		if len(ids) < backfillListed {
			ids = append(ids, id)
		}
	}
	return ids
}

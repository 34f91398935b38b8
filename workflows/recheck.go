package workflows

import (
	"errors"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/recheck"
	"github.com/lessonflow/lessonflow/review"
)

// RecheckWorkflowName is the registered name of the re-check batch workflow.
const RecheckWorkflowName = recheck.WorkflowName

// RecheckInput starts a re-check batch, or continues one.
type RecheckInput = recheck.Input

// Recheck walks the videos in the batch's states page by page, re-checks
// each in shadow under the batch's policy, and sends every verdict that
// differs from what the video is today to human review. It never changes a
// video itself. The "progress" query answers where it is.
func Recheck(ctx workflow.Context, in RecheckInput) (recheck.Progress, error) {
	var a *activities.Activities
	p := in.Progress
	p.BatchID = in.BatchID
	p.Runs++
	if err := workflow.SetQueryHandler(ctx, recheck.QueryProgress, func() (recheck.Progress, error) { return p, nil }); err != nil {
		return p, err
	}
	log := workflow.GetLogger(ctx)
	pageSize := min(max(in.PageSize, 1), recheck.MaxPageSize)
	runSize := max(in.RunSize, pageSize)

	// Catalog reads and writes: quick, retried until they work.
	short := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrRecheckPolicy},
		},
	})
	// One video: sampling again and classifying can take a while, so a
	// generous start-to-close and a short heartbeat, as in the pipeline.
	heavy := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5,
			NonRetryableErrorTypes: []string{activities.ErrRecheckPolicy, activities.ErrInvalidMedia},
		},
	})

	if p.Runs == 1 {
		err := workflow.ExecuteActivity(short, a.BeginRecheck, activities.RecheckBatchInput{
			BatchID: in.BatchID, Policy: in.Policy, States: in.States, RequestedBy: in.RequestedBy,
		}).Get(ctx, nil)
		if err != nil {
			return finishRecheck(ctx, short, &p, err)
		}
	}

	done := 0
	for p.StateIndex < len(in.States) {
		p.State = string(in.States[p.StateIndex])
		var page activities.RecheckPage
		err := workflow.ExecuteActivity(short, a.ListRecheckPage, activities.RecheckPageInput{
			State: in.States[p.StateIndex], Cursor: p.Cursor, Limit: pageSize,
		}).Get(ctx, &page)
		if err != nil {
			return finishRecheck(ctx, short, &p, err)
		}
		futures := make([]workflow.Future, len(page.VideoIDs))
		for i, id := range page.VideoIDs {
			futures[i] = workflow.ExecuteActivity(heavy, a.RecheckVideo, activities.RecheckVideoInput{
				BatchID: in.BatchID, VideoID: id, Policy: in.Policy,
			})
		}
		for i, f := range futures {
			var r activities.RecheckVideoResult
			if err := f.Get(ctx, &r); err != nil {
				if isAppError(err, activities.ErrRecheckPolicy) {
					return finishRecheck(ctx, short, &p, err)
				}
				// One unreadable video must not stop the batch.
				log.Warn("re-check of a video failed", "video", page.VideoIDs[i], "error", err)
				p.Skipped++
				continue
			}
			if !r.NeedsReview || r.ReviewItemID != "" {
				continue
			}
			// One re-check review per video at a time: a video another
			// batch already sent to review is not queued twice; this
			// batch's result names the open item instead.
			var itemID string
			if err := workflow.ExecuteActivity(short, a.OpenRecheckReview, r.VideoID).Get(ctx, &itemID); err != nil {
				return finishRecheck(ctx, short, &p, err)
			}
			if itemID != "" {
				log.Info("video already in a re-check review: not sent again", "video", r.VideoID, "item", itemID)
			} else if itemID, err = sendRecheckToReview(ctx, in, r); err != nil {
				log.Warn("could not send a changed verdict to review", "video", r.VideoID, "error", err)
				p.Skipped++
				continue
			}
			err = workflow.ExecuteActivity(short, a.RecordRecheckReview, activities.RecheckReviewInput{
				BatchID: in.BatchID, VideoID: r.VideoID, ItemID: itemID,
			}).Get(ctx, nil)
			if err != nil {
				return finishRecheck(ctx, short, &p, err)
			}
		}
		done += len(page.VideoIDs)
		if err := countRecheck(ctx, short, &p); err != nil {
			return finishRecheck(ctx, short, &p, err)
		}
		p.Cursor = page.Next
		if page.Next == "" {
			p.StateIndex, p.Cursor = p.StateIndex+1, ""
		}
		more := p.StateIndex < len(in.States)
		if more && (done >= runSize || workflow.GetInfo(ctx).GetContinueAsNewSuggested()) {
			in.Progress = p
			log.Info("re-check continues as new", "batch", in.BatchID, "processed", p.Processed, "runs", p.Runs)
			return p, workflow.NewContinueAsNewError(ctx, recheck.WorkflowName, in)
		}
	}
	p.Done, p.State = true, ""
	return finishRecheck(ctx, short, &p, nil)
}

// countRecheck refreshes the progress counts from the recorded results.
func countRecheck(ctx workflow.Context, short workflow.Context, p *recheck.Progress) error {
	var a *activities.Activities
	var c catalog.RecheckCounts
	if err := workflow.ExecuteActivity(short, a.RecheckCounts, p.BatchID).Get(ctx, &c); err != nil {
		return err
	}
	p.Processed, p.Changed, p.Errors, p.SentToReview = c.Processed, c.Changed, c.Errors, c.SentToReview
	return nil
}

// finishRecheck records how the batch ended. A batch that could not go on
// fails the workflow too, so its status says so.
func finishRecheck(ctx workflow.Context, short workflow.Context, p *recheck.Progress, cause error) (recheck.Progress, error) {
	var a *activities.Activities
	in := activities.FinishRecheckInput{BatchID: p.BatchID, State: catalog.RecheckCompleted}
	if cause != nil {
		in.State, in.Error = catalog.RecheckFailed, rootMessage(cause)
		var appErr *temporal.ApplicationError
		if errors.As(cause, &appErr) {
			in.Error = appErr.Message()
		}
		p.Failed = in.Error
	}
	if err := workflow.ExecuteActivity(short, a.FinishRecheck, in).Get(ctx, nil); err != nil {
		return *p, err
	}
	if cause != nil {
		return *p, temporal.NewNonRetryableApplicationError(in.Error, "RecheckFailed", cause)
	}
	return *p, nil
}

func isAppError(err error, typ string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == typ
}

// sendRecheckToReview starts the review of a changed verdict (kind recheck)
// and returns the review item's id.
// The review is a child that outlives the batch (the batch continues as
// new and ends long before reviewers decide); its workflow id carries the
// batch id, so each batch sends a video at most once.
func sendRecheckToReview(ctx workflow.Context, in RecheckInput, r activities.RecheckVideoResult) (string, error) {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            ReviewWorkflowID(review.KindRecheck, r.VideoID, in.BatchID),
		ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	})
	child := workflow.ExecuteChildWorkflow(cctx, ReviewWorkflowName, ReviewInput{
		VideoID: r.VideoID, Kind: review.KindRecheck, Reason: r.Reason, Diff: r.Diff, BatchID: in.BatchID,
	})
	var we workflow.Execution
	if err := child.GetChildWorkflowExecution().Get(ctx, &we); err != nil {
		return "", err
	}
	return review.ItemID(we.ID, we.RunID), nil
}

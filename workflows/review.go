package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/review"
	"github.com/lessonflow/lessonflow/webhook"
)

// ReviewWorkflowName is the registered name of the review workflow.
const ReviewWorkflowName = "ReviewWorkflow"

// Names of the review workflow's Updates and signals.
const (
	UpdateClaim   = "claim"
	UpdateRelease = "release"
	UpdateDecide  = "decide"
	SignalReport  = "report"
)

// ReviewWorkflowID is the workflow id of a video's review of one kind:
// at most one open review per video and kind. Re-checks add the batch id
// (suffix) so each batch's review of a video is its own.
func ReviewWorkflowID(kind review.Kind, videoID, suffix string) string {
	id := "review-" + string(kind) + "-" + videoID
	if suffix != "" {
		id += "-" + suffix
	}
	return id
}

// ReviewInput starts the review of one video.
type ReviewInput struct {
	VideoID string      `json:"video_id"`
	Kind    review.Kind `json:"kind"`
	// Reason is why the item is in the queue (the model's reason, a
	// report's, the appeal's, the re-check's diff summary).
	Reason string `json:"reason"`
	// Reports are reports not yet on an item (a report review's first one,
	// or those that arrived while a previous run was finishing).
	Reports []review.Report `json:"reports,omitempty"`
	// Statement is the teacher's appeal text.
	Statement string `json:"statement,omitempty"`
	// Diff describes what a re-check changed.
	Diff string `json:"diff,omitempty"`
	// BatchID is a re-check item's batch: its evidence is the batch's
	// verdict and frames.
	BatchID string `json:"batch_id,omitempty"`
}

// ReviewResult is how a review ended.
type ReviewResult struct {
	ItemID      string         `json:"item_id"`
	Outcome     review.Outcome `json:"outcome"`
	VideoState  string         `json:"video_state"`
	DecisionSeq int64          `json:"decision_seq"`
}

// ClaimRequest and ReleaseRequest name the reviewer.
type ClaimRequest struct {
	Reviewer string `json:"reviewer"`
}

// ReleaseRequest gives a lease back.
type ReleaseRequest struct {
	Reviewer string `json:"reviewer"`
}

// DecideRequest is a reviewer's decision.
type DecideRequest struct {
	Reviewer string         `json:"reviewer"`
	Request  review.Request `json:"request"`
}

// DecideResult is the item after a decision and what it did.
type DecideResult struct {
	Item        review.Item    `json:"item"`
	Outcome     review.Outcome `json:"outcome"`
	DecisionSeq int64          `json:"decision_seq"`
}

// Error types of rejected Updates, so callers can map them (the API: 400
// for invalid, 409 for the rest).
const (
	RejectInvalid    = "ReviewInvalid"
	RejectNotHolder  = "ReviewNotHolder"
	RejectStale      = "ReviewStale"
	RejectClaimed    = "ReviewClaimed"
	RejectDecided    = "ReviewDecided"
	RejectExcluded   = "ReviewExcluded"
	RejectNotClaimed = "ReviewNotClaimed"
)

func rejection(err error) error {
	if err == nil {
		return nil
	}
	typ := RejectInvalid
	for _, m := range []struct {
		err error
		typ string
	}{
		{review.ErrNotHolder, RejectNotHolder}, {review.ErrStale, RejectStale}, {review.ErrClaimed, RejectClaimed},
		{review.ErrDecided, RejectDecided}, {review.ErrExcluded, RejectExcluded}, {review.ErrNotClaimed, RejectNotClaimed},
	} {
		if errors.Is(err, m.err) {
			typ = m.typ
		}
	}
	return temporal.NewNonRetryableApplicationError(err.Error(), typ, nil)
}

// reviewState is the workflow's state: the item and what is in flight.
type reviewState struct {
	item     review.Item
	settings activities.ReviewSettings
	// final is set once a final decision is recorded; result with it.
	final  review.Outcome
	result activities.ReviewDecisionResult
	// deciding is true while a decision is being recorded: timers wait.
	deciding bool
	inbox    []review.Report // reports not yet on the item
	late     []review.Report // reports that came after the decision
	webhooks []workflow.Future
}

// Review is one item of the human review queue, from entry to outcome.
// Reviewers act on it through Updates (claim, release, decide) whose
// validators refuse a decision from a reviewer without the lease or on a
// stale version. Timers return an expired lease to the queue and escalate
// the item at its deadline. Every change is written to the catalog's
// projection before the Update returns; every decision is appended to the
// decision log and sent to the webhook.
//
// On a final decision: block sets the video blocked and removes it from the
// vector store (one activity); approve sets it approved and, except for the
// model kind whose parent Video workflow goes on itself, runs afterApproval.
func Review(ctx workflow.Context, in ReviewInput) (ReviewResult, error) {
	var a *activities.Activities
	logger := workflow.GetLogger(ctx)
	if in.VideoID == "" || !in.Kind.Valid() {
		return ReviewResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("bad review input: video %q kind %q", in.VideoID, in.Kind), "BadInput", nil)
	}
	info := workflow.GetInfo(ctx)
	st := &reviewState{}
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{StartToCloseTimeout: 10 * time.Second})
	if err := workflow.ExecuteLocalActivity(lctx, a.GetReviewSettings).Get(ctx, &st.settings); err != nil {
		return ReviewResult{}, err
	}
	itemID := review.ItemID(info.WorkflowExecution.ID, info.WorkflowExecution.RunID)
	var setup activities.ReviewSetup
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrReviewGone}},
	}), a.PrepareReview, activities.PrepareReviewInput{ItemID: itemID, VideoID: in.VideoID, Kind: in.Kind, BatchID: in.BatchID}).Get(ctx, &setup)
	if err != nil {
		return ReviewResult{}, err
	}
	now := workflow.Now(ctx)
	st.item = review.Item{
		ID: itemID, VideoID: in.VideoID, Kind: in.Kind, State: review.StatePending, Reason: in.Reason,
		Evidence: setup.Evidence, Version: 1, Opinions: []review.Decision{}, Excluded: []string{},
		Audience: setup.Audience, BasePriority: setup.BasePriority, DeadlineAt: now.Add(st.settings.Deadline),
		CreatedAt: now, UpdatedAt: now, WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
	}
	st.item.Evidence.Statement, st.item.Evidence.Diff = in.Statement, in.Diff
	st.item.Evidence.Reports = append(st.item.Evidence.Reports, in.Reports...)
	if in.Kind == review.KindAppeal && setup.LastBlocker != "" {
		st.item.Excluded = append(st.item.Excluded, setup.LastBlocker)
	}
	st.item.Priority = review.Priority(st.item.BasePriority, now, now)

	rules := review.Rules{SecondOpinionAudience: st.settings.SecondOpinionAudience}
	if err := st.setHandlers(ctx, rules); err != nil {
		return ReviewResult{}, err
	}
	reports := workflow.GetSignalChannel(ctx, SignalReport)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var r review.Report
			reports.Receive(ctx, &r)
			st.inbox = append(st.inbox, r)
		}
	})
	if err := saveItem(ctx, st.item); err != nil {
		return ReviewResult{}, err
	}
	if err := st.maybeUnpublish(ctx); err != nil {
		return ReviewResult{}, err
	}

	for st.final == "" {
		v := st.item.Version
		changed := func() bool { return st.final != "" || st.item.Version != v || len(st.inbox) > 0 }
		var wake time.Time
		if st.item.State == review.StateClaimed && st.item.LeaseExpiresAt != nil {
			wake = *st.item.LeaseExpiresAt
		}
		if !st.item.Escalated && (wake.IsZero() || st.item.DeadlineAt.Before(wake)) {
			wake = st.item.DeadlineAt
		}
		if st.deciding {
			// A decision is being recorded: wait for it, not for timers.
			if err := workflow.Await(ctx, func() bool { return !st.deciding || st.final != "" }); err != nil {
				return ReviewResult{}, err
			}
			continue
		}
		if wake.IsZero() {
			if err := workflow.Await(ctx, changed); err != nil {
				return ReviewResult{}, err
			}
		} else if d := wake.Sub(workflow.Now(ctx)); d > 0 {
			if _, err := workflow.AwaitWithTimeout(ctx, d, changed); err != nil {
				return ReviewResult{}, err
			}
		}
		if st.final != "" || st.deciding {
			continue
		}
		now := workflow.Now(ctx)
		if len(st.inbox) > 0 {
			for _, r := range st.inbox {
				_ = st.item.AddReport(r, now)
			}
			st.inbox = nil
			if err := saveItem(ctx, st.item); err != nil {
				return ReviewResult{}, err
			}
			if err := st.maybeUnpublish(ctx); err != nil {
				return ReviewResult{}, err
			}
		}
		if st.item.ExpireLease(now) == nil {
			logger.Info("review lease expired", "item", st.item.ID)
			if err := saveItem(ctx, st.item); err != nil {
				return ReviewResult{}, err
			}
		}
		if !now.Before(st.item.DeadlineAt) && st.item.Escalate(now) {
			logger.Info("review deadline passed: escalated", "item", st.item.ID)
			if err := saveItem(ctx, st.item); err != nil {
				return ReviewResult{}, err
			}
			st.notify(ctx, webhook.Event{
				ID: fmt.Sprintf("%s:v%d", st.item.ID, st.item.Version), Type: webhook.TypeEscalation,
				VideoID: st.item.VideoID, ItemID: st.item.ID, Kind: string(st.item.Kind), Outcome: string(review.OutcomeEscalated),
				Actor: "system:deadline", Reason: "not decided within " + st.settings.Deadline.String(),
				Priority: review.Priority(st.item.BasePriority, st.item.CreatedAt, now), OccurredAt: now,
			})
		}
	}

	res := ReviewResult{ItemID: st.item.ID, Outcome: st.final, VideoState: string(st.result.VideoState), DecisionSeq: st.result.Seq}
	if st.final == review.OutcomeApproved && st.result.NeedsPublish && in.Kind != review.KindModel {
		vres, err := afterApproval(ctx, VideoInput{VideoID: in.VideoID, BlobKey: setup.BlobKey, SHA256: setup.SHA256},
			setup.Media, VideoResult{State: string(st.result.VideoState), Decision: st.result.Seq})
		if err != nil {
			return res, err
		}
		res.VideoState = vres.State
	}
	for _, f := range st.webhooks {
		if err := f.Get(ctx, nil); err != nil {
			logger.Warn("webhook not delivered", "item", st.item.ID, "error", err)
		}
	}
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return res, err
	}
	// Reports that came after the decision start a fresh review of a video
	// that is still published.
	for {
		var r review.Report
		if !reports.ReceiveAsync(&r) {
			break
		}
		st.late = append(st.late, r)
	}
	st.late = append(st.late, st.inbox...)
	if len(st.late) > 0 && res.VideoState == "published" {
		return res, workflow.NewContinueAsNewError(ctx, ReviewWorkflowName, ReviewInput{
			VideoID: in.VideoID, Kind: review.KindReport, Reason: st.late[0].Reason, Reports: st.late})
	}
	return res, nil
}

// setHandlers registers the claim, release and decide Updates. Each
// validator runs the same check as its handler, so a rejected request never
// enters history; the handler re-checks, since another Update may have run
// in between.
func (st *reviewState) setHandlers(ctx workflow.Context, rules review.Rules) error {
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateClaim,
		func(ctx workflow.Context, req ClaimRequest) (review.Item, error) {
			if err := st.item.Claim(req.Reviewer, workflow.Now(ctx), st.settings.Lease); err != nil {
				return review.Item{}, rejection(err)
			}
			it := st.item
			return it, saveItem(ctx, it)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req ClaimRequest) error {
			if st.deciding {
				return rejection(review.ErrDecided)
			}
			return rejection(st.item.CheckClaim(req.Reviewer, workflow.Now(ctx)))
		}})
	if err != nil {
		return err
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateRelease,
		func(ctx workflow.Context, req ReleaseRequest) (review.Item, error) {
			if err := st.item.Release(req.Reviewer, workflow.Now(ctx)); err != nil {
				return review.Item{}, rejection(err)
			}
			it := st.item
			return it, saveItem(ctx, it)
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req ReleaseRequest) error {
			return rejection(st.item.CheckRelease(req.Reviewer))
		}})
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateDecide,
		func(ctx workflow.Context, req DecideRequest) (DecideResult, error) {
			if st.deciding {
				return DecideResult{}, rejection(review.ErrDecided)
			}
			now := workflow.Now(ctx)
			out, err := st.item.Decide(req.Reviewer, req.Request, now, rules)
			if err != nil {
				return DecideResult{}, rejection(err)
			}
			st.deciding = true
			defer func() { st.deciding = false }()
			it := st.item
			op := it.Opinions[len(it.Opinions)-1]
			var res activities.ReviewDecisionResult
			var a *activities.Activities
			err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
				StartToCloseTimeout: time.Minute,
				// A dead worker is noticed within the API's 30 s update
				// timeout, so the reviewer still gets the outcome; a write
				// waits at most sqlitedb.BusyTimeout (10 s) between beats.
				HeartbeatTimeout: 15 * time.Second,
				// Keyed writes: retried until they land, whatever the outage.
				RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
			}), a.RecordReviewDecision, activities.ReviewDecisionInput{Item: it, Opinion: op, Outcome: out}).Get(ctx, &res)
			if err != nil {
				return DecideResult{}, err
			}
			typ := webhook.TypeDecision
			if out == review.OutcomeEscalated {
				typ = webhook.TypeEscalation
			}
			st.notify(ctx, webhook.Event{
				ID: fmt.Sprintf("%s:v%d", it.ID, op.Version), Type: typ, VideoID: it.VideoID, ItemID: it.ID,
				Kind: string(it.Kind), Outcome: string(out), Actor: activities.ReviewerActor(op.Reviewer),
				ReasonCode: op.ReasonCode, Reason: op.Reason, DecisionSeq: res.Seq, OccurredAt: now,
			})
			if out.Final() {
				st.final, st.result = out, res
			}
			return DecideResult{Item: it, Outcome: out, DecisionSeq: res.Seq}, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, req DecideRequest) error {
			if st.deciding {
				return rejection(review.ErrDecided)
			}
			return rejection(st.item.CheckDecide(req.Reviewer, req.Request, workflow.Now(ctx)))
		}})
}

// maybeUnpublish takes a reported video offline once the reports reach the
// configured number.
func (st *reviewState) maybeUnpublish(ctx workflow.Context) error {
	k := st.settings.ReportsToUnpublish
	if st.item.Kind != review.KindReport || k <= 0 || len(st.item.Evidence.Reports) < k {
		return nil
	}
	var a *activities.Activities
	return workflow.ExecuteActivity(bookkeeping(ctx), a.UnpublishForReports, activities.UnpublishForReportsInput{
		ItemID: st.item.ID, VideoID: st.item.VideoID, Reports: len(st.item.Evidence.Reports)}).Get(ctx, nil)
}

// notify delivers ev in the background with its own retry policy: backoff
// from 2 s to 10 min for up to a day, so a receiver's outage delays but does
// not lose events. The workflow waits for deliveries before it ends.
func (st *reviewState) notify(ctx workflow.Context, ev webhook.Event) {
	var a *activities.Activities
	st.webhooks = append(st.webhooks, workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout:    15 * time.Second,
		ScheduleToCloseTimeout: 24 * time.Hour,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 10 * time.Minute,
			NonRetryableErrorTypes: []string{"WebhookRefused"}},
	}), a.DeliverWebhook, ev))
}

// saveItem writes an item version to the catalog projection.
func saveItem(ctx workflow.Context, it review.Item) error {
	var a *activities.Activities
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second},
	}), a.SaveReviewItem, it).Get(ctx, nil)
}

// awaitReview is the Video workflow's needs_review branch: a child review
// of kind model; an approval goes on with the approval stages, a block has
// already been applied by the review.
func awaitReview(ctx workflow.Context, in VideoInput, info media.Info, res VideoResult) (VideoResult, error) {
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: ReviewWorkflowID(review.KindModel, in.VideoID, ""),
		// The review outlives a terminated pipeline run: the item stays in the queue.
		ParentClosePolicy:     enums.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
	})
	var rr ReviewResult
	err := workflow.ExecuteChildWorkflow(cctx, ReviewWorkflowName, ReviewInput{
		VideoID: in.VideoID, Kind: review.KindModel, Reason: res.Reason,
	}).Get(ctx, &rr)
	if err != nil {
		return fail(ctx, in, "review", err)
	}
	res.State, res.Decision = rr.VideoState, rr.DecisionSeq
	if rr.Outcome == review.OutcomeApproved {
		return afterApproval(ctx, in, info, res)
	}
	return res, nil
}

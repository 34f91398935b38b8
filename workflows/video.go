// Package workflows holds LessonFlow's Temporal workflows: orchestration only.
// They are deterministic, pass references and hashes between activities
// (never frames, scores or videos), and set explicit timeouts and retry
// policies next to every call.
package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
)

// VideoInput starts the pipeline of one uploaded video.
type VideoInput struct {
	VideoID string `json:"video_id"`
	BlobKey string `json:"blob_key"`
	SHA256  string `json:"sha256"`
}

// VideoResult is the pipeline's end state for one video.
type VideoResult struct {
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	Decision int64  `json:"decision_seq,omitempty"`
}

// WorkflowID derives the workflow id from the video id (itself from the
// content hash), so the same bytes never start a second pipeline.
func WorkflowID(videoID string) string { return "video-" + videoID }

// HeartbeatTimeout bounds how long a killed worker's activity stays
// invisible before another worker retries it.
const HeartbeatTimeout = 20 * time.Second

// Video is the moderation pipeline of one video: probe, sample, classify,
// dense re-scan around suspicious frames, decide.
func Video(ctx workflow.Context, in VideoInput) (VideoResult, error) {
	var a *activities.Activities
	ref := activities.VideoRef{VideoID: in.VideoID, BlobKey: in.BlobKey}

	var info media.Info
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 5,
			NonRetryableErrorTypes: []string{activities.ErrInvalidMedia},
		},
	}), a.Probe, ref).Get(ctx, &info)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrInvalidMedia {
			return reject(ctx, in, appErr.Message())
		}
		return fail(ctx, in, "probe", err)
	}

	// Decoding a long video takes a while: generous start-to-close, short
	// heartbeat so a dead worker's attempt is retried quickly.
	heavy := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{activities.ErrInvalidMedia},
		},
	})
	var coarse activities.FrameSet
	if err := workflow.ExecuteActivity(heavy, a.SampleFrames, activities.SampleInput{VideoRef: ref, Info: info}).Get(ctx, &coarse); err != nil {
		return fail(ctx, in, "sample", err)
	}
	var coarseScores activities.ScoreSet
	if err := workflow.ExecuteActivity(heavy, a.Classify, coarse).Get(ctx, &coarseScores); err != nil {
		return fail(ctx, in, "classify", err)
	}
	var dense activities.FrameSet
	err = workflow.ExecuteActivity(heavy, a.SampleDense, activities.DenseInput{
		VideoRef: ref, Coarse: coarseScores, Info: info,
	}).Get(ctx, &dense)
	if err != nil {
		return fail(ctx, in, "dense sample", err)
	}
	scores := []activities.ScoreSet{coarseScores}
	if dense.Count > 0 {
		var denseScores activities.ScoreSet
		if err := workflow.ExecuteActivity(heavy, a.Classify, dense).Get(ctx, &denseScores); err != nil {
			return fail(ctx, in, "dense classify", err)
		}
		scores = append(scores, denseScores)
	}

	var sum activities.DecisionSummary
	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 10},
	}), a.Decide, activities.DecideInput{VideoID: in.VideoID, Scores: scores, Sampler: coarse.Sampler}).Get(ctx, &sum)
	if err != nil {
		return fail(ctx, in, "decide", err)
	}
	workflow.GetLogger(ctx).Info("moderation decided", "video", in.VideoID, "outcome", sum.Outcome, "policy", sum.PolicyVersion)
	res := VideoResult{State: string(sum.Outcome), Reason: sum.Reason, Decision: sum.Seq}
	if sum.Outcome == moderation.Approved {
		return afterApproval(ctx, in, info, res)
	}
	if sum.Outcome == moderation.NeedsReview {
		// A child review workflow (workflows/review.go): approve goes on
		// with afterApproval, block has been applied by the review.
		return awaitReview(ctx, in, info, res)
	}
	return res, nil
}

// afterApproval runs the stages an approved video goes through before the
// app may serve it, in order: watermark, embed and index, publish. A video
// approved later by a reviewer runs the same function.
func afterApproval(ctx workflow.Context, in VideoInput, info media.Info, res VideoResult) (VideoResult, error) {
	// stage: watermark (issue 3)
	// Decoding, marking and encoding every frame takes about as long as a
	// transcode: start-to-close scales with the video; the short heartbeat
	// lets another worker take over a dead worker's pass, resuming from its
	// finished segments.
	var a *activities.Activities
	var wm activities.WatermarkResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: watermarkTimeout(info),
		HeartbeatTimeout:    HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{activities.ErrInvalidMedia, activities.ErrWatermarkConfig},
		},
	}), a.Watermark, activities.WatermarkInput{VideoRef: activities.VideoRef{VideoID: in.VideoID, BlobKey: in.BlobKey}}).Get(ctx, &wm)
	if err != nil {
		return fail(ctx, in, "watermark", err)
	}
	workflow.GetLogger(ctx).Info("watermarked", "video", in.VideoID, "payload", wm.Payload, "frames", wm.Frames)
	// stage: embed + index, then publish (issue 4)
	return indexAndPublish(ctx, in, res)
}

// watermarkTimeout bounds one attempt of the watermark stage, the longest
// stage after approval: it scales with the video.
func watermarkTimeout(info media.Info) time.Duration {
	return 30*time.Minute + 4*time.Duration(info.DurationMS)*time.Millisecond
}

// bookkeeping is for the short catalog writes after the pipeline ends.
func bookkeeping(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
}

func reject(ctx workflow.Context, in VideoInput, reason string) (VideoResult, error) {
	var a *activities.Activities
	err := workflow.ExecuteActivity(bookkeeping(ctx), a.Reject, activities.RejectInput{
		VideoID: in.VideoID, BlobKey: in.BlobKey, Reason: reason,
	}).Get(ctx, nil)
	if err != nil {
		return VideoResult{}, err
	}
	return VideoResult{State: "rejected_invalid", Reason: reason}, nil
}

func fail(ctx workflow.Context, in VideoInput, step string, cause error) (VideoResult, error) {
	var a *activities.Activities
	reason := step + " failed: " + rootMessage(cause)
	if err := workflow.ExecuteActivity(bookkeeping(ctx), a.Fail, activities.FailInput{VideoID: in.VideoID, Reason: reason}).Get(ctx, nil); err != nil {
		return VideoResult{}, err
	}
	return VideoResult{State: "failed", Reason: reason}, temporal.NewNonRetryableApplicationError(reason, "PipelineFailed", cause)
}

// rootMessage strips Temporal's activity-error wrapping for a readable reason.
func rootMessage(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

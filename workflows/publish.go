package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
)

// embedOptions: the embedding model over up to 600 frames takes seconds;
// heartbeats per batch let a dead worker's attempt move on quickly.
func embedOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    HeartbeatTimeout,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 10,
		},
	})
}

// indexOptions: one upsert or one catalog write; retried on anything but
// the non-retryable outcomes the workflow branches on.
func indexOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 10,
			NonRetryableErrorTypes: []string{activities.ErrNotPublishable, activities.ErrModelMismatch},
		},
	})
}

// indexAndPublish embeds an approved video's frames, indexes its vector and
// publishes it. `published` therefore always means watermarked (the stage
// before this one) and indexed. If the video stopped being approved
// meanwhile (a review blocked it), it is removed from the index again and
// keeps the state the catalog has.
func indexAndPublish(ctx workflow.Context, in VideoInput, res VideoResult) (VideoResult, error) {
	var a *activities.Activities
	// Decided once and kept in history: retries and replays index and
	// publish with the same time.
	publishedAt := workflow.Now(ctx).UTC().Truncate(time.Millisecond)

	var vec activities.VectorRef
	if err := workflow.ExecuteActivity(embedOptions(ctx), a.Embed, activities.EmbedInput{VideoID: in.VideoID}).Get(ctx, &vec); err != nil {
		return fail(ctx, in, "embed", err)
	}
	var idx activities.IndexResult
	err := workflow.ExecuteActivity(indexOptions(ctx), a.Index, activities.IndexInput{
		VideoID: in.VideoID, Vector: vec, PublishedAt: publishedAt,
	}).Get(ctx, &idx)
	if err != nil {
		return fail(ctx, in, "index", err)
	}
	if !idx.Indexed {
		res.State, res.Reason = idx.State, "not published: the video is "+idx.State
		return res, nil
	}
	var pub activities.PublishResult
	err = workflow.ExecuteActivity(indexOptions(ctx), a.Publish, activities.PublishInput{
		VideoID: in.VideoID, PublishedAt: publishedAt,
	}).Get(ctx, &pub)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == activities.ErrNotPublishable {
		// Blocked between indexing and publishing: take the vector out again.
		if err := workflow.ExecuteActivity(indexOptions(ctx), a.Unindex, in.VideoID).Get(ctx, nil); err != nil {
			return VideoResult{}, err
		}
		res.Reason = "not published: " + appErr.Message()
		return res, nil
	}
	if err != nil {
		return fail(ctx, in, "publish", err)
	}
	res.State = "published"
	return res, nil
}

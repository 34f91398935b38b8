package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
)

// ReembedWorkflowName is the registered name of Reembed.
const ReembedWorkflowName = "Reembed"

// ReembedWorkflowID names the one re-embed run per collection.
func ReembedWorkflowID(collection string) string { return "reembed-" + collection }

// ReembedInput resumes a re-embed after the id After (continue-as-new).
type ReembedInput struct {
	After   string `json:"after"`
	Indexed int    `json:"indexed"`
	Skipped int    `json:"skipped"`
}

// ReembedResult counts what a re-embed did.
type ReembedResult struct {
	Indexed int `json:"indexed"`
	Skipped int `json:"skipped"` // no longer approved when reached
}

// reembedPage is how many videos one page holds; a page's activities run
// at once, bounded by the workers' concurrency.
const reembedPage = 50

// reembedPagesPerRun bounds one run's history (about 8 events per video);
// then the workflow continues as new from where it was.
const reembedPagesPerRun = 20

// Reembed fills the collection of the workers' embedding model with every
// published video: after a model change, the new collection (named by the
// new model id and dimension) starts empty and this walks the catalog by
// id, embedding each video's stored frames and upserting its vector. The
// old collection keeps serving until the API is pointed at the new one.
// Upserts are keyed by video id, so re-running it, or a crash halfway,
// never duplicates a vector.
func Reembed(ctx workflow.Context, in ReembedInput) (ReembedResult, error) {
	var a *activities.Activities
	res := ReembedResult{Indexed: in.Indexed, Skipped: in.Skipped}
	after := in.After
	pageCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for range reembedPagesPerRun {
		var page activities.PageResult
		if err := workflow.ExecuteActivity(pageCtx, a.PublishedPage, activities.PageInput{After: after, Limit: reembedPage}).Get(ctx, &page); err != nil {
			return res, err
		}
		embeds := make([]workflow.Future, len(page.IDs))
		for i, id := range page.IDs {
			embeds[i] = workflow.ExecuteActivity(embedOptions(ctx), a.Embed, activities.EmbedInput{VideoID: id})
		}
		indexes := make([]workflow.Future, len(page.IDs))
		for i, id := range page.IDs {
			var vec activities.VectorRef
			if err := embeds[i].Get(ctx, &vec); err != nil {
				return res, err
			}
			indexes[i] = workflow.ExecuteActivity(indexOptions(ctx), a.Index, activities.IndexInput{VideoID: id, Vector: vec})
		}
		for i := range page.IDs {
			var r activities.IndexResult
			if err := indexes[i].Get(ctx, &r); err != nil {
				return res, err
			}
			if r.Indexed {
				res.Indexed++
			} else {
				res.Skipped++
			}
		}
		workflow.GetLogger(ctx).Info("re-embed page done", "after", after, "videos", len(page.IDs), "indexed", res.Indexed)
		if page.Next == "" {
			return res, nil
		}
		after = page.Next
	}
	return res, workflow.NewContinueAsNewError(ctx, ReembedWorkflowName, ReembedInput{After: after, Indexed: res.Indexed, Skipped: res.Skipped})
}

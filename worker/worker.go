// Package worker wires LessonFlow's workflows and activities into a Temporal
// worker: which task queue, which registrations, how much runs at once.
package worker

import (
	"fmt"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/workflows"
)

// Options size a worker.
type Options struct {
	TaskQueue string
	// Concurrency bounds activities at once: each holds an ffmpeg process or
	// a model batch, so this is what keeps a worker's memory flat.
	Concurrency int
}

// WorkflowName is the registered name of the video pipeline.
const WorkflowName = "VideoPipeline"

// New builds a worker with every workflow and activity registered.
func New(c client.Client, acts *activities.Activities, opts Options) (sdkworker.Worker, error) {
	if opts.TaskQueue == "" {
		return nil, fmt.Errorf("worker: task queue is required")
	}
	w := sdkworker.New(c, opts.TaskQueue, sdkworker.Options{
		MaxConcurrentActivityExecutionSize: max(1, opts.Concurrency),
	})
	Register(w, acts)
	return w, nil
}

// Register adds the workflows and activities to any registry (a worker or a
// test environment).
func Register(r sdkworker.Registry, acts *activities.Activities) {
	r.RegisterWorkflowWithOptions(workflows.Video, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Review, workflow.RegisterOptions{Name: workflows.ReviewWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Recheck, workflow.RegisterOptions{Name: workflows.RecheckWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Reembed, workflow.RegisterOptions{Name: workflows.ReembedWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Backfill, workflow.RegisterOptions{Name: workflows.BackfillWorkflowName})
	r.RegisterWorkflowWithOptions(workflows.Publish, workflow.RegisterOptions{Name: workflows.PublishWorkflowName})
	r.RegisterActivity(acts)
}

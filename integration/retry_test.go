package integration

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/worker"
	"github.com/lessonflow/lessonflow/workflows"
)

// TestAdminRetryWhileFailedRunCloses: the pipeline records a failure in the
// catalog before its run closes, and closing needs a worker. An admin retry
// in that gap must start a new run once the failed one closed, not take the
// open run for it (which would fail again and leave the video processing
// for good: TestAdminRetryFailedVideo hit that twice when its first worker
// was killed before closing the run).
func TestAdminRetryWhileFailedRunCloses(t *testing.T) {
	if testing.Short() {
		t.Skip("uses the Temporal dev server")
	}
	s := newStack(t, stackOptions{noWorker: true}) // the new run stays queued: no pipeline worker
	ctx := context.Background()
	const id = "vclosing0123456789abcdef"
	if _, _, err := s.catalog.CreateVideo(ctx, catalog.Video{ID: id, SHA256: id, Title: "t", Level: 1, Language: "en",
		TeacherID: "t1", BlobKey: "uploads/" + id, SizeBytes: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.catalog.SetState(ctx, id, catalog.StateFailed, "watermark: no key"); err != nil {
		t.Fatal(err)
	}
	// A stand-in for the failed run, still open: it fails 3 s from now.
	const queue, closing = "closing-run", "ClosingRun"
	w := sdkworker.New(s.temporal, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		if err := workflow.Sleep(ctx, 3*time.Second); err != nil {
			return err
		}
		return errors.New("watermark: no key")
	}, workflow.RegisterOptions{Name: closing})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	old, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(id), TaskQueue: queue}, closing)
	if err != nil {
		t.Fatal(err)
	}

	code, body := s.post(adminKey, "/v1/admin/videos/"+id+"/retry", nil)
	if code != http.StatusAccepted {
		t.Fatalf("retry while the failed run closes: %d %v", code, body)
	}
	if err := old.Get(ctx, nil); err == nil {
		t.Fatal("the stand-in run succeeded")
	}
	d, err := s.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(id), "")
	if err != nil {
		t.Fatal(err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetExecution().GetRunId() == old.GetRunID() || info.GetType().GetName() != worker.WorkflowName {
		t.Fatalf("after the retry the latest run is %s of %s; want a new %s run after %s",
			info.GetExecution().GetRunId(), info.GetType().GetName(), worker.WorkflowName, old.GetRunID())
	}
	if v, err := s.catalog.GetVideo(ctx, id); err != nil || v.State != catalog.StateProcessing {
		t.Fatalf("video after the retry: %+v %v, want processing", v, err)
	}
	// A second retry while the new run is open is refused, not attached to it.
	if code, body := s.post(adminKey, "/v1/admin/videos/"+id+"/retry", nil); code != http.StatusConflict {
		t.Fatalf("second retry: %d %v", code, body)
	}
}

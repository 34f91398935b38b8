package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	sdktemporal "go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/lessonflow/lessonflow/activities"
	"github.com/lessonflow/lessonflow/catalog"
	"github.com/lessonflow/lessonflow/internal/testenv"
	"github.com/lessonflow/lessonflow/media"
	"github.com/lessonflow/lessonflow/moderation"
	"github.com/lessonflow/lessonflow/worker"
	"github.com/lessonflow/lessonflow/workflows"
)

// legacyPipeline is the pipeline as it was before the post-approval stages
// existed: it moderates and stops at the decision, leaving an approved
// video with its sampled frames but no watermark, vector or publication.
func legacyPipeline(ctx workflow.Context, in workflows.VideoInput) (string, error) {
	var a *activities.Activities
	ref := activities.VideoRef{VideoID: in.VideoID, BlobKey: in.BlobKey}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		RetryPolicy:         &sdktemporal.RetryPolicy{MaximumAttempts: 3},
	})
	var info media.Info
	if err := workflow.ExecuteActivity(ctx, a.Probe, ref).Get(ctx, &info); err != nil {
		return "", err
	}
	var frames activities.FrameSet
	if err := workflow.ExecuteActivity(ctx, a.SampleFrames, activities.SampleInput{VideoRef: ref, Info: info}).Get(ctx, &frames); err != nil {
		return "", err
	}
	var scores activities.ScoreSet
	if err := workflow.ExecuteActivity(ctx, a.Classify, frames).Get(ctx, &scores); err != nil {
		return "", err
	}
	var sum activities.DecisionSummary
	err := workflow.ExecuteActivity(ctx, a.Decide, activities.DecideInput{VideoID: in.VideoID, Scores: []activities.ScoreSet{scores}, Sampler: frames.Sampler}).Get(ctx, &sum)
	return string(sum.Outcome), err
}

// TestBackfillPublishesLegacyApproved: videos approved by the pipeline as
// it was before the watermark and index stages are back-filled by the
// real worker binary and the `backfill` command: marked, indexed and
// published once, with no new decision. A video with a running stage, or
// whose pipeline id is held by an open run, is left alone until released,
// but not one whose running mark is older than any attempt; a video
// updated within --min-age is skipped.
func TestBackfillPublishesLegacyApproved(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	ctx := context.Background()

	// Phase 1: the legacy pipeline approves three lessons.
	policy, err := moderation.LoadPolicy("default")
	if err != nil {
		t.Fatal(err)
	}
	legacy := sdkworker.New(s.temporal, s.taskQueue, sdkworker.Options{MaxConcurrentActivityExecutionSize: 2})
	legacy.RegisterWorkflowWithOptions(legacyPipeline, workflow.RegisterOptions{Name: worker.WorkflowName})
	legacy.RegisterActivity(&activities.Activities{Catalog: s.catalog, Blobs: s.blobs, Classifier: classifier(t),
		Policy: policy, Limits: media.DefaultLimits, TempDir: t.TempDir()})
	if err := legacy.Start(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, src := range []string{"testsrc2", "smptebars", "rgbtestsrc", "yuvtestsrc"} {
		clip := testenv.Clip(t, "backfill-"+src+".mp4", "-f", "lavfi", "-i", src+"=size=640x360:rate=25:duration=4",
			"-f", "lavfi", "-i", "sine=frequency=330:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest")
		code, body := s.upload(appKey, lessonForm(clip))
		if code != http.StatusAccepted {
			t.Fatalf("upload %s: %d %v", src, code, body)
		}
		ids = append(ids, body["id"].(string))
	}
	for _, id := range ids {
		var outcome string
		if err := s.temporal.GetWorkflow(ctx, workflows.WorkflowID(id), "").Get(ctx, &outcome); err != nil || outcome != "approved" {
			t.Fatalf("legacy pipeline of %s: %q %v", id, outcome, err)
		}
		if v, _ := s.catalog.GetVideo(ctx, id); v.State != catalog.StateApproved {
			t.Fatalf("legacy pipeline left %s %s", id, v.State)
		}
	}
	legacy.Stop()
	free, staged, held, stale := ids[0], ids[1], ids[2], ids[3]
	// staged: a stage is running (as when a reviewer's approval is being
	// published); held: an open run holds its pipeline id; stale: a stage
	// marked running by an attempt that started hours ago, longer than any
	// attempt may last (a terminated run left it).
	if err := s.catalog.StageStarted(ctx, staged, activities.StageWatermark, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.catalog.StageStarted(ctx, stale, activities.StageWatermark, time.Now().Add(-3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	holder, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.WorkflowID(held), TaskQueue: "nobody-polls-this"}, "Holder")
	if err != nil {
		t.Fatal(err)
	}
	defer s.temporal.TerminateWorkflow(context.WithoutCancel(ctx), holder.GetID(), holder.GetRunID(), "test over")

	// Phase 2: the worker as it is now, a separate process.
	s.startWorkerProcess(t, 1)
	backfill := func(minAge time.Duration) workflows.BackfillResult {
		t.Helper()
		run, err := s.temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.BackfillWorkflowID, TaskQueue: s.taskQueue},
			workflows.BackfillWorkflowName, workflows.BackfillInput{MinAge: minAge})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.BackfillResult
		if err := run.Get(ctx, &res); err != nil {
			t.Fatal(err)
		}
		t.Logf("back-fill (min age %s): %+v", minAge, res)
		return res
	}
	// Everything was touched moments ago.
	if res := backfill(time.Hour); res.Published != 0 || res.Busy != 0 || res.Recent != 4 {
		t.Fatalf("min age 1h: %+v, want 4 recent", res)
	}

	// The command, as an operator runs it.
	cmd := exec.Command(lessonflowBinary(t), "backfill", "--min-age", "0s", "--json")
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+s.server.Address, "TEMPORAL_NAMESPACE="+s.namespace,
		"LESSONFLOW_TASK_QUEUE="+s.taskQueue, "LESSONFLOW_DATA_DIR="+s.dataDir, "LESSONFLOW_TOOLS_DIR="+testenv.ToolsDir())
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		errors.As(err, &ee)
		t.Fatalf("lessonflow backfill: %v\n%s%s", err, out, ee.Stderr)
	}
	var res workflows.BackfillResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("backfill --json printed %q: %v", out, err)
	}
	t.Logf("lessonflow backfill --min-age 0s: %+v", res)
	if res.Published != 2 || res.Stale != 1 || res.Busy != 2 || res.Failed != 0 || res.Recent != 0 ||
		!slices.Contains(res.BusyIDs, staged) || !slices.Contains(res.BusyIDs, held) {
		t.Fatalf("back-fill: %+v, want 2 published (one stale) and staged and held busy", res)
	}
	checkBackfilled(t, s, free)
	checkBackfilled(t, s, stale)
	for _, id := range []string{staged, held} {
		if v, _ := s.catalog.GetVideo(ctx, id); v.State != catalog.StateApproved {
			t.Fatalf("busy %s is %s", id, v.State)
		}
		if _, err := s.catalog.WatermarkOf(ctx, id); !errors.Is(err, catalog.ErrNotFound) {
			t.Fatalf("busy %s got a watermark record: %v", id, err)
		}
	}
	if d, err := s.temporal.DescribeWorkflowExecution(ctx, workflows.WorkflowID(held), holder.GetRunID()); err != nil || d.GetWorkflowExecutionInfo().GetCloseTime() != nil {
		t.Fatalf("the holder's run was disturbed: %v %v", d, err)
	}

	// Again: nothing left to do, nothing done twice.
	if res := backfill(0); res.Published != 0 || res.Busy != 2 {
		t.Fatalf("second back-fill: %+v", res)
	}
	rec, _ := s.catalog.WatermarkOf(ctx, free)
	checkBackfilled(t, s, free)
	if again, _ := s.catalog.WatermarkOf(ctx, free); again != rec {
		t.Fatalf("registry record changed: %+v -> %+v", rec, again)
	}

	// Released, the other two are published too.
	if err := s.catalog.StageFinished(ctx, staged, activities.StageWatermark, time.Time{}, catalog.StageFailed, "worker lost"); err != nil {
		t.Fatal(err)
	}
	if err := s.temporal.TerminateWorkflow(ctx, holder.GetID(), holder.GetRunID(), "released"); err != nil {
		t.Fatal(err)
	}
	if res := backfill(0); res.Published != 2 || res.Busy != 0 {
		t.Fatalf("after release: %+v, want 2 published", res)
	}
	for _, id := range ids {
		checkBackfilled(t, s, id)
	}
	if n, err := s.vectors.Count(ctx); err != nil || n != 4 {
		t.Fatalf("%d vectors (%v), want 4", n, err)
	}
}

// checkBackfilled: the video is published with one decision (the legacy
// approval), a rendition whose mark the API traces back to it, and a vector.
func checkBackfilled(t *testing.T, s *stack, id string) {
	t.Helper()
	ctx := context.Background()
	v, err := s.catalog.GetVideo(ctx, id)
	if err != nil || v.State != catalog.StatePublished {
		t.Fatalf("%s: %s %v (%s)", id, v.State, err, v.Error)
	}
	if ds, err := s.catalog.Decisions(ctx, id); err != nil || len(ds) != 1 || ds[0].Outcome != "approved" {
		t.Fatalf("%s decisions: %+v %v, want the one legacy approval", id, ds, err)
	}
	rec, err := s.catalog.WatermarkOf(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	code, rendition := s.getRaw(appKey, "/v1/videos/"+id+"/rendition")
	if code != http.StatusOK {
		t.Fatalf("%s rendition: %d", id, code)
	}
	code, det := s.detect(reviewerKey, filepath.Base(id)+".mp4", rendition)
	video, _ := det["video"].(map[string]any)
	if code != http.StatusOK || det["found"] != true || det["payload"] != rec.ID.String() || video == nil || video["id"] != id {
		t.Fatalf("%s detect: %d %v, want payload %s", id, code, det, rec.ID)
	}
	if _, err := s.vectors.Get(ctx, id); err != nil {
		t.Fatalf("%s vector: %v", id, err)
	}
}
